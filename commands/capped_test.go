package commands_test

import (
	"testing"
	"time"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/events"
	"github.com/spooled-go/spooled/queries"
)

// TestCapCountsLeasesTakenBeforeIt: a cap set on a queue with jobs already
// running counts them. A cap's lease count reads the leases marked capped
// (processing_jobs_capped_idx holds no others); leases taken while the
// queue had no cap are marked when the cap is set, and unmarked when it is
// cleared.
func TestCapCountsLeasesTakenBeforeIt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.enqueueBulk("later-capped", 0, 6)
	if got := len(e.claim("later-capped", "w1", 3)); got != 3 {
		t.Fatalf("claimed %d before the cap, want 3", got)
	}
	if _, err := e.svc.ConfigureQueue(e.ctx, e.actor, "later-capped", commands.QueueSettings{MaxConcurrentJobs: ptr(2)}); err != nil {
		t.Fatal(err)
	}
	if n := e.scalar(`SELECT count(*) FROM processing_jobs WHERE capped`); n != 3 {
		t.Fatalf("%d leases marked capped after the cap was set, want 3", n)
	}
	if got := len(e.claim("later-capped", "w2", 3)); got != 0 {
		t.Fatalf("claimed %d with 3 running under a cap of 2, want 0", got)
	}
	if _, err := e.svc.ConfigureQueue(e.ctx, e.actor, "later-capped", commands.QueueSettings{ClearMaxConcurrent: true}); err != nil {
		t.Fatal(err)
	}
	if n := e.scalar(`SELECT count(*) FROM processing_jobs WHERE capped`); n != 0 {
		t.Fatalf("%d leases still marked capped after the cap was cleared, want 0", n)
	}
	if got := len(e.claim("later-capped", "w2", 3)); got != 3 {
		t.Fatalf("claimed %d after the cap was cleared, want 3", got)
	}
	// A claim of a capped queue marks its leases itself.
	if _, err := e.svc.ConfigureQueue(e.ctx, e.actor, "capped-now", commands.QueueSettings{MaxConcurrentJobs: ptr(5)}); err != nil {
		t.Fatal(err)
	}
	e.enqueueBulk("capped-now", 0, 2)
	if got := len(e.claim("capped-now", "w3", 2)); got != 2 {
		t.Fatalf("claimed %d on a capped queue, want 2", got)
	}
	if n := e.scalar(`SELECT count(*) FROM processing_jobs WHERE capped`); n != 2 {
		t.Fatalf("%d leases marked capped, want the capped queue's 2", n)
	}
}

// TestCapChangeWaitsForClaimsInFlight: a claim that read the queue without
// a cap, still uncommitted when the cap is set, is waited for: the cap's
// change takes the queue's cap lock exclusively, which the claim holds
// shared, and marks the claim's lease once it has committed. Without the
// lock the change would mark the leases it could see and miss this one, and
// the cap would not count it for as long as it ran.
func TestCapChangeWaitsForClaimsInFlight(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.enqueueBulk("racing", 0, 1)
	tx, err := e.pool.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(e.ctx)
	rows, err := queries.New().ClaimOnePipelined(e.ctx, tx,
		queries.ClaimLocksMultiParams{OrganizationID: e.actor.OrgID, QueueName: "racing", WorkerIds: []string{"w1"}},
		queries.JobClaimOneParams{Now: e.clk.Now(), OrganizationID: e.actor.OrgID, QueueName: "racing", Lim: 1,
			WorkerID: "w1", LeaseSecs: 30, Actor: events.ActorWorker("w1")})
	if err != nil || len(rows) != 1 {
		t.Fatalf("claim in a transaction: %d rows, %v", len(rows), err)
	}

	done := make(chan error, 1)
	go func() {
		_, err := e.svc.ConfigureQueue(e.ctx, e.actor, "racing", commands.QueueSettings{MaxConcurrentJobs: ptr(1)})
		done <- err
	}()
	waiting := eventually(10*time.Second, func() bool {
		return e.scalar(`SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`) == 1
	})
	if !waiting {
		t.Fatal("the cap change did not wait for the claim in flight")
	}
	select {
	case err := <-done:
		t.Fatalf("the cap change finished (%v) while a claim held the queue", err)
	default:
	}
	if err := tx.Commit(e.ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := e.scalar(`SELECT count(*) FROM processing_jobs WHERE capped AND job_id = $1`, rows[0].ID); n != 1 {
		t.Fatal("the lease of the claim in flight is not marked capped")
	}
	e.enqueueBulk("racing", 1, 1)
	if got := len(e.claim("racing", "w2", 1)); got != 0 {
		t.Fatalf("claimed %d with the racing claim's job running under a cap of 1, want 0", got)
	}
}
