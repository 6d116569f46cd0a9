-- name: JobReleaseWorkerLeases :many
-- A worker that deregisters gives its leased jobs back: each returns to
-- pending at once without spending a retry, and job.released is appended.
WITH clock AS (
    SELECT coalesce(sqlc.narg('now')::timestamptz, now()) AS ts
), held AS (
    SELECT p.job_id
    FROM processing_jobs p
    WHERE p.organization_id = sqlc.arg('organization_id') AND p.worker_id = sqlc.arg('worker_id')
    FOR UPDATE SKIP LOCKED
), released AS (
    DELETE FROM processing_jobs p
    USING held h
    WHERE p.job_id = h.job_id
    RETURNING p.job_id, p.worker_id, p.lease_id
), requeued AS (
    UPDATE jobs j
    SET status = 'pending', lease_id = NULL, lease_expires_at = NULL, updated_at = c.ts,
        version = j.version + 1
    FROM released r, clock c
    WHERE j.id = r.job_id
    RETURNING j.*, r.worker_id AS released_worker_id, r.lease_id AS released_lease_id
), queued AS (
    INSERT INTO pending_jobs (job_id, organization_id, queue_name, priority, run_at, expires_at, created_at)
    SELECT id, organization_id, queue_name, priority, updated_at, expires_at, created_at
    FROM requeued
), logged AS (
    INSERT INTO job_events (organization_id, stream_type, stream_id, stream_seq, event_type,
                            queue_name, actor, data, occurred_at)
    SELECT organization_id, 'job', id::text, version, 'job.released', queue_name, sqlc.arg('actor')::text,
           json_build_object('worker_id', released_worker_id, 'lease_id', released_lease_id,
                             'reason', sqlc.arg('reason')::text),
           updated_at
    FROM requeued
)
SELECT id, queue_name FROM requeued;
