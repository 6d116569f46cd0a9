-- The queue_stats projection's writes and the stats reads.

-- name: QueueStatsAdd :exec
-- Adds one batch's deltas, one row per (organization, queue).
INSERT INTO queue_stats (organization_id, queue_name, enqueued, completed, deadletter, cancelled)
SELECT unnest(sqlc.arg('organization_ids')::text[]), unnest(sqlc.arg('queue_names')::text[]),
       unnest(sqlc.arg('enqueued')::bigint[]), unnest(sqlc.arg('completed')::bigint[]),
       unnest(sqlc.arg('deadletter')::bigint[]), unnest(sqlc.arg('cancelled')::bigint[])
ON CONFLICT (organization_id, queue_name) DO UPDATE
SET enqueued = queue_stats.enqueued + EXCLUDED.enqueued,
    completed = queue_stats.completed + EXCLUDED.completed,
    deadletter = queue_stats.deadletter + EXCLUDED.deadletter,
    cancelled = queue_stats.cancelled + EXCLUDED.cancelled;

-- name: QueueStatsHourlyAdd :exec
INSERT INTO queue_stats_hourly (organization_id, queue_name, hour, created, completed, failed,
                                deadlettered, run_ms_sum, run_count, wait_ms_sum, wait_count)
SELECT unnest(sqlc.arg('organization_ids')::text[]), unnest(sqlc.arg('queue_names')::text[]),
       unnest(sqlc.arg('hours')::timestamptz[]), unnest(sqlc.arg('created')::bigint[]),
       unnest(sqlc.arg('completed')::bigint[]), unnest(sqlc.arg('failed')::bigint[]),
       unnest(sqlc.arg('deadlettered')::bigint[]), unnest(sqlc.arg('run_ms_sum')::bigint[]),
       unnest(sqlc.arg('run_count')::bigint[]), unnest(sqlc.arg('wait_ms_sum')::bigint[]),
       unnest(sqlc.arg('wait_count')::bigint[])
ON CONFLICT (organization_id, queue_name, hour) DO UPDATE
SET created = queue_stats_hourly.created + EXCLUDED.created,
    completed = queue_stats_hourly.completed + EXCLUDED.completed,
    failed = queue_stats_hourly.failed + EXCLUDED.failed,
    deadlettered = queue_stats_hourly.deadlettered + EXCLUDED.deadlettered,
    run_ms_sum = queue_stats_hourly.run_ms_sum + EXCLUDED.run_ms_sum,
    run_count = queue_stats_hourly.run_count + EXCLUDED.run_count,
    wait_ms_sum = queue_stats_hourly.wait_ms_sum + EXCLUDED.wait_ms_sum,
    wait_count = queue_stats_hourly.wait_count + EXCLUDED.wait_count;

-- name: QueueStatsReset :exec
TRUNCATE queue_stats, queue_stats_hourly;

-- name: StatsLive :one
-- Live counts from the hot tables (small by design); never a count over
-- finished jobs. Scheduled jobs wait in pending_jobs like the others: the
-- count looks their status up by key.
SELECT
    (SELECT count(*) FROM pending_jobs p
     WHERE text_key(p.organization_id) = text_key(sqlc.arg('organization_id')) AND p.organization_id = sqlc.arg('organization_id')
       AND (sqlc.narg('queue_name')::text IS NULL OR p.queue_name = sqlc.narg('queue_name')::text))::bigint AS waiting,
    (SELECT count(*) FROM pending_jobs p JOIN jobs j ON j.id = p.job_id
     WHERE text_key(p.organization_id) = text_key(sqlc.arg('organization_id')) AND p.organization_id = sqlc.arg('organization_id')
       AND j.status = 'scheduled'
       AND (sqlc.narg('queue_name')::text IS NULL OR p.queue_name = sqlc.narg('queue_name')::text))::bigint AS scheduled,
    (SELECT count(*) FROM processing_jobs h
     WHERE h.organization_id = sqlc.arg('organization_id')
       AND (sqlc.narg('queue_name')::text IS NULL OR h.queue_name = sqlc.narg('queue_name')::text))::bigint AS processing;

-- name: OrgActiveJobs :one
-- The organization's waiting (ready, scheduled or backing off) and leased
-- jobs, for the max_active_jobs quota a create checks: two index
-- counts, without StatsLive's per-row lookup of which waiting jobs are
-- scheduled.
SELECT ((SELECT count(*) FROM pending_jobs p
         WHERE text_key(p.organization_id) = text_key(sqlc.arg('organization_id')) AND p.organization_id = sqlc.arg('organization_id'))
      + (SELECT count(*) FROM processing_jobs h WHERE h.organization_id = sqlc.arg('organization_id')))::bigint AS active;

-- name: StatsTotals :one
-- Finished-job counters from the queue_stats projection.
SELECT coalesce(sum(s.completed), 0)::bigint AS completed,
       coalesce(sum(s.deadletter), 0)::bigint AS deadletter,
       coalesce(sum(s.cancelled), 0)::bigint AS cancelled,
       coalesce(sum(s.enqueued), 0)::bigint AS enqueued
