package commands_test

import (
	"testing"
	"time"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/internal/testdb"
)

// TestScheduledJobWakesEveryWaiter: a hint for a scheduled job wakes every
// waiting claim of its queue so each sets its timer to the job's due time.
// Woken alone, the longest waiter could give up before the job falls due,
// and the others would sleep until the fallback poll (here a minute).
func TestScheduledJobWakesEveryWaiter(t *testing.T) {
	t.Parallel()
	e, hub := newWaitingEnv(t, "sched", testdb.Options{})
	wait := func(worker string, d time.Duration) <-chan claimAnswer { return e.claimWait("later", worker, d) }
	waitFor := func(n int) {
		if !eventually(5*time.Second, func() bool { return hub.Waiting() == n }) {
			t.Fatalf("%d claims waiting, want %d", hub.Waiting(), n)
		}
	}
	short := wait("short", 300*time.Millisecond) // waits longest, gives up first
	waitFor(1)
	long := wait("long", 10*time.Second)
	waitFor(2)

	due := time.Now().Add(time.Second)
	e.enqueue(e.actor, commands.NewJob{QueueName: "later", ScheduledAt: &due})

	if a := <-short; a.err != nil || len(a.jobs) != 0 {
		t.Fatalf("the short wait: %d jobs, %v; want none (it ends before the job is due)", len(a.jobs), a.err)
	}
	select {
	case a := <-long:
		if a.err != nil || len(a.jobs) != 1 {
			t.Fatalf("the long wait: %d jobs, %v; want the scheduled job", len(a.jobs), a.err)
		}
		if late := time.Since(due); late > 3*time.Second {
			t.Fatalf("claimed %s after it fell due", late)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("the long wait did not get the job when it fell due")
	}
}
