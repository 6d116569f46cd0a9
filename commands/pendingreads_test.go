package commands_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/queries"
)

// TestPendingReadsWithoutTheirOwnIndexes: the two reads of pending_jobs
// that lost an index of their own (sql/0013_pending_index_writes.sql)
// still answer right and still read by index. The claim probe finds the
// next scheduled job through the partial pending_jobs_next_due_idx (and
// whether a job is ready through the claim index); the oldest waiting job
// is the oldest of any priority, found by walking the claim index once per
// priority, without sorting the queue.
func TestPendingReadsWithoutTheirOwnIndexes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	q := queries.New()
	prio := func(p int) *int { return &p }
	at := func(d time.Duration) *time.Time { t := e.clk.Now().Add(d); return &t }

	if _, err := q.StatsOldestWaiting(e.ctx, e.pool, queries.StatsOldestWaitingParams{OrganizationID: e.actor.OrgID, QueueName: "mix"}); err != pgx.ErrNoRows {
		t.Fatalf("oldest waiting of an empty queue: %v, want no row", err)
	}
	// Oldest first, at the lowest priority; newer ones above it.
	e.enqueue(e.actor, commands.NewJob{QueueName: "mix", Priority: prio(-3)})
	oldest := *e.clk.Now()
	for i, p := range []int{0, 7, 7, 100} {
		e.clk.Advance(time.Second)
		e.enqueue(e.actor, commands.NewJob{QueueName: "mix", Priority: prio(p), Payload: payload(i)})
	}
	e.clk.Advance(time.Second)
	e.enqueue(e.actor, commands.NewJob{QueueName: "mix", ScheduledAt: at(time.Hour)})
	e.enqueue(e.actor, commands.NewJob{QueueName: "mix", ScheduledAt: at(10 * time.Minute)})
	e.enqueue(e.actor, commands.NewJob{QueueName: "other", ScheduledAt: at(time.Minute)})

	got, err := q.StatsOldestWaiting(e.ctx, e.pool, queries.StatsOldestWaitingParams{OrganizationID: e.actor.OrgID, QueueName: "mix"})
	if err != nil || !got.Equal(oldest) {
		t.Fatalf("oldest waiting: %v %v, want %v", got, err, oldest)
	}
	probe, err := q.QueueClaimProbe(e.ctx, e.pool, queries.QueueClaimProbeParams{OrganizationID: e.actor.OrgID, QueueName: "mix", Now: e.clk.Now()})
	if err != nil || !probe.Ready || !probe.NextDue.Equal(*at(10 * time.Minute)) {
		t.Fatalf("probe of mix: %+v %v, want ready and due in 10 minutes", probe, err)
	}
	probe, err = q.QueueClaimProbe(e.ctx, e.pool, queries.QueueClaimProbeParams{OrganizationID: e.actor.OrgID, QueueName: "other", Now: e.clk.Now()})
	if err != nil || probe.Ready || !probe.NextDue.Equal(*at(time.Minute)) {
		t.Fatalf("probe of other: %+v %v, want not ready and due in a minute", probe, err)
	}
	probe, err = q.QueueClaimProbe(e.ctx, e.pool, queries.QueueClaimProbeParams{OrganizationID: e.actor.OrgID, QueueName: "none", Now: e.clk.Now()})
	if err != nil || probe.Ready || !probe.NextDue.IsZero() {
		t.Fatalf("probe of an empty queue: %+v %v, want not ready and the zero time", probe, err)
	}

	// Plans, with sequential scans priced out so that a tiny table shows
	// what the indexes can serve.
	tx, err := e.pool.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(e.ctx)
	if _, err := tx.Exec(e.ctx, "SET LOCAL enable_seqscan = off"); err != nil {
		t.Fatal(err)
	}
	// Its two reads, one per index: the next-due index serves only the
	// next-due read (its predicate excludes ready jobs), so both indexes in
	// the plan and no other read of pending_jobs means each read has its own.
	probePlan := explain(t, e.ctx, tx, queries.QueueClaimProbeSQL, e.actor.OrgID, "mix", e.clk.Now())
	used := map[string]bool{}
	for _, n := range probePlan.Plan.Nodes() {
		if n.Relation != "pending_jobs" {
			continue
		}
		if n.IndexName != "pending_jobs_claim_idx" && n.IndexName != "pending_jobs_next_due_idx" {
			t.Fatalf("QueueClaimProbe reads pending_jobs through %s %q, want the claim and next-due indexes:\n%s", n.NodeType, n.IndexName, probePlan.Raw)
		}
		used[n.IndexName] = true
	}
	if !used["pending_jobs_claim_idx"] || !used["pending_jobs_next_due_idx"] {
		t.Fatalf("QueueClaimProbe reads pending_jobs through %v, want both the claim and the next-due index:\n%s", used, probePlan.Raw)
	}
	age := explain(t, e.ctx, tx, queries.StatsOldestWaitingSQL, e.actor.OrgID, "mix")
	for _, n := range age.Plan.Nodes() {
		if n.Relation == "pending_jobs" && n.IndexName != "pending_jobs_claim_idx" {
			t.Fatalf("StatsOldestWaiting reads pending_jobs through %s %q, want pending_jobs_claim_idx:\n%s", n.NodeType, n.IndexName, age.Raw)
		}
	}
}
