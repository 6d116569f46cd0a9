package commands_test

import (
	"testing"
	"time"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/internal/metrics"
	"github.com/spooled-go/spooled/internal/testdb"
)

// TestCoveredClaimsWaitWithoutReading: a long-polling claim that arrives
// while another waits having read the queue empty goes to sleep without a
// probe or a claim statement (it reads once more when its wait runs out),
// and still gets the next job a hint wakes it for. A waiter that found a
// ready job it could not take (its worker was at its max_concurrency)
// covers nothing: the next claim reads, and takes the job at once.
func TestCoveredClaimsWaitWithoutReading(t *testing.T) {
	t.Parallel()
	counter := testdb.NewStatementCounter()
	m := metrics.New(nil, nil, nil)
	e, hub := newWaitingEnv(t, "covered", testdb.Options{Tracer: counter}, commands.WithObserver(m))
	svc, wait := e.svc, e.claimWait
	// spooled_claim_waits_covered_total of queue q.
	coveredWaits := func() float64 {
		mfs, err := m.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "spooled_claim_waits_covered_total" {
				for _, c := range mf.GetMetric() {
					if c.GetLabel()[0].GetValue() == "q" {
						return c.GetCounter().GetValue()
					}
				}
			}
		}
		return 0
	}
	covered := func(queue string) bool { _, ok := hub.Covered(e.actor.OrgID, queue); return ok }
	reads := func(n map[string]int) int { return n["QueueClaimProbe"] + claimStatements(n) }

	counter.Take()
	first := wait("q", "first", 20*time.Second)
	if !eventually(5*time.Second, func() bool { return covered("q") }) {
		t.Fatal("the first claim, having read the queue empty, does not cover it")
	}
	if n := counter.Take(); n["QueueClaimProbe"] != 1 || claimStatements(n) != 0 {
		t.Fatalf("the first claim ran %v, want one probe", n)
	}

	// A covered claim reads nothing until its wait runs out, when it
	// probes once more before answering (an uncovered one probes twice).
	if a := <-wait("q", "brief", 300*time.Millisecond); a.err != nil || a.jobs == nil || len(a.jobs) != 0 {
		t.Fatalf("the brief claim: %v, %v; want an empty list", a.jobs, a.err)
	}
	if n := counter.Take(); reads(n) != 1 || n["QueueClaimProbe"] != 1 {
		t.Fatalf("a covered claim ran %v, want its last probe alone", n)
	}
	if n := coveredWaits(); n != 1 {
		t.Fatalf("spooled_claim_waits_covered_total %v, want 1", n)
	}

	second := wait("q", "second", 20*time.Second)
	if !eventually(5*time.Second, func() bool { return hub.Waiting() == 2 }) {
		t.Fatalf("%d claims waiting, want 2", hub.Waiting())
	}
	// One job wakes the longest waiting claim, the next job the covered one.
	for i, ch := range []<-chan claimAnswer{first, second} {
		id := e.enqueue(e.actor, commands.NewJob{QueueName: "q", Payload: payload(i)})
		select {
		case a := <-ch:
			if a.err != nil || len(a.jobs) != 1 || a.jobs[0].ID != id {
				t.Fatalf("claim %d: %d jobs, %v; want job %s", i+1, len(a.jobs), a.err, id)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("claim %d did not get job %s", i+1, id)
		}
	}
	if n := counter.Take(); reads(n) != 2 || claimStatements(n) != 2 {
		t.Fatalf("the two woken claims ran %v, want a claim statement each", n)
	}
	if n := coveredWaits(); n != 2 {
		t.Fatalf("spooled_claim_waits_covered_total %v, want 2", n)
	}

	// A worker at its max_concurrency waits beside a job it may not take.
	busy, err := svc.RegisterWorker(e.ctx, e.actor, commands.NewWorker{QueueName: "bounded", Hostname: "h", MaxConcurrency: ptr(1)})
	if err != nil {
		t.Fatal(err)
	}
	e.enqueue(e.actor, commands.NewJob{QueueName: "bounded", Payload: payload(10)})
	if jobs := e.claim("bounded", busy.ID, 1); len(jobs) != 1 {
		t.Fatalf("the bounded worker claimed %d jobs, want 1", len(jobs))
	}
	ready := e.enqueue(e.actor, commands.NewJob{QueueName: "bounded", Payload: payload(11)})
	blocked := wait("bounded", busy.ID, 20*time.Second)
	if !eventually(5*time.Second, func() bool { return hub.Waiting() == 1 }) {
		t.Fatalf("%d claims waiting, want the bounded worker's", hub.Waiting())
	}
	// Its claim statement found nothing for it; its probe after that saw
	// the ready job, so it stays no witness.
	if !eventually(5*time.Second, func() bool { return counter.Take()["QueueClaimProbe"] > 0 }) {
		t.Fatal("the bounded worker's claim never read the queue")
	}
	if covered("bounded") {
		t.Fatal("a claim that saw a ready job covers its queue")
	}
	select {
	case a := <-wait("bounded", "free", 5*time.Second):
		if a.err != nil || len(a.jobs) != 1 || a.jobs[0].ID != ready {
			t.Fatalf("the free worker: %d jobs, %v; want job %s at once", len(a.jobs), a.err, ready)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the free worker's claim did not return")
	}
	_ = blocked // ends with the test's context
}
