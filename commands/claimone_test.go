package commands_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/events"
	"github.com/spooled-go/spooled/queries"
)

// claimOutcome is what one claim statement did: the rows it returned
// (lease ids blanked: each statement draws its own) and what it left in
// the tables it writes.
type claimOutcome struct {
	Rows        []queries.JobClaimMultiRow
	Processing  int64
	ClaimEvents int64
	RateTokens  float64
	RefilledAt  *time.Time
}

// TestClaimOneMatchesClaimMulti: for a single request, JobClaimOne (what a
// claim on a queue with no other claim in flight runs) leases the same
// jobs, with the same rows, events and token bucket, as JobClaimMulti,
// under every condition that bounds a claim. Each case runs both
// statements on the same state, each in a transaction that is rolled back.
func TestClaimOneMatchesClaimMulti(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	now := e.clk.Now()
	q := queries.New()

	register := func(queue string, max int) string {
		t.Helper()
		w, err := e.svc.RegisterWorker(e.ctx, e.actor, commands.NewWorker{QueueName: queue, Hostname: queue, MaxConcurrency: ptr(max)})
		if err != nil {
			t.Fatal(err)
		}
		return w.ID
	}
	configure := func(queue string, s commands.QueueSettings) {
		t.Helper()
		if _, err := e.svc.ConfigureQueue(e.ctx, e.actor, queue, s); err != nil {
			t.Fatal(err)
		}
	}

	// plain: priority first, then age; a job not due yet and one expired
	// by the claim's time are passed over.
	for i, prio := range []int{0, 5, 0, 5, 1, 0} {
		e.enqueue(e.actor, commands.NewJob{QueueName: "plain", Payload: payload(i), Priority: ptr(prio)})
	}
	e.enqueue(e.actor, commands.NewJob{QueueName: "plain", Payload: payload(6), Priority: ptr(9), ScheduledAt: ptr(now.Add(time.Hour))})
	e.enqueue(e.actor, commands.NewJob{QueueName: "plain", Payload: payload(7), Priority: ptr(9), ExpiresAt: ptr(now.Add(time.Minute))})

	// worker-cap: a worker that may hold 3 and holds 1 gets 2.
	capped := register("worker-cap", 3)
	e.enqueueBulk("worker-cap", 0, 6)
	e.claimOne("worker-cap", capped)

	// worker-full: a worker at its max_concurrency gets none.
	full := register("worker-full", 1)
	e.enqueueBulk("worker-full", 0, 3)
	e.claimOne("worker-full", full)

	// paused: nothing while the queue is paused.
	e.enqueueBulk("paused", 0, 3)
	if _, err := e.svc.PauseQueue(e.ctx, e.actor, "paused", nil); err != nil {
		t.Fatal(err)
	}

	// queue-cap: 3 leased of a cap of 4 leaves 1.
	e.enqueueBulk("queue-cap", 0, 8)
	configure("queue-cap", commands.QueueSettings{MaxConcurrentJobs: ptr(4)})
	e.claim("queue-cap", "other", 3)

	// rate: 20 jobs/s fills a bucket of 2; the claim spends both.
	e.enqueueBulk("rate", 0, 6)
	configure("rate", commands.QueueSettings{RateLimitPerSecond: ptr(20)})

	claimAt := now.Add(2 * time.Minute) // past the expiry of plain's job 7
	run := func(queue, worker string, limit int32, one bool) claimOutcome {
		t.Helper()
		tx, err := e.pool.Begin(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(e.ctx) }()
		locks := queries.ClaimLocksMultiParams{OrganizationID: e.actor.OrgID, QueueName: queue, WorkerIds: []string{worker}}
		var rows []queries.JobClaimMultiRow
		if one {
			rows, err = q.ClaimOnePipelined(e.ctx, tx, locks, queries.JobClaimOneParams{
				Now: &claimAt, OrganizationID: e.actor.OrgID, QueueName: queue, Lim: limit,
				WorkerID: worker, LeaseSecs: 45, Actor: events.ActorWorker(worker)})
		} else {
			rows, err = q.ClaimMultiPipelined(e.ctx, tx, locks, queries.JobClaimMultiParams{
				Now: &claimAt, OrganizationID: e.actor.OrgID, QueueName: queue, WorkerIds: []string{worker},
				Limits: []int32{limit}, LeaseSecs: []int32{45}, Actors: []string{events.ActorWorker(worker)}})
		}
		if err != nil {
			t.Fatalf("claim %s (one: %v): %v", queue, one, err)
		}
		out := claimOutcome{Rows: rows}
		for i := range out.Rows {
			if out.Rows[i].LeaseID == nil {
				t.Fatalf("claim %s (one: %v): job %s has no lease id", queue, one, out.Rows[i].ID)
			}
			out.Rows[i].LeaseID = nil
		}
		count := func(sql string) int64 {
			t.Helper()
			var n int64
			if err := tx.QueryRow(e.ctx, sql, e.actor.OrgID, queue).Scan(&n); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
			return n
		}
		out.Processing = count(`SELECT count(*) FROM processing_jobs WHERE organization_id = $1 AND queue_name = $2`)
		out.ClaimEvents = count(`SELECT count(*) FROM job_events WHERE organization_id = $1 AND queue_name = $2 AND event_type = 'job.claimed'`)
		cfg, err := q.QueueConfigGet(e.ctx, tx, queries.QueueConfigGetParams{OrganizationID: e.actor.OrgID, QueueName: queue})
		switch {
		case err == nil:
			out.RateTokens, out.RefilledAt = cfg.RateTokens, cfg.RateRefilledAt
		case err != pgx.ErrNoRows:
			t.Fatal(err)
		}
		return out
	}

	for _, c := range []struct {
		queue, worker string
		limit         int32
		want          int
	}{
		{"plain", "w-plain", 4, 4},
		{"plain", "w-plain", 100, 6},
		{"worker-cap", capped, 5, 2},
		{"worker-full", full, 5, 0},
		{"paused", "w-paused", 5, 0},
		{"queue-cap", "w-cap", 5, 1},
		{"rate", "w-rate", 5, 2},
	} {
		one, multi := run(c.queue, c.worker, c.limit, true), run(c.queue, c.worker, c.limit, false)
		if len(one.Rows) != c.want {
			t.Errorf("%s, limit %d: JobClaimOne leased %d jobs, want %d", c.queue, c.limit, len(one.Rows), c.want)
		}
		if !reflect.DeepEqual(one, multi) {
			t.Errorf("%s, limit %d: the statements differ\nJobClaimOne:   %+v\nJobClaimMulti: %+v", c.queue, c.limit, one, multi)
		}
	}
}
