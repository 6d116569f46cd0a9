-- The workers registry.

-- name: WorkerRegister :one
INSERT INTO workers (id, organization_id, queue_name, queue_names, hostname, worker_type,
                     max_concurrency, metadata, version, last_heartbeat, created_at, updated_at)
VALUES (sqlc.arg('id'), sqlc.arg('organization_id'), sqlc.arg('queue_name'), sqlc.arg('queue_names'),
        sqlc.arg('hostname'), sqlc.narg('worker_type'), sqlc.arg('max_concurrency'), sqlc.arg('metadata'),
        sqlc.narg('version'),
        coalesce(sqlc.narg('now')::timestamptz, now()), coalesce(sqlc.narg('now')::timestamptz, now()),
        coalesce(sqlc.narg('now')::timestamptz, now()))
RETURNING *;

-- name: WorkerHeartbeat :one
-- A heartbeat also brings a degraded or offline worker back to healthy
-- (unless it reports draining); the returned previous status tells the
-- caller whether that is a change worth an event.
WITH prev AS (
    SELECT w.id, w.status
    FROM workers w
    WHERE w.id = sqlc.arg('id') AND w.organization_id = sqlc.arg('organization_id')
    FOR UPDATE
)
UPDATE workers w
SET last_heartbeat = coalesce(sqlc.narg('now')::timestamptz, now()),
    updated_at = coalesce(sqlc.narg('now')::timestamptz, now()),
    current_jobs = sqlc.arg('current_jobs'),
    status = sqlc.arg('status'),
    metadata = coalesce(sqlc.narg('metadata')::jsonb, w.metadata)
FROM prev
WHERE w.id = prev.id
RETURNING w.*, prev.status AS previous_status;

-- name: WorkerSetOffline :one
UPDATE workers w
SET status = 'offline', updated_at = coalesce(sqlc.narg('now')::timestamptz, now())
WHERE w.id = sqlc.arg('id') AND w.organization_id = sqlc.arg('organization_id')
RETURNING w.*;

-- name: WorkerGet :one
SELECT * FROM workers WHERE id = sqlc.arg('id') AND organization_id = sqlc.arg('organization_id');

-- name: WorkerList :many
SELECT w.*, (SELECT count(*) FROM processing_jobs p
             WHERE p.organization_id = w.organization_id AND p.worker_id = w.id)::int AS leased_jobs
FROM workers w
WHERE w.organization_id = sqlc.arg('organization_id')
ORDER BY w.last_heartbeat DESC, w.id
LIMIT 100;

-- name: WorkerLeasedCount :one
SELECT count(*)::int FROM processing_jobs
WHERE organization_id = sqlc.arg('organization_id') AND worker_id = sqlc.arg('worker_id');

-- name: WorkerHealthSweep :many
-- Moves live workers whose heartbeats stopped: degraded after degraded_after,
-- offline after offline_after. Returns the workers whose status changed.
WITH clock AS (
    SELECT coalesce(sqlc.narg('now')::timestamptz, now()) AS ts
), changed AS (
    SELECT w.id, w.status AS old_status,
           CASE WHEN w.last_heartbeat <= c.ts - make_interval(secs => sqlc.arg('offline_after_secs')::int)
                THEN 'offline' ELSE 'degraded' END AS new_status
    FROM workers w, clock c
    WHERE w.status IN ('healthy', 'degraded', 'draining')
      AND w.last_heartbeat <= c.ts - make_interval(secs => sqlc.arg('degraded_after_secs')::int)
    FOR UPDATE OF w SKIP LOCKED
)
UPDATE workers w
SET status = ch.new_status, updated_at = c.ts
FROM changed ch, clock c
WHERE w.id = ch.id AND ch.new_status <> ch.old_status
RETURNING w.id, w.organization_id, w.queue_name, ch.old_status, w.status AS new_status;

-- name: WorkerCountByStatus :many
SELECT status, count(*)::bigint AS workers FROM workers GROUP BY status;