FROM queue_stats s
WHERE s.organization_id = sqlc.arg('organization_id')
  AND (sqlc.narg('queue_name')::text IS NULL OR s.queue_name = sqlc.narg('queue_name')::text);

-- name: StatsWindow :one
-- Activity in the hourly buckets from since on (the windows are the current
-- hour and the ones before it: 24 h means this hour and the 23 before).
SELECT coalesce(sum(h.created), 0)::bigint AS created,
       coalesce(sum(h.completed), 0)::bigint AS completed,
       coalesce(sum(h.failed), 0)::bigint AS failed,
       coalesce(sum(h.deadlettered), 0)::bigint AS deadlettered,
       coalesce(sum(h.run_ms_sum), 0)::bigint AS run_ms_sum,
       coalesce(sum(h.run_count), 0)::bigint AS run_count,
       coalesce(sum(h.wait_ms_sum), 0)::bigint AS wait_ms_sum,
       coalesce(sum(h.wait_count), 0)::bigint AS wait_count
FROM queue_stats_hourly h
WHERE h.organization_id = sqlc.arg('organization_id')
  AND (sqlc.narg('queue_name')::text IS NULL OR h.queue_name = sqlc.narg('queue_name')::text)
  AND h.hour >= sqlc.arg('since')::timestamptz;

-- name: StatsOldestWaiting :one
-- When the oldest waiting job of a queue was created (no row: none waits).
-- pending_jobs_claim_idx orders a queue's jobs by priority, then age: the
-- walk finds each priority present (highest first, one probe each) and
-- the oldest job of each, so no index by age alone is kept up for this.
WITH RECURSIVE prio AS (
    (SELECT p.priority
     FROM pending_jobs p
     WHERE text_key(p.organization_id) = text_key(sqlc.arg('organization_id')) AND text_key(p.queue_name) = text_key(sqlc.arg('queue_name'))
       AND p.organization_id = sqlc.arg('organization_id') AND p.queue_name = sqlc.arg('queue_name')
     ORDER BY p.priority DESC
     LIMIT 1)
    UNION ALL
    SELECT (SELECT p.priority
            FROM pending_jobs p
            WHERE text_key(p.organization_id) = text_key(sqlc.arg('organization_id')) AND text_key(p.queue_name) = text_key(sqlc.arg('queue_name'))
              AND p.organization_id = sqlc.arg('organization_id') AND p.queue_name = sqlc.arg('queue_name')
              AND p.priority < prio.priority
            ORDER BY p.priority DESC
            LIMIT 1)
    FROM prio
    WHERE prio.priority IS NOT NULL
), oldest AS (
    SELECT (SELECT p.created_at
            FROM pending_jobs p
            WHERE text_key(p.organization_id) = text_key(sqlc.arg('organization_id')) AND text_key(p.queue_name) = text_key(sqlc.arg('queue_name'))
              AND p.organization_id = sqlc.arg('organization_id') AND p.queue_name = sqlc.arg('queue_name')
              AND p.priority = prio.priority
            ORDER BY p.priority DESC, p.created_at
            LIMIT 1) AS created_at
    FROM prio
    WHERE prio.priority IS NOT NULL
)
SELECT o.created_at::timestamptz AS created_at
FROM oldest o
WHERE o.created_at IS NOT NULL
ORDER BY o.created_at
LIMIT 1;

-- name: StatsActiveWorkers :one
SELECT count(*)::bigint
FROM workers w
WHERE w.organization_id = sqlc.arg('organization_id') AND w.status = 'healthy'
  AND (sqlc.narg('queue_name')::text IS NULL OR sqlc.narg('queue_name')::text = ANY(w.queue_names));

-- name: StatsWorkers :one
SELECT count(*)::bigint AS total,
       count(*) FILTER (WHERE w.status = 'healthy')::bigint AS healthy
FROM workers w
WHERE w.organization_id = sqlc.arg('organization_id') AND w.status <> 'offline';

-- name: StatsBusiestQueues :many
-- The dashboard's queue list: queues with waiting or leased jobs, busiest
-- first, from the hot tables.
WITH live AS (
    SELECT p.queue_name, count(*)::bigint AS waiting, 0::bigint AS leased
    FROM pending_jobs p
    WHERE text_key(p.organization_id) = text_key(sqlc.arg('organization_id')) AND p.organization_id = sqlc.arg('organization_id')
    GROUP BY p.queue_name
    UNION ALL
    SELECT h.queue_name, 0::bigint, count(*)::bigint
    FROM processing_jobs h WHERE h.organization_id = sqlc.arg('organization_id') GROUP BY h.queue_name
)
SELECT l.queue_name, sum(l.waiting)::bigint AS pending, sum(l.leased)::bigint AS processing,
       coalesce(bool_or(NOT qc.enabled), false)::bool AS paused
FROM live l
LEFT JOIN queue_config qc ON qc.organization_id = sqlc.arg('organization_id') AND qc.queue_name = l.queue_name
GROUP BY l.queue_name
ORDER BY sum(l.waiting) + sum(l.leased) DESC, l.queue_name
LIMIT 20;
