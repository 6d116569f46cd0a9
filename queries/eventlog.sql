-- The log as a product: org-scoped, gap-free pages for readers and audit.

-- name: EventLogPage :many
-- An organization's events after a cursor, in cursor order, only from
-- transactions that have all finished (below the oldest running one), with
-- optional filters. Readers resume from the last row's (tx_id, position).
SELECT e.position, e.tx_id::text::bigint AS tx_id, e.stream_type, e.stream_id, e.stream_seq,
       e.event_type, e.queue_name, e.actor, e.data, e.occurred_at
FROM job_events e
WHERE e.organization_id = sqlc.arg('organization_id')
  AND (e.tx_id, e.position) > (sqlc.arg('after_tx_id')::bigint::text::xid8, sqlc.arg('after_position')::bigint)
  AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot())
  AND (sqlc.narg('event_type')::text IS NULL OR e.event_type = sqlc.narg('event_type')::text)
  AND (sqlc.narg('queue_name')::text IS NULL OR e.queue_name = sqlc.narg('queue_name')::text)
  AND (sqlc.narg('stream_id')::text IS NULL OR e.stream_id = sqlc.narg('stream_id')::text)
  AND (sqlc.narg('actor')::text IS NULL OR e.actor = sqlc.narg('actor')::text)
  AND (sqlc.narg('occurred_from')::timestamptz IS NULL OR e.occurred_at >= sqlc.narg('occurred_from')::timestamptz)
  AND (sqlc.narg('occurred_to')::timestamptz IS NULL OR e.occurred_at < sqlc.narg('occurred_to')::timestamptz)
ORDER BY e.tx_id, e.position
LIMIT sqlc.arg('max_rows');

-- name: EventLogEnd :one
-- The newest cursor an organization's readers can see now (one backwards
-- index probe): a live stream starts after it. Everything below the oldest
-- running transaction is final, so nothing can later appear before it.
SELECT e.tx_id::text::bigint AS tx_id, e.position
FROM job_events e
WHERE e.organization_id = sqlc.arg('organization_id')
  AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY e.tx_id DESC, e.position DESC
LIMIT 1;
