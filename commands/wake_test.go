package commands_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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

// failClaimTracer fails the next claim statement run for a context marked
// with failClaimKey, once armed: it hands pgx an already cancelled context,
// as if the database had refused the statement.
type failClaimTracer struct {
	armed  atomic.Bool
	failed atomic.Int32
}

type failClaimKey struct{}

func (f *failClaimTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

func (f *failClaimTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (f *failClaimTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	claim := false
	for _, q := range d.Batch.QueuedQueries {
		claim = claim || strings.HasPrefix(q.SQL, "-- name: JobClaim")
	}
	if !claim || ctx.Value(failClaimKey{}) == nil || !f.armed.CompareAndSwap(true, false) {
		return ctx
	}
	f.failed.Add(1)
	failed, cancel := context.WithCancel(ctx)
	cancel()
	return failed
}

func (f *failClaimTracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (f *failClaimTracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// TestFailedWokenClaimPassesItsHintOn: a hint for one job wakes one claim;
// when that claim's statement fails, the hint goes to another waiting
// claim, which takes the job at once. Without that, the other claim, which
// went to sleep covered by the first without reading the queue, would find
// the job only at its deadline (30 s here; the fallback poll is a minute).
func TestFailedWokenClaimPassesItsHintOn(t *testing.T) {
	t.Parallel()
	tracer := &failClaimTracer{}
	e, hub := newWaitingEnv(t, "failwoken", testdb.Options{Tracer: tracer})
	const q = "q"

	victimCtx := context.WithValue(e.ctx, failClaimKey{}, true)
	victim := make(chan claimAnswer, 1)
	go func() {
		jobs, err := e.svc.ClaimWait(victimCtx, e.actor.OrgID, commands.ClaimRequest{QueueName: q, WorkerID: "victim"}, commands.MaxClaimWait)
		victim <- claimAnswer{jobs, err}
	}()
	if !eventually(5*time.Second, func() bool { _, ok := hub.Covered(e.actor.OrgID, q); return ok }) {
		t.Fatal("the first claim, having read the queue empty, does not cover it")
	}
	other := e.claimWait(q, "other", commands.MaxClaimWait)
	if !eventually(5*time.Second, func() bool { return hub.Waiting() == 2 }) {
		t.Fatalf("%d claims waiting, want 2", hub.Waiting())
	}

	tracer.armed.Store(true)
	id := e.enqueue(e.actor, commands.NewJob{QueueName: q, Payload: payload(1)})
	select {
	case a := <-victim:
		if a.err == nil || tracer.failed.Load() != 1 {
			t.Fatalf("the woken claim: %d jobs, err %v, %d statements failed; want its statement failed", len(a.jobs), a.err, tracer.failed.Load())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the woken claim did not return")
	}
	select {
	case a := <-other:
		if a.err != nil || len(a.jobs) != 1 || a.jobs[0].ID != id {
			t.Fatalf("the other claim: %d jobs, %v; want job %s", len(a.jobs), a.err, id)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the other claim did not get the job long before its 30 s deadline: the hint was lost with the failed claim")
	}
	if !eventually(5*time.Second, func() bool { return hub.Waiting() == 0 }) {
		t.Fatalf("%d claims still waiting", hub.Waiting())
	}
}
