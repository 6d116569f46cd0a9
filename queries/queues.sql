-- Queue configuration and the locks a limited claim takes first.

-- name: QueueConfigGet :one
SELECT * FROM queue_config
WHERE organization_id = sqlc.arg('organization_id') AND queue_name = sqlc.arg('queue_name');

-- name: QueueConfigList :many
SELECT * FROM queue_config
WHERE organization_id = sqlc.arg('organization_id')
ORDER BY queue_name
LIMIT 100;

-- name: QueueConfigUpsert :one
-- Creates or changes a queue's configuration. A field left out (NULL) keeps
-- its value (or takes the default on a new row); clear_* removes a limit.
-- enabled is never touched here: pause and resume are their own commands.
INSERT INTO queue_config (id, organization_id, queue_name, max_retries, default_timeout,
                          rate_limit_per_second, max_concurrent_jobs, settings, created_at, updated_at)
VALUES (sqlc.arg('id'), sqlc.arg('organization_id'), sqlc.arg('queue_name'),
        coalesce(sqlc.narg('max_retries')::int, sqlc.arg('default_max_retries')::int),
        coalesce(sqlc.narg('default_timeout')::int, sqlc.arg('default_timeout_secs')::int),
        sqlc.narg('rate_limit_per_second')::int, sqlc.narg('max_concurrent_jobs')::int,
        coalesce(sqlc.narg('settings')::jsonb, '{}'::jsonb),
        coalesce(sqlc.narg('now')::timestamptz, now()), coalesce(sqlc.narg('now')::timestamptz, now()))
ON CONFLICT (organization_id, queue_name) DO UPDATE
SET max_retries = coalesce(sqlc.narg('max_retries')::int, queue_config.max_retries),
    default_timeout = coalesce(sqlc.narg('default_timeout')::int, queue_config.default_timeout),
    rate_limit_per_second = CASE WHEN sqlc.arg('clear_rate_limit')::bool THEN NULL
                                 ELSE coalesce(sqlc.narg('rate_limit_per_second')::int, queue_config.rate_limit_per_second) END,
    max_concurrent_jobs = CASE WHEN sqlc.arg('clear_max_concurrent_jobs')::bool THEN NULL
                               ELSE coalesce(sqlc.narg('max_concurrent_jobs')::int, queue_config.max_concurrent_jobs) END,
    settings = coalesce(sqlc.narg('settings')::jsonb, queue_config.settings),
    updated_at = coalesce(sqlc.narg('now')::timestamptz, now())
RETURNING *;

-- name: QueueSetPaused :one
-- Pauses or resumes a queue, creating its configuration with the defaults
-- when it has none. Returns the row with the state before the change.
-- Pausing a paused queue (or resuming a running one) changes nothing.
WITH prev AS (
    SELECT q.organization_id, q.queue_name, q.enabled, q.paused_at
    FROM queue_config q
    WHERE q.organization_id = sqlc.arg('organization_id') AND q.queue_name = sqlc.arg('queue_name')
    FOR UPDATE
), upserted AS (
    INSERT INTO queue_config (id, organization_id, queue_name, max_retries, default_timeout, enabled,
                              paused_at, paused_reason, created_at, updated_at)
    SELECT sqlc.arg('id'), sqlc.arg('organization_id'), sqlc.arg('queue_name'),
           sqlc.arg('default_max_retries')::int, sqlc.arg('default_timeout_secs')::int, NOT sqlc.arg('paused')::bool,
           CASE WHEN sqlc.arg('paused')::bool THEN coalesce(sqlc.narg('now')::timestamptz, now()) END,
           CASE WHEN sqlc.arg('paused')::bool THEN sqlc.narg('reason')::text END,
           coalesce(sqlc.narg('now')::timestamptz, now()), coalesce(sqlc.narg('now')::timestamptz, now())
    -- Reading prev here runs it (and takes its lock) before the upsert
    -- touches the row. Read only after the upsert, its FOR UPDATE would skip
    -- the row this statement has just updated, and the state before the
    -- change would read as "no row".
    FROM (SELECT count(*) FROM prev) AS locked_first
    ON CONFLICT (organization_id, queue_name) DO UPDATE
    SET enabled = NOT sqlc.arg('paused')::bool,
        -- Pausing a paused queue keeps the original pause time and reason.
        paused_at = CASE WHEN sqlc.arg('paused')::bool
                         THEN coalesce(queue_config.paused_at, coalesce(sqlc.narg('now')::timestamptz, now())) END,
        paused_reason = CASE WHEN sqlc.arg('paused')::bool
                             THEN CASE WHEN queue_config.enabled THEN sqlc.narg('reason')::text
                                       ELSE queue_config.paused_reason END END,
        updated_at = CASE WHEN queue_config.enabled = NOT sqlc.arg('paused')::bool THEN queue_config.updated_at
                          ELSE coalesce(sqlc.narg('now')::timestamptz, now()) END
    RETURNING *
)
SELECT u.*, coalesce((SELECT p.enabled FROM prev p), true)::bool AS was_enabled,
       (SELECT p.paused_at FROM prev p) AS was_paused_at
