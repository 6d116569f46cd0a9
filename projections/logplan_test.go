package projections_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/internal/clock"
	"github.com/spooled-go/spooled/internal/testdb"
	"github.com/spooled-go/spooled/projections"
	"github.com/spooled-go/spooled/queries"
)

func explainAnalyze(t *testing.T, ctx context.Context, tx pgx.Tx, sql string, args ...any) testdb.Explained {
	t.Helper()
	return testdb.Explain(t, ctx, tx, "ANALYZE, FORMAT JSON", sql, args...)
}

// unpinnedSortsAll reads sql's page unpinned and fails unless the planner
// read every event of the burst and sorted them: the case the pin exists
// for, which the stale statistics must reproduce for the test to prove it.
func (l staleLog) unpinnedSortsAll(t *testing.T, sql string, args ...any) {
	t.Helper()
	ex := explainAnalyze(t, context.Background(), l.begin(t), sql, args...)
	if !ex.Sorts() || ex.ReadRows() < staleBurst {
		t.Fatalf("without the pin the read should sort all %d events of the burst; sorts %v, read %v rows:\n%s",
			staleBurst, ex.Sorts(), ex.ReadRows(), ex.Raw)
	}
}

// staleLog is a log whose statistics stop before its newest events, as
// between two autovacuum ANALYZE runs of a month's partition: a few events
// the statistics know, then a burst of staleBurst they do not (job.enqueued
// events of bulk enqueues). after is the cursor of the last event ANALYZE
// saw.
type staleLog struct {
	pool          *pgxpool.Pool
	org           string
	afterTx       int64
	afterPosition int64
}

const staleBurst = 3000

