package queries_test

import (
	"context"
	"reflect"
	"testing"
	"unsafe"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spooled-go/spooled/internal/testdb"
	"github.com/spooled-go/spooled/queries"
)

// sameScan reads sql's rows twice, by the row type's own scan targets and by
// pgx.RowToStructByPos, and fails unless both read every row alike.
func sameScan[T any](t *testing.T, ctx context.Context, pool *pgxpool.Pool, sql string, wantRows int) {
	t.Helper()
	rows, err := pool.Query(ctx, sql)
	if err != nil {
		t.Fatal(err)
	}
	fast, err := queries.CollectRows[T](rows)
	if err != nil {
		t.Fatalf("scan by the row type's fields: %v", err)
	}
	rows, err = pool.Query(ctx, sql)
	if err != nil {
		t.Fatal(err)
	}
	slow, err := pgx.CollectRows(rows, pgx.RowToStructByPos[T])
	if err != nil {
		t.Fatalf("scan by position: %v", err)
	}
	if len(fast) != wantRows {
		t.Fatalf("read %d rows, want %d", len(fast), wantRows)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("the row type's own scan differs from RowToStructByPos:\n%+v\n%+v", fast, slow)
	}
}

// TestHandListedScansMatchReflection guards the hand-written scan targets of
// the hot reads: a column added to a query (or a field to its sqlc row
// type) that scanFields does not follow fails here, with every nullable
// column both set and NULL.
func TestHandListedScansMatchReflection(t *testing.T) {
	ctx := context.Background()
	pool := testdb.New(t)
	if _, err := pool.Exec(ctx, `
		INSERT INTO jobs (id, organization_id, queue_name, status, payload, result, retry_count, max_retries,
		                  last_error, created_at, scheduled_at, started_at, completed_at, expires_at, priority,
		                  tags, timeout_seconds, parent_job_id, completion_webhook, assigned_worker_id, lease_id,
		                  lease_expires_at, idempotency_key, updated_at, workflow_id, dependency_mode,
		                  dependencies_met, version)
		VALUES ('018f0000-0000-7000-8000-000000000001', 'org-a', 'emails', 'failed', '{"to":"a@example.com"}',
		        '{"ok":false}', 2, 5, 'boom', now(), now(), now(), now(), now() + interval '1 day', 7,
		        '["x","y"]', 30, '018f0000-0000-7000-8000-000000000002', 'https://example.com/hook', 'w-1',
		        '018f0000-0000-7000-8000-000000000003', now(), 'key-1', now(), 'wf', 'any', false, 4),
		       ('018f0000-0000-7000-8000-000000000002', 'org-a', 'emails', 'pending', 'null',
		        NULL, 0, 3, NULL, now(), NULL, NULL, NULL, NULL, 0, NULL, 300, NULL, NULL, NULL, NULL, NULL,
		        NULL, now(), NULL, NULL, NULL, 1)`); err != nil {
		t.Fatal(err)
	}
	// JobClaimMulti's columns: RETURNING j.*, then req and claim_actor.
	sameScan[queries.JobClaimMultiRow](t, ctx, pool,
		`SELECT j.*, 1::int AS req, 'worker:w-1'::text AS claim_actor FROM jobs j ORDER BY j.id`, 2)

	if _, err := pool.Exec(ctx, `
		INSERT INTO job_events (organization_id, stream_type, stream_id, stream_seq, event_type, queue_name, actor, data)
		VALUES ('org-a', 'job', '018f0000-0000-7000-8000-000000000001', 1, 'job.enqueued', 'emails', 'api_key:k', '{"a":1}'),
		       ('org-a', 'organization', 'org-a', 1, 'organization.created', NULL, 'system:test', '{}')`); err != nil {
		t.Fatal(err)
	}
	// EventsAfterCursor's columns.
	sameScan[queries.EventsAfterCursorRow](t, ctx, pool, `
		SELECT position, tx_id::text::bigint AS tx_id, organization_id, stream_type, stream_id, stream_seq,
		       event_type, queue_name, actor, data::text AS data, occurred_at
		FROM job_events ORDER BY position`, 2)
}

// TestEventPageInternsRepeatedValues: the rows of one page of the log share
// one string per distinct organization, event type and actor, and one
// pointer per distinct queue; an empty queue name stays a name (not NULL)
// and a NULL one stays nil.
func TestEventPageInternsRepeatedValues(t *testing.T) {
	ctx := context.Background()
	pool := testdb.New(t)
	if _, err := pool.Exec(ctx, `
		INSERT INTO job_events (organization_id, stream_type, stream_id, stream_seq, event_type, queue_name, actor, data)
		SELECT 'org-a', 'job', 'job-' || i, 1, 'job.enqueued', CASE WHEN i = 3 THEN '' WHEN i = 4 THEN NULL ELSE 'emails' END,
		       'api_key:k', '{}'
		FROM generate_series(1, 5) i`); err != nil {
		t.Fatal(err)
	}
	rows, err := pool.Query(ctx, `
		SELECT position, tx_id::text::bigint AS tx_id, organization_id, stream_type, stream_id, stream_seq,
		       event_type, queue_name, actor, data::text AS data, occurred_at
		FROM job_events ORDER BY position`)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := queries.CollectRows[queries.EventsAfterCursorRow](rows)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 5 {
		t.Fatalf("read %d events, want 5", len(evs))
	}
	first := evs[0]
	for i, e := range evs[1:] {
		for _, c := range []struct{ name, a, b string }{
			{"organization", first.OrganizationID, e.OrganizationID},
			{"stream type", first.StreamType, e.StreamType},
			{"event type", first.EventType, e.EventType},
			{"actor", first.Actor, e.Actor},
		} {
			if c.a != c.b || unsafe.StringData(c.a) != unsafe.StringData(c.b) {
				t.Errorf("row %d: %s %q does not share row 0's string %q", i+1, c.name, c.b, c.a)
			}
		}
	}
	if evs[1].QueueName != evs[0].QueueName || *evs[0].QueueName != "emails" {
		t.Errorf("rows 0 and 1 do not share one queue pointer: %p %p", evs[0].QueueName, evs[1].QueueName)
	}
	if q := evs[2].QueueName; q == nil || *q != "" {
		t.Errorf("an empty queue name read as %v, want \"\"", q)
	}
	if q := evs[3].QueueName; q != nil {
		t.Errorf("a NULL queue name read as %q, want nil", *q)
	}
}