FROM upserted u;

-- name: QueueConfigDelete :one
DELETE FROM queue_config q
WHERE q.organization_id = sqlc.arg('organization_id') AND q.queue_name = sqlc.arg('queue_name')
RETURNING q.id;

-- name: QueueActiveJobs :one
SELECT ((SELECT count(*) FROM pending_jobs p
         WHERE text_key(p.organization_id) = text_key(sqlc.arg('organization_id')) AND text_key(p.queue_name) = text_key(sqlc.arg('queue_name'))
           AND p.organization_id = sqlc.arg('organization_id') AND p.queue_name = sqlc.arg('queue_name'))
      + (SELECT count(*) FROM processing_jobs h
         WHERE h.organization_id = sqlc.arg('organization_id') AND h.queue_name = sqlc.arg('queue_name')))::bigint;

-- name: ClaimCapGate :exec
-- Run first in a claim's transaction, as a statement of its own: the
-- queue's cap lock, shared (claims do not wait on each other). A change of
-- the cap takes it exclusively (QueueCapLock) and then restamps the
-- queue's leases (ProcessingStampCapped), so every lease of a claim either
-- committed before that restamp, which sees it, or was written by a claim
-- that read the new cap: capped never disagrees with the queue's
-- configuration.
SELECT pg_advisory_xact_lock_shared(queue_cap_lock_key(sqlc.arg('organization_id'), sqlc.arg('queue_name')));

-- name: QueueCapLock :exec
-- A change of a queue's cap (or the deletion of its configuration) takes
-- the queue's cap lock exclusively, before it reads or writes anything:
-- it waits for the claims in flight on the queue, and holds new ones back
-- until it commits.
SELECT pg_advisory_xact_lock(queue_cap_lock_key(sqlc.arg('organization_id'), sqlc.arg('queue_name')));

-- name: ProcessingStampCapped :exec
-- Sets capped on the queue's leases to whether the queue has a cap now,
-- after a change of its configuration, under QueueCapLock.
UPDATE processing_jobs h
SET capped = c.capped
FROM (SELECT EXISTS (SELECT 1 FROM queue_config q
                     WHERE q.organization_id = sqlc.arg('organization_id')
                       AND q.queue_name = sqlc.arg('queue_name')
                       AND q.max_concurrent_jobs IS NOT NULL) AS capped) c
WHERE h.organization_id = sqlc.arg('organization_id') AND h.queue_name = sqlc.arg('queue_name')
  AND h.capped <> c.capped;

-- name: ClaimLocksMulti :exec
-- Run ahead of JobClaimMulti in the same transaction, as a statement of its
-- own: it locks the queue's configuration row when the queue has a
-- concurrency cap or a rate limit, then every registered worker among the
-- requests, in id order so that two claims never wait on each other
-- crosswise. The claim statement then starts after every concurrent claim
-- of the same queue or workers has committed, so its counts of leases held
-- and its token bucket are current across server instances.
WITH queue_lock AS (
    SELECT q.id FROM queue_config q
    WHERE q.organization_id = sqlc.arg('organization_id') AND q.queue_name = sqlc.arg('queue_name')
      AND (q.max_concurrent_jobs IS NOT NULL OR q.rate_limit_per_second IS NOT NULL)
    FOR UPDATE
), worker_locks AS (
    SELECT w.id FROM workers w
    WHERE w.id = ANY(sqlc.arg('worker_ids')::text[]) AND w.organization_id = sqlc.arg('organization_id')
    ORDER BY w.id
    FOR UPDATE
)
SELECT (SELECT count(*) FROM queue_lock) + (SELECT count(*) FROM worker_locks);
