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

// TestCapChangeYieldsInALockCycle: a cap change marks the queue's leases
// while others lock them: a batch complete deletes many, in an order its
// plan chooses (index order, or the table's). Here lease B was written
// before A, so the cap change's scan marks B and then waits for A, held
// by a transaction (standing in for a complete) that then wants B: a
// cycle. The cap change waits at most capChangeLockWait for each lock,
// then rolls back, releasing B, and tries again; the other transaction
// goes on. Without that bound the deadlock detector aborted one of the
// two after deadlock_timeout: a batch complete failed, or the cap change.
func TestCapChangeYieldsInALockCycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.enqueue(e.actor, commands.NewJob{QueueName: "crossing", Payload: payload(1)})
	b := e.enqueue(e.actor, commands.NewJob{QueueName: "crossing", Payload: payload(2), Priority: ptr(5)})
	if first, second := e.claimOne("crossing", "w1"), e.claimOne("crossing", "w1"); first.ID != b || second.ID != a {
		t.Fatalf("claimed %s then %s, want B (%s) then A (%s)", first.ID, second.ID, b, a)
	}

	holder, err := e.pool.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(e.ctx)
	if _, err := holder.Exec(e.ctx, `SELECT 1 FROM processing_jobs WHERE job_id = $1 FOR UPDATE`, a); err != nil {
		t.Fatal(err)
	}
	capped := make(chan error, 1)
	go func() {
		_, err := e.svc.ConfigureQueue(e.ctx, e.actor, "crossing", commands.QueueSettings{MaxConcurrentJobs: ptr(10)})
		capped <- err
	}()
	// The cap change has marked B and waits for A.
	if !eventually(10*time.Second, func() bool {
		return e.scalar(`SELECT count(*) FROM pg_stat_activity
		                 WHERE wait_event_type = 'Lock' AND query LIKE '%ProcessingStampCapped%'`) == 1
	}) {
		t.Fatal("the cap change did not wait for lease A")
	}
	if _, err := holder.Exec(e.ctx, `SELECT 1 FROM processing_jobs WHERE job_id = $1 FOR UPDATE`, b); err != nil {
		t.Fatalf("lease B, held by the waiting cap change: %v", err)
	}
	if err := holder.Commit(e.ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-capped; err != nil {
		t.Fatalf("cap change in a lock cycle: %v", err)
	}
	if n := e.scalar(`SELECT count(*) FROM processing_jobs WHERE capped`); n != 2 {
		t.Fatalf("%d leases marked capped, want 2", n)
	}
}
