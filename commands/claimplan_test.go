package commands_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/internal/testdb"
	"github.com/spooled-go/spooled/queries"
)

// explain runs EXPLAIN (FORMAT JSON) of sql with args on q.
func explain(t *testing.T, ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, sql string, args ...any) testdb.Explained {
	t.Helper()
	return testdb.Explain(t, ctx, q, "FORMAT JSON", sql, args...)
}

// genericPlan begins a transaction that the test's end rolls back, and
// prepares sql in it as name with the generic plan forced: the plan the
// server runs once a connection has run the statement a few times.
// EXECUTE name(...) with literal arguments then runs it for real.
func (e *env) genericPlan(name, sql string) pgx.Tx {
	e.t.Helper()
	tx, err := e.pool.Begin(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	if _, err := tx.Exec(e.ctx, "SET LOCAL plan_cache_mode = force_generic_plan"); err != nil {
		e.t.Fatal(err)
	}
	if _, err := tx.Exec(e.ctx, "PREPARE "+name+" AS "+sql); err != nil {
		e.t.Fatal(err)
	}
	return tx
}

// TestClaimPlanWithStaleStatistics: a burst on a queue the statistics have
// never seen must still be claimed by walking the claim index in order, not
// by sorting the backlog, and the claim must not be JIT-compiled. The
// statistics are taken while the queue is empty, as after a new queue's
// first burst between two autovacuum ANALYZE runs.
func TestClaimPlanWithStaleStatistics(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.enqueue(e.actor, commands.NewJob{QueueName: "steady"})
	if _, err := e.pool.Exec(e.ctx, "ANALYZE pending_jobs"); err != nil {
		t.Fatal(err)
	}
	for b := 0; b < 30; b++ {
		batch := make([]commands.NewJob, commands.MaxBulkJobs)
		for i := range batch {
			batch[i] = commands.NewJob{QueueName: "burst", Payload: payload(b*commands.MaxBulkJobs + i)}
		}
		if _, err := e.svc.EnqueueBulk(e.ctx, e.actor, batch); err != nil {
			t.Fatal(err)
		}
	}

	tx, err := e.pool.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(e.ctx)
	if _, err := tx.Exec(e.ctx, queries.PlanPinSQL); err != nil {
		t.Fatal(err)
	}
	args := []any{e.clk.Now(), []string{"w"}, []int32{100}, []int32{30}, []string{"worker:w"}, e.actor.OrgID, "burst"} // JobClaimMultiParams' order
	checkClaimPlan(t, "custom", explain(t, e.ctx, tx, queries.JobClaimMultiSQL, args...))
	// The pin makes the plan generic, as the server runs it: made once per
	// connection, for any organization, queue and batch size. EXECUTE takes
	// no bind parameters, so its arguments are literals.
	if _, err := tx.Exec(e.ctx, "PREPARE claim_generic AS "+queries.JobClaimMultiSQL); err != nil {
		t.Fatal(err)
	}
	exec := fmt.Sprintf("EXECUTE claim_generic('%s', ARRAY['w'], ARRAY[100], ARRAY[30], ARRAY['worker:w'], '%s', 'burst')",
		e.clk.Now().Format(time.RFC3339Nano), e.actor.OrgID)
	generic := explain(t, e.ctx, tx, exec)
	if !strings.Contains(generic.Raw, "(organization_id = $6)") {
		t.Fatalf("EXPLAIN EXECUTE did not show the generic plan:\n%s", generic.Raw)
	}
	checkClaimPlan(t, "generic", generic)
}

// checkClaimPlan: the claim locks rows straight from an ordered scan of
// pending_jobs_claim_idx, without a sort, and is not JIT-compiled.
func checkClaimPlan(t *testing.T, kind string, ex testdb.Explained) {
	t.Helper()
	if ex.JIT != nil {
		t.Errorf("%s plan: the claim would be JIT-compiled: %v", kind, ex.JIT)
	}
	lock, ok := ex.Plan.Find("LockRows")
	if !ok || len(lock.Plans) != 1 {
		t.Fatalf("%s plan: no LockRows node with one input:\n%s", kind, ex.Raw)
	}
	scan := lock.Plans[0]
	if !strings.HasPrefix(scan.NodeType, "Index") || scan.IndexName != "pending_jobs_claim_idx" {
		t.Fatalf("%s plan: the claim locks rows from %s %s %s, want an ordered scan of pending_jobs_claim_idx:\n%s",
			kind, scan.NodeType, scan.Relation, scan.IndexName, ex.Raw)
	}
}

// TestCompletePlanWithStaleStatistics: a batch complete finds its leases in
// processing_jobs by primary key alone, whatever the statistics say. Taken
// while the table was empty, they once led the planner to AND in the
// worker or lease index, reading every lease of the organization to
// complete a handful of jobs. Here they know only another organization's
// few leases.
func TestCompletePlanWithStaleStatistics(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Statistics that know only another organization's few leases.
	other := e.newOrg("other")
	for i := range 5 {
		e.enqueue(other, commands.NewJob{QueueName: "busy", Payload: payload(i)})
	}
	if got, err := e.svc.Claim(e.ctx, other.OrgID, commands.ClaimRequest{QueueName: "busy", WorkerID: "w", Limit: 5}); err != nil || len(got) != 5 {
		t.Fatalf("other organization's claim: %d jobs, %v", len(got), err)
	}
	if _, err := e.pool.Exec(e.ctx, "ANALYZE processing_jobs"); err != nil {
		t.Fatal(err)
	}
	for b := 0; b < 20; b++ {
		batch := make([]commands.NewJob, commands.MaxBulkJobs)
		for i := range batch {
			batch[i] = commands.NewJob{QueueName: "busy", Payload: payload(b*commands.MaxBulkJobs + i)}
		}
		if _, err := e.svc.EnqueueBulk(e.ctx, e.actor, batch); err != nil {
			t.Fatal(err)
		}
	}
	var leased []queries.Job
	for range 20 {
		leased = append(leased, e.claim("busy", "w", 100)...)
	}
	mine := leased[:100]
	p := queries.JobCompleteBatchParams{Now: e.clk.Now()}
	for _, j := range mine {
		p.JobIds = append(p.JobIds, j.ID)
		p.OrganizationIds = append(p.OrganizationIds, e.actor.OrgID)
		p.WorkerIds = append(p.WorkerIds, "w")
		p.LeaseIds = append(p.LeaseIds, *j.LeaseID)
		p.Results = append(p.Results, json.RawMessage("null"))
	}
	ex := explain(t, e.ctx, e.pool, queries.JobCompleteBatchSQL,
		p.JobIds, p.OrganizationIds, p.WorkerIds, p.LeaseIds, p.Now, p.Results) // JobCompleteBatch's order
	for _, n := range ex.Plan.Nodes() {
		if n.Relation == "processing_jobs" && n.IndexName != "" && n.IndexName != "processing_jobs_pkey" {
			t.Fatalf("the complete reads processing_jobs through %s:\n%s", n.IndexName, ex.Raw)
		}
	}

	// The generic plan, as the server runs it after a few calls on a
	// connection, run for real (rolled back): it expects ten items, not a
	// hundred. It must read no lease but the hundred it completes (it once
	// hashed all 2,000 on every call), and its UPDATE and DELETE must not
	// copy whole rows of joined relations (its costliest part once).
	tx := e.genericPlan("complete_generic", queries.JobCompleteBatchSQL)
	ids, orgs, workers, leases, results := make([]string, len(mine)), make([]string, len(mine)), make([]string, len(mine)), make([]string, len(mine)), make([]string, len(mine))
	for i := range mine {
		ids[i], orgs[i], workers[i], leases[i], results[i] = p.JobIds[i].String(), e.actor.OrgID, "w", p.LeaseIds[i].String(), "null"
	}
	list := func(v []string) string { return "'{" + strings.Join(v, ",") + "}'" }
	exec := fmt.Sprintf("EXECUTE complete_generic(%s, %s, %s, %s, '%s', %s)", list(ids), list(orgs),
		list(workers), list(leases), e.clk.Now().Format(time.RFC3339Nano), list(results))
	generic := testdb.Explain(t, e.ctx, tx, "ANALYZE, VERBOSE, FORMAT JSON", exec)
	if !strings.Contains(generic.Raw, "$2") {
		t.Fatalf("EXPLAIN EXECUTE did not show the generic plan:\n%s", generic.Raw)
	}
	var completed int64
	if err := tx.QueryRow(e.ctx, "SELECT count(*) FROM jobs WHERE status = 'completed'").Scan(&completed); err != nil {
		t.Fatal(err)
	}
	if completed != int64(len(mine)) {
		t.Fatalf("the generic plan completed %d jobs, want %d", completed, len(mine))
	}
	for _, n := range generic.Plan.Nodes() {
		if n.Relation == "processing_jobs" && n.Rows*n.Loops > float64(len(mine)) {
			t.Errorf("the generic plan reads %.0f leases through a %s of processing_jobs to complete %d jobs:\n%s",
				n.Rows*n.Loops, n.NodeType, len(mine), generic.Raw)
		}
		for _, o := range n.Output {
			if strings.HasSuffix(o, ".*") {
				t.Errorf("the generic plan's %s copies whole rows (%s):\n%s", n.NodeType, o, generic.Raw)
			}
		}
	}
}

// TestJobListPlanWithStaleStatistics: a tenant the statistics have not
// seen lists its newest jobs by walking jobs_org_created_idx and stopping
// after the page, as the server reads the list (sorting priced out). The
// statistics are taken before its burst of 3,000 jobs, as for a new
// tenant's first jobs between two autovacuum ANALYZE runs; without the
// pin the planner expects one job and reads and sorts all 3,000 for every
// page.
func TestJobListPlanWithStaleStatistics(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, err := e.pool.Exec(e.ctx, "ALTER TABLE jobs SET (autovacuum_enabled = false)"); err != nil {
		t.Fatal(err)
	}
	known := e.newOrg("known")
	for i := range 20 {
		e.enqueue(known, commands.NewJob{QueueName: "steady", Payload: payload(i)})
	}
	if _, err := e.pool.Exec(e.ctx, "ANALYZE jobs"); err != nil {
		t.Fatal(err)
	}
	const burst = 3000
	for b := 0; b < burst/commands.MaxBulkJobs; b++ {
		e.clk.Advance(time.Millisecond) // a batch's jobs share their creation time
		batch := make([]commands.NewJob, commands.MaxBulkJobs)
		for i := range batch {
			batch[i] = commands.NewJob{QueueName: "burst", Payload: payload(b*commands.MaxBulkJobs + i)}
		}
		if _, err := e.svc.EnqueueBulk(e.ctx, e.actor, batch); err != nil {
			t.Fatal(err)
		}
	}
	const page, offset = 50, 100
	args := []any{e.actor.OrgID, nil, nil, nil, int32(offset), int32(page)} // JobListParams' order
	begin := func() pgx.Tx {
		tx, err := e.pool.Begin(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
		return tx
	}
	fullSort := func(ex testdb.Explained) bool { _, ok := ex.Plan.Find("Sort"); return ok }

	unpinned := testdb.Explain(t, e.ctx, begin(), "ANALYZE, FORMAT JSON", queries.JobListSQL, args...)
	if !fullSort(unpinned) || unpinned.ReadRows() < burst {
		t.Fatalf("without the pin the list should sort all the tenant's jobs (the case the pin exists for); "+
			"sorts %v, read %v rows:\n%s", fullSort(unpinned), unpinned.ReadRows(), unpinned.Raw)
	}
	tx := begin()
	if _, err := tx.Exec(e.ctx, queries.PlanNoSortSQL); err != nil {
		t.Fatal(err)
	}
	pinned := testdb.Explain(t, e.ctx, tx, "ANALYZE, FORMAT JSON", queries.JobListSQL, args...)
	// The index gives the creation order; an incremental sort orders each
	// batch's jobs (one creation time) by id, so the scan reads the offset,
	// the page and the rest of the last batch it touches.
	if fullSort(pinned) || pinned.JIT != nil || pinned.ReadRows() > offset+page+commands.MaxBulkJobs {
		t.Fatalf("pinned: sorts %v, JIT %v, read %v rows for offset %d and a page of %d:\n%s",
			fullSort(pinned), pinned.JIT != nil, pinned.ReadRows(), offset, page, pinned.Raw)
	}
}
