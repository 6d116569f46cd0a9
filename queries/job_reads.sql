-- Reads of the job projections, always scoped by organization.

-- name: JobGet :one
SELECT * FROM jobs WHERE id = sqlc.arg('id') AND organization_id = sqlc.arg('organization_id');

-- name: JobList :many
SELECT id, queue_name, status, priority, retry_count, max_retries, created_at, scheduled_at,
       started_at, completed_at
FROM jobs
-- The keys for the indexes (jobs_org_created_idx, jobs_org_queue_created_idx),
-- the texts for the answer (sql/0020).
WHERE text_key(organization_id) = text_key(sqlc.arg('organization_id')) AND organization_id = sqlc.arg('organization_id')
  AND (sqlc.narg('queue_name')::text IS NULL
       OR (text_key(queue_name) = text_key(sqlc.narg('queue_name')::text) AND queue_name = sqlc.narg('queue_name')::text))
  AND (sqlc.narg('status')::text IS NULL OR status = sqlc.narg('status')::text)
  -- Lets a filter on a dead status (failed, deadletter, cancelled) use
  -- jobs_org_dead_idx; other statuses walk jobs_org_created_idx.
  AND (sqlc.narg('status')::text IS NULL OR sqlc.narg('status')::text NOT IN ('failed', 'deadletter', 'cancelled')
       OR dead_status = sqlc.narg('status')::text)
  AND (sqlc.narg('tag')::text IS NULL OR tags ? sqlc.narg('tag')::text)
ORDER BY created_at DESC, id DESC
LIMIT sqlc.arg('max_rows') OFFSET sqlc.arg('skip_rows');

-- name: JobStatusByIDs :many
SELECT id, status, queue_name, retry_count, created_at, completed_at
FROM jobs
WHERE organization_id = sqlc.arg('organization_id') AND id = ANY(sqlc.arg('ids')::uuid[]);

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

-- name: QueueClaimProbe :one
-- Read before a claim: whether the queue holds a job a claim could take now
-- (the claim's own conditions, by the claim index), and when its next
-- waiting job falls due (the zero time 0001-01-01 when none waits, which Go
-- reads as time.Time's zero value). run_at > created_at holds for every
-- row that is not ready yet (a job ready on arrival has run_at =
-- created_at); stating it lets the planner use pending_jobs_next_due_idx,
-- which holds those rows alone. A waiting claim also reads it after a claim
-- statement that found nothing, for its timer. An empty queue
-- is answered by these two index probes alone. The claim statement is
-- large: starting its plan costs more than this whole read, and most
-- claims of a polling or long-polling worker find nothing.
SELECT EXISTS (
           SELECT 1 FROM pending_jobs p
           WHERE text_key(p.organization_id) = text_key(sqlc.arg('organization_id')) AND text_key(p.queue_name) = text_key(sqlc.arg('queue_name'))
             AND p.organization_id = sqlc.arg('organization_id')
             AND p.queue_name = sqlc.arg('queue_name')
             AND p.run_at <= coalesce(sqlc.narg('now')::timestamptz, now())
             AND (p.expires_at IS NULL OR p.expires_at > coalesce(sqlc.narg('now')::timestamptz, now()))
       ) AS ready,
       coalesce((SELECT p.run_at FROM pending_jobs p
                 WHERE p.organization_id = sqlc.arg('organization_id')
                   AND p.queue_name = sqlc.arg('queue_name')
                   AND p.run_at > p.created_at
                   AND p.run_at > coalesce(sqlc.narg('now')::timestamptz, now())
                 ORDER BY p.run_at
                 LIMIT 1), '0001-01-01 00:00:00+00')::timestamptz AS next_due;

-- name: MetricsPendingByQueue :many
-- Scrape-time gauges: waiting jobs and the age of the oldest ready one, per
-- queue across organizations (labels stay bounded by queue names).
SELECT p.queue_name,
       count(*)::bigint AS pending,
       coalesce(extract(epoch FROM now() - min(p.run_at) FILTER (WHERE p.run_at <= now())), 0)::float8 AS max_age_seconds
FROM pending_jobs p
GROUP BY p.queue_name;

-- name: MetricsProcessingByQueue :many
SELECT queue_name, count(*)::bigint AS processing
FROM processing_jobs
GROUP BY queue_name;

-- name: JobEventsUntil :many
-- A job's events up to a moment, for reading the job as it stood then.
-- since (from the UUIDv7 id) lets the planner skip older partitions.
SELECT organization_id, stream_id, stream_seq, event_type, queue_name, data, occurred_at
FROM job_events
WHERE organization_id = sqlc.arg('organization_id')
  AND stream_id = sqlc.arg('stream_id')
  AND occurred_at >= sqlc.arg('since')
  AND occurred_at <= sqlc.arg('until')
ORDER BY stream_seq;

-- name: JobEnqueuedEvent :one
-- The event a replay copies.
SELECT data, queue_name
FROM job_events
WHERE organization_id = sqlc.arg('organization_id')
  AND stream_id = sqlc.arg('stream_id')
  AND occurred_at >= sqlc.arg('since')
  AND stream_seq = 1;
