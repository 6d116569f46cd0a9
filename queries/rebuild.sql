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