func newStaleLog(t *testing.T) staleLog {
	t.Helper()
	ctx := context.Background()
	pool := testdb.New(t)
	svc := newService(pool, clock.Database{})
	actor := newOrg(t, svc, "acme")
	// Autovacuum must not refresh the statistics in the middle of the test.
	parts, err := pool.Query(ctx, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'job_events'::regclass`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(parts, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if _, err := pool.Exec(ctx, "ALTER TABLE "+pgx.Identifier{name}.Sanitize()+" SET (autovacuum_enabled = false)"); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		if _, err := svc.Enqueue(ctx, actor, []commands.NewJob{{QueueName: "steady", Payload: json.RawMessage(fmt.Sprint(i))}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, "ANALYZE job_events"); err != nil {
		t.Fatal(err)
	}
	l := staleLog{pool: pool, org: actor.OrgID}
	if err := pool.QueryRow(ctx, `SELECT tx_id::text::bigint, position FROM job_events
		ORDER BY tx_id DESC, position DESC LIMIT 1`).Scan(&l.afterTx, &l.afterPosition); err != nil {
		t.Fatal(err)
	}
	enqueueBurst(t, svc, actor, pool)
	return l
}

// enqueueBurst bulk-enqueues staleBurst jobs for actor and waits until
// their events are readable.
func enqueueBurst(t *testing.T, svc *commands.Service, actor commands.Actor, pool *pgxpool.Pool) {
	t.Helper()
	for b := range staleBurst / commands.MaxBulkJobs {
		batch := make([]commands.NewJob, commands.MaxBulkJobs)
		for i := range batch {
			batch[i] = commands.NewJob{QueueName: "burst", Payload: json.RawMessage(fmt.Sprint(b*commands.MaxBulkJobs + i))}
		}
		if _, err := svc.EnqueueBulk(context.Background(), actor, batch); err != nil {
			t.Fatal(err)
		}
	}
	waitReadable(t, pool, actor.OrgID)
}

// waitReadable waits until every event of the organization is readable:
// events stay unreadable while any transaction older than theirs runs
// anywhere in the cluster (other tests'), and each test must see the same
// events in every read.
func waitReadable(t *testing.T, pool *pgxpool.Pool, orgID string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM job_events
			WHERE organization_id = $1 AND tx_id >= pg_snapshot_xmin(pg_current_snapshot())`, orgID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events of %s still unreadable after 10s; transactions holding the horizon back:\n%s",
				n, orgID, oldestTransactions(pool))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// oldestTransactions describes the running transactions that hold an xid,
// oldest first: whoever keeps the snapshot horizon from passing a test's
// events.
func oldestTransactions(pool *pgxpool.Pool) string {
	rows, err := pool.Query(context.Background(), `SELECT format('  pid %s db %s %s/%s xid %s %s %s open %ss: %s',
		pid, datname, backend_type, application_name, backend_xid, state,
		coalesce(wait_event_type || ':' || wait_event, 'CPU'), round(extract(epoch FROM now() - xact_start), 3),
		left(regexp_replace(query, '\s+', ' ', 'g'), 160))
		FROM pg_stat_activity WHERE backend_xid IS NOT NULL ORDER BY age(backend_xid) DESC LIMIT 5`)
	if err != nil {
		return err.Error()
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err.Error()
	}
	return strings.Join(lines, "\n")
}

// begin starts a transaction the test's end rolls back.
func (l staleLog) begin(t *testing.T) pgx.Tx {
	t.Helper()
	tx, err := l.pool.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	return tx
}

// TestLogReadPlanWithStaleStatistics: a projector's page of the log after
// a cursor past what the statistics saw walks the log's index in cursor
// order and stops after the page. Unpinned, the planner expects about a
// hundred events after such a cursor here, so it reads all 3,000 and sorts
// them; a connection that keeps such custom plans does so for every page
// of a catch-up, which is then quadratic in its backlog.
func TestLogReadPlanWithStaleStatistics(t *testing.T) {
	t.Parallel()
	l := newStaleLog(t)
	ctx := context.Background()
	const page = 100
	args := []any{false, []string{"job.completed"}, l.afterTx, l.afterPosition, int32(page)} // EventsAfterCursorParams' order

	l.unpinnedSortsAll(t, queries.EventsAfterCursorSQL, args...)

	tx := l.begin(t)
	if _, err := tx.Exec(ctx, queries.PlanPinSQL); err != nil {
		t.Fatal(err)
	}
	checkPageRead(t, "custom", explainAnalyze(t, ctx, tx, queries.EventsAfterCursorSQL, args...), page)
	// The pin makes the plan generic, as the projector runs it: EXECUTE
	// takes no bind parameters, so its arguments are literals.
	if _, err := tx.Exec(ctx, "PREPARE log_generic AS "+queries.EventsAfterCursorSQL); err != nil {
		t.Fatal(err)
	}
	generic := explainAnalyze(t, ctx, tx, fmt.Sprintf("EXECUTE log_generic(false, ARRAY['job.completed'], %d, %d, %d)",
		l.afterTx, l.afterPosition, page))
	checkPageRead(t, "generic", generic, page)
}

// TestEventsAfterCursorPinnedInto: the pipelined read returns the page in
// cursor order and leaves the transaction's planner settings as it found
// them, for the projection's writes that follow.
func TestEventsAfterCursorPinnedInto(t *testing.T) {
	t.Parallel()
	l := newStaleLog(t)
	ctx := context.Background()
	tx := l.begin(t)
	settings := func() string {
		var s string
		if err := tx.QueryRow(ctx, `SELECT current_setting('enable_sort') || ' ' || current_setting('jit') || ' ' ||
			current_setting('plan_cache_mode')`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := settings()
	evs, err := queries.New().EventsAfterCursorPinnedInto(ctx, tx, queries.EventsAfterCursorParams{
		AfterTxID: l.afterTx, AfterPosition: l.afterPosition, MaxRows: 100,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if after := settings(); after != before {
		t.Fatalf("planner settings after the read %q, before %q", after, before)
	}
	var want []int64
	rows, err := tx.Query(ctx, `SELECT position FROM job_events
		WHERE (tx_id, position) > ($1::bigint::text::xid8, $2::bigint) ORDER BY tx_id, position LIMIT 100`,
		l.afterTx, l.afterPosition)
	if err != nil {
		t.Fatal(err)
	}
	if want, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
		t.Fatal(err)
	}
	if len(evs) != len(want) || len(want) != 100 {
		t.Fatalf("read %d events, want %d (100)", len(evs), len(want))
	}
	for i, e := range evs {
		if e.Position != want[i] || e.OrganizationID != l.org || e.EventType != "job.enqueued" {
			t.Fatalf("event %d: position %d org %s type %s, want position %d of %s, job.enqueued",
				i, e.Position, e.OrganizationID, e.EventType, want[i], l.org)
		}
	}
}

// TestRebuildReadPlanWithStaleStatistics: a rebuild's page of the log in
// stream order, after the newest stream the statistics saw, walks the
// stream index and stops after the page once pinned. Unpinned, it read
// every job event after the cursor and sorted them, for every page.
func TestRebuildReadPlanWithStaleStatistics(t *testing.T) {
	t.Parallel()
	l := newStaleLog(t)
	ctx := context.Background()
	const page = 100
	// The newest job stream ANALYZE saw: job ids are UUIDv7, so the
	// burst's streams all sort after it.
	var stream string
	var seq int32
	if err := l.pool.QueryRow(ctx, `SELECT stream_id, stream_seq FROM job_events
		WHERE stream_type = 'job' AND (tx_id, position) <= ($1::bigint::text::xid8, $2::bigint)
		ORDER BY stream_id DESC, stream_seq DESC LIMIT 1`, l.afterTx, l.afterPosition).Scan(&stream, &seq); err != nil {
		t.Fatal(err)
	}
	args := []any{stream, seq, int32(page)} // EventsJobStreamsAfterParams' order
	l.unpinnedSortsAll(t, queries.EventsJobStreamsAfterSQL, args...)
	tx := l.begin(t)
	if _, err := tx.Exec(ctx, queries.PlanPinSQL); err != nil {
		t.Fatal(err)
	}
	checkPageRead(t, "custom", explainAnalyze(t, ctx, tx, queries.EventsJobStreamsAfterSQL, args...), page)
	if _, err := tx.Exec(ctx, "PREPARE streams_generic AS "+queries.EventsJobStreamsAfterSQL); err != nil {
		t.Fatal(err)
	}
	checkPageRead(t, "generic", explainAnalyze(t, ctx, tx,
		fmt.Sprintf("EXECUTE streams_generic('%s', %d, %d)", stream, seq, page)), page)

	// Rebuild reads through the pinned page and still folds every job.
	st, err := projections.Rebuild(ctx, l.pool)
	if err != nil {
		t.Fatal(err)
	}
	if st.Jobs != staleBurst+5 {
		t.Fatalf("rebuild folded %d jobs, want %d", st.Jobs, staleBurst+5)
	}
}

// TestEventLogPagePlanWithStaleStatistics: an organization's page of its
// log (GET /events/log, /audit, the live streams) after a cursor past what
// the statistics saw walks the log in cursor order once sorting is priced
// out, as the server reads pages without a stream filter; with a stream
// filter, unpinned, the page comes through the stream's own index.
func TestEventLogPagePlanWithStaleStatistics(t *testing.T) {
	t.Parallel()
	l := newStaleLog(t)
	ctx := context.Background()
	const page = 100
	// EventLogPageParams' order: organization, cursor, event type, queue,
	// stream, actor, occurred from and to, rows.
	args := func(stream any) []any {
		return []any{l.org, l.afterTx, l.afterPosition, nil, nil, stream, nil, nil, nil, int32(page)}
	}
	l.unpinnedSortsAll(t, queries.EventLogPageSQL, args(nil)...)
	tx := l.begin(t)
	if _, err := tx.Exec(ctx, queries.PlanNoSortSQL); err != nil {
		t.Fatal(err)
	}
	checkPageRead(t, "no sort", explainAnalyze(t, ctx, tx, queries.EventLogPageSQL, args(nil)...), page)

	var stream string
	if err := l.pool.QueryRow(ctx, `SELECT stream_id FROM job_events
		WHERE (tx_id, position) > ($1::bigint::text::xid8, $2::bigint) ORDER BY tx_id, position LIMIT 1`,
		l.afterTx, l.afterPosition).Scan(&stream); err != nil {
		t.Fatal(err)
	}
	byStream := explainAnalyze(t, ctx, l.begin(t), queries.EventLogPageSQL, args(stream)...)
	if !strings.Contains(byStream.Raw, "job_events_stream_idx") && !strings.Contains(byStream.Raw, "_stream_id_stream_seq_idx") {
		t.Fatalf("a stream's page should come through the stream's index:\n%s", byStream.Raw)
	}
	if byStream.ReadRows() > 2 {
		t.Fatalf("a stream's page read %v rows for a stream of one event:\n%s", byStream.ReadRows(), byStream.Raw)
	}
}

// TestEventLogEndPlanForUnseenTenant: where a realtime stream starts (the
// organization's newest event) is one backwards probe of its index for a
// tenant whose events the statistics have never seen, as the server reads
// it (sorting priced out); unpinned, every event of the tenant was read and
// sorted. An empty log has no end.
func TestEventLogEndPlanForUnseenTenant(t *testing.T) {
	t.Parallel()
	l := newStaleLog(t)
	ctx := context.Background()
	svc := newService(l.pool, clock.Database{})
	fresh := newOrg(t, svc, "fresh")
	q := queries.New()
	if _, err := q.EventLogEndOrdered(ctx, l.pool, "no-such-organization"); !errors.Is(err, pgx.ErrNoRows) {
		t.Fatalf("end of an empty log: %v, want pgx.ErrNoRows", err)
	}
	enqueueBurst(t, svc, fresh, l.pool)

	l.unpinnedSortsAll(t, queries.EventLogEndSQL, fresh.OrgID)
	tx := l.begin(t)
	if _, err := tx.Exec(ctx, queries.PlanNoSortSQL); err != nil {
		t.Fatal(err)
	}
	checkPageRead(t, "no sort", explainAnalyze(t, ctx, tx, queries.EventLogEndSQL, fresh.OrgID), 1)

	end, err := q.EventLogEndOrdered(ctx, l.pool, fresh.OrgID)
	if err != nil {
		t.Fatal(err)
	}
	var want queries.EventLogEndRow
	if err := l.pool.QueryRow(ctx, `SELECT tx_id::text::bigint, position FROM job_events WHERE organization_id = $1
		ORDER BY tx_id DESC, position DESC LIMIT 1`, fresh.OrgID).Scan(&want.TxID, &want.Position); err != nil {
		t.Fatal(err)
	}
	if end != want {
		t.Fatalf("end %+v, want %+v", end, want)
	}
}

// checkPageRead: the page is read in cursor order, without a sort or JIT,
// and no scan produces more than the page and the row that ends it.
func checkPageRead(t *testing.T, kind string, ex testdb.Explained, page int) {
	t.Helper()
	if ex.JIT != nil {
		t.Errorf("%s plan: the read would be JIT-compiled: %v", kind, ex.JIT)
	}
	if ex.Sorts() || ex.ReadRows() > float64(page+1) {
		t.Fatalf("%s plan: sorts %v, a scan read %v rows for a page of %d:\n%s", kind, ex.Sorts(), ex.ReadRows(), page, ex.Raw)
	}
}
