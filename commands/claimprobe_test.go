package commands_test

import (
	"testing"
	"time"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/internal/testdb"
)

// TestClaimsOfAnEmptyQueueRunNoClaimStatement: a claim first probes the
// queue, and runs the (large) claim statement only when a job is ready:
// not for an empty queue, one whose jobs are scheduled later, or one whose
// jobs expired. A ready job is still claimed, in one claim statement. A
// queue whose last claim got its whole limit is claimed without a probe (a
// queue with a backlog would only pay a round trip more), until a claim
// gets less.
// The claimer is a registered worker, as SDK workers are: the claim
// statement locks its row (a write, and a flushed commit), the probe does
// not.
func TestClaimsOfAnEmptyQueueRunNoClaimStatement(t *testing.T) {
	t.Parallel()
	counter := testdb.NewStatementCounter()
	e := newEnvWith(t, testdb.Options{Tracer: counter})
	w, err := e.svc.RegisterWorker(e.ctx, e.actor, commands.NewWorker{QueueName: "probe", Hostname: "h", MaxConcurrency: ptr(10)})
	if err != nil {
		t.Fatal(err)
	}
	req := commands.ClaimRequest{QueueName: "probe", WorkerID: w.ID, Limit: 10}
	// xmax of the worker's row changes whenever a transaction locks it.
	workerXmax := func() string {
		var x string
		if err := e.pool.QueryRow(e.ctx, "SELECT xmax::text FROM workers WHERE id = $1", w.ID).Scan(&x); err != nil {
			t.Fatal(err)
		}
		return x
	}
	claimNothing := func(what string) {
		t.Helper()
		xmax := workerXmax()
		counter.Take()
		jobs, err := e.svc.Claim(e.ctx, e.actor.OrgID, req)
		if err != nil || len(jobs) != 0 {
			t.Fatalf("%s: claimed %d jobs, %v; want none", what, len(jobs), err)
		}
		if n := counter.Take(); claimStatements(n) != 0 || n["QueueClaimProbe"] != 1 {
			t.Fatalf("%s: ran %v, want the probe and no claim statement", what, n)
		}
		if x := workerXmax(); x != xmax {
			t.Fatalf("%s: the worker's row was locked (xmax %s -> %s)", what, xmax, x)
		}
	}

	claimNothing("empty queue")

	e.enqueue(e.actor, commands.NewJob{QueueName: "probe", ScheduledAt: ptr(e.clk.Now().Add(time.Hour))})
	claimNothing("a job scheduled in an hour")

	e.enqueue(e.actor, commands.NewJob{QueueName: "probe", ExpiresAt: ptr(e.clk.Now().Add(time.Second))})
	e.clk.Advance(2 * time.Second)
	claimNothing("an expired job")

	ready := e.enqueue(e.actor, commands.NewJob{QueueName: "probe"})
	counter.Take()
	jobs, err := e.svc.Claim(e.ctx, e.actor.OrgID, req)
	if err != nil || len(jobs) != 1 || jobs[0].ID != ready {
		t.Fatalf("ready job: claimed %v, %v; want %s", jobs, err, ready)
	}
	if n := counter.Take(); claimStatements(n) != 1 {
		t.Fatalf("ready job: ran %v, want one claim statement", n)
	}

	// That claim got less than its limit: the queue is drained, so the next
	// claim probes.
	claimNothing("a queue whose last claim got less than its limit")

	// A claim that gets its whole limit has likely left more behind: the
	// next goes straight to the claim statement, until one gets less.
	one := req
	one.Limit = 1
	e.enqueue(e.actor, commands.NewJob{QueueName: "probe", Payload: payload(1)})
	e.enqueue(e.actor, commands.NewJob{QueueName: "probe", Payload: payload(2)})
	counter.Take()
	for i, c := range []struct {
		jobs, probes int
	}{{1, 1}, {1, 0}, {0, 0}} {
		jobs, err := e.svc.Claim(e.ctx, e.actor.OrgID, one)
		if n := counter.Take(); err != nil || len(jobs) != c.jobs || n["QueueClaimProbe"] != c.probes || claimStatements(n) != 1 {
			t.Fatalf("claim %d of one job: %d jobs, %v, ran %v; want %d jobs, %d probes and one claim statement", i+1, len(jobs), err, n, c.jobs, c.probes)
		}
	}
	claimNothing("a queue whose last claim found nothing")

	// The scheduled job falls due: the probe sees it, and the claim takes it.
	e.clk.Advance(time.Hour)
	jobs, err = e.svc.Claim(e.ctx, e.actor.OrgID, req)
	if err != nil || len(jobs) != 1 {
		t.Fatalf("due job: claimed %d jobs, %v; want 1", len(jobs), err)
	}
}

// claimStatements counts the claim statements among n, of either form.
func claimStatements(n map[string]int) int { return n["JobClaimMulti"] + n["JobClaimOne"] }
