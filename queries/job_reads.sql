-- Reads of the job projections, always scoped by organization.

-- name: JobGet :one
SELECT * FROM jobs WHERE id = sqlc.arg('id') AND organization_id = sqlc.arg('organization_id');

-- name: JobList :many
SELECT id, queue_name, status, priority, retry_count, max_retries, created_at, scheduled_at,
       started_at, completed_at
FROM jobs
WHERE organization_id = sqlc.arg('organization_id')
  AND (sqlc.narg('queue_name')::text IS NULL OR queue_name = sqlc.narg('queue_name')::text)
  AND (sqlc.narg('status')::text IS NULL OR status = sqlc.narg('status')::text)
  AND (sqlc.narg('tag')::text IS NULL OR tags ? sqlc.narg('tag')::text)
ORDER BY created_at DESC, id DESC
LIMIT sqlc.arg('max_rows') OFFSET sqlc.arg('skip_rows');

-- name: JobStatusByIDs :many
SELECT id, status, queue_name, retry_count, created_at, completed_at
FROM jobs
WHERE organization_id = sqlc.arg('organization_id') AND id = ANY(sqlc.arg('ids')::uuid[]);

-- name: JobCountByStatus :many
SELECT status, count(*)::bigint AS jobs
FROM jobs
WHERE organization_id = sqlc.arg('organization_id')
  AND (sqlc.narg('queue_name')::text IS NULL OR queue_name = sqlc.narg('queue_name')::text)
GROUP BY status;

-- name: JobLeaseState :one
-- What a refused worker call is told: why its lease no longer holds.
SELECT status, assigned_worker_id, lease_id, lease_expires_at
FROM jobs
WHERE id = sqlc.arg('id') AND organization_id = sqlc.arg('organization_id');

-- name: JobHistory :many
-- A job's events in stream order. since is the job's creation time (from its
-- UUIDv7 id), which lets the planner skip older log partitions.
SELECT position, stream_seq, event_type, occurred_at, actor, data
FROM job_events
WHERE organization_id = sqlc.arg('organization_id')
  AND stream_id = sqlc.arg('stream_id')
  AND occurred_at >= sqlc.arg('since')
ORDER BY stream_seq;
