-- name: RebuildTruncate :exec
TRUNCATE jobs_rebuild, pending_jobs_rebuild, processing_jobs_rebuild;

-- name: RebuildInsertJobs :copyfrom
INSERT INTO jobs_rebuild (id, organization_id, queue_name, status, payload, result, retry_count,
    max_retries, last_error, created_at, scheduled_at, started_at, completed_at, expires_at, priority,
    tags, timeout_seconds, parent_job_id, completion_webhook, assigned_worker_id, lease_id,
    lease_expires_at, idempotency_key, updated_at, workflow_id, dependency_mode, dependencies_met, version)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
    $21, $22, $23, $24, $25, $26, $27, $28);

-- name: RebuildInsertPending :copyfrom
INSERT INTO pending_jobs_rebuild (job_id, organization_id, queue_name, priority, run_at, expires_at, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7);

-- name: RebuildInsertProcessing :copyfrom
INSERT INTO processing_jobs_rebuild (job_id, organization_id, queue_name, worker_id, lease_id, lease_expires_at, claimed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7);

-- name: RebuildStampCapped :exec
-- Marks the rebuilt leases of queues with a concurrency cap, as claims and
-- cap changes mark the live ones (capped is not in the log: it follows the
-- queue's configuration). Both ways: a swap's re-fold keeps rows the
-- rebuild stamped under an older configuration.
UPDATE processing_jobs_rebuild h
SET capped = NOT h.capped
WHERE h.capped <> EXISTS (SELECT 1 FROM queue_config q
                          WHERE q.organization_id = h.organization_id AND q.queue_name = h.queue_name
                            AND q.max_concurrent_jobs IS NOT NULL);

-- name: RebuildDiffJobs :many
-- Rows that differ between the live jobs table and the rebuilt one.
SELECT 'live'::text AS side, d.id FROM (SELECT * FROM jobs EXCEPT SELECT * FROM jobs_rebuild) d
UNION ALL
SELECT 'rebuilt'::text, d.id FROM (SELECT * FROM jobs_rebuild EXCEPT SELECT * FROM jobs) d
ORDER BY 2, 1
LIMIT sqlc.arg('max_rows');

-- name: RebuildDiffPending :many
SELECT 'live'::text AS side, d.job_id FROM (SELECT * FROM pending_jobs EXCEPT SELECT * FROM pending_jobs_rebuild) d
UNION ALL
SELECT 'rebuilt'::text, d.job_id FROM (SELECT * FROM pending_jobs_rebuild EXCEPT SELECT * FROM pending_jobs) d
ORDER BY 2, 1
LIMIT sqlc.arg('max_rows');

-- name: RebuildDiffProcessing :many
SELECT 'live'::text AS side, d.job_id FROM (SELECT * FROM processing_jobs EXCEPT SELECT * FROM processing_jobs_rebuild) d
UNION ALL
SELECT 'rebuilt'::text, d.job_id FROM (SELECT * FROM processing_jobs_rebuild EXCEPT SELECT * FROM processing_jobs) d
ORDER BY 2, 1
LIMIT sqlc.arg('max_rows');

-- name: RebuildSnapshot :one
-- The snapshot a REPEATABLE READ rebuild reads the log at (run it first).
SELECT pg_current_snapshot()::text;

-- name: RebuildLockLive :exec
SELECT lock_job_projections();

-- name: RebuildSwap :exec
SELECT swap_job_projections();

-- name: RebuildDeltaStreams :many
-- Job streams with events the rebuild's snapshot could not see: written by
-- transactions running at that moment or later.
SELECT DISTINCT e.stream_id
FROM job_events e
WHERE e.stream_type = 'job'
  AND e.tx_id >= pg_snapshot_xmin(sqlc.arg('snapshot')::text::pg_snapshot)
  AND NOT pg_visible_in_snapshot(e.tx_id, sqlc.arg('snapshot')::text::pg_snapshot);

-- name: RebuildDeleteStreams :exec
WITH j AS (DELETE FROM jobs_rebuild WHERE id = ANY(sqlc.arg('ids')::uuid[])),
     p AS (DELETE FROM pending_jobs_rebuild WHERE job_id = ANY(sqlc.arg('ids')::uuid[]))
DELETE FROM processing_jobs_rebuild WHERE job_id = ANY(sqlc.arg('ids')::uuid[]);

-- name: EventsJobStreamsIn :many
-- Every event of the given job streams, in (stream, sequence) order.
SELECT organization_id, stream_id, stream_seq, event_type, queue_name, data, occurred_at
FROM job_events
WHERE stream_type = 'job' AND stream_id = ANY(sqlc.arg('stream_ids')::text[])
ORDER BY stream_id, stream_seq;

-- name: EventsJobCount :one
SELECT count(*)::bigint FROM job_events WHERE stream_type = 'job';

