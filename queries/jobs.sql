-- Job transitions. Each one is a single statement: it takes the row lock on
-- the hot table first (pending_jobs or processing_jobs), then the jobs row,
-- and appends its events in the same statement, so the event and its
-- projection write commit together or not at all. Every statement reads its
-- clock once: the database clock unless a caller pins one.

-- name: JobEnqueueBatch :many
-- Inserts many jobs in one round trip. Rows whose idempotency key is taken
-- are skipped; the caller resolves them with JobIDsByIdempotencyKeys. Each
-- row names its own organization and actor, so that single enqueues of many
-- tenants, coalesced by the group commit, share one statement and one
-- commit; every row's reads and writes stay within its organization.
WITH clock AS (
    SELECT coalesce(sqlc.narg('now')::timestamptz, now()) AS ts
), input AS (
    -- Set-returning functions in one select list advance in lock step, and
    -- one that runs out yields NULL for the remaining rows. So a column no
    -- job of the batch sets comes as a NULL array (NULL on every row, and no
    -- array of zero values to send and decode); in a column some job sets,
    -- whose array cannot carry NULL from Go, zero values stand for it.
    SELECT unnest(sqlc.arg('ids')::uuid[]) AS id,
           unnest(sqlc.arg('organization_ids')::text[]) AS organization_id,
           unnest(sqlc.arg('actors')::text[]) AS actor,
           unnest(sqlc.arg('queue_names')::text[]) AS queue_name,
           unnest(sqlc.arg('payloads')::jsonb[]) AS payload,
           unnest(sqlc.arg('priorities')::int[]) AS priority,
           unnest(sqlc.arg('max_retries')::int[]) AS max_retries,
           unnest(sqlc.arg('timeout_seconds')::int[]) AS timeout_seconds,
           nullif(unnest(sqlc.arg('scheduled_ats')::timestamptz[]), '0001-01-01 00:00:00+00') AS scheduled_at,
           nullif(unnest(sqlc.arg('expires_ats')::timestamptz[]), '0001-01-01 00:00:00+00') AS expires_at,
           nullif(unnest(sqlc.arg('tags')::jsonb[]), 'null'::jsonb) AS tags,
           nullif(unnest(sqlc.arg('parent_job_ids')::uuid[]), '00000000-0000-0000-0000-000000000000') AS parent_job_id,
           unnest(sqlc.arg('completion_webhooks')::text[]) AS completion_webhook,
           unnest(sqlc.arg('idempotency_keys')::text[]) AS idempotency_key,
           nullif(unnest(sqlc.arg('replay_of')::uuid[]), '00000000-0000-0000-0000-000000000000') AS replay_of
), inserted AS (
    INSERT INTO jobs (id, organization_id, queue_name, status, payload, retry_count, max_retries,
                      created_at, scheduled_at, expires_at, priority, tags, timeout_seconds,
                      parent_job_id, completion_webhook, idempotency_key, updated_at,
                      dependency_mode, dependencies_met, version)
    SELECT i.id, i.organization_id, i.queue_name,
           CASE WHEN i.scheduled_at > c.ts THEN 'scheduled' ELSE 'pending' END,
           i.payload, 0,
           -- Left out (-1): the queue's configured default, else the server's.
           coalesce(nullif(i.max_retries, -1), q.max_retries, sqlc.arg('default_max_retries')::int),
           c.ts, i.scheduled_at, i.expires_at, coalesce(i.priority, 0), i.tags,
           coalesce(nullif(i.timeout_seconds, -1), q.default_timeout, sqlc.arg('default_timeout_secs')::int),
           i.parent_job_id, nullif(i.completion_webhook, ''),
           nullif(i.idempotency_key, ''), c.ts, 'all', true, 1
    FROM input i CROSS JOIN clock c
    LEFT JOIN queue_config q ON q.organization_id = i.organization_id AND q.queue_name = i.queue_name
    -- Rows go in in input order (the caller mints ids that increase), so of
    -- two rows with one idempotency key the first is the one inserted,
    -- whichever way the planner joins.
    ORDER BY i.id
    ON CONFLICT (organization_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING *
), extras AS (
    -- What an inserted row needs of its input beyond the jobs columns.
    SELECT i.id, i.actor, i.replay_of FROM input i
), queued AS (
    INSERT INTO pending_jobs (job_id, organization_id, queue_name, priority, run_at, expires_at, created_at)
    SELECT id, organization_id, queue_name, priority, greatest(coalesce(scheduled_at, created_at), created_at),
           expires_at, created_at
    FROM inserted
), logged AS (
    INSERT INTO job_events (organization_id, stream_type, stream_id, stream_seq, event_type,
                            queue_name, actor, data, occurred_at)
    SELECT n.organization_id, 'job', n.id::text, n.version, 'job.enqueued', n.queue_name,
           r.actor,
           -- A replay's enqueue also names the job it replays; json has no
           -- merge operator, and this path is rare, so it goes through jsonb.
           CASE WHEN r.replay_of IS NULL THEN d.data
                ELSE (d.data::jsonb || jsonb_build_object('replay_of', r.replay_of))::json END,
           n.created_at
    FROM inserted n
    JOIN extras r ON r.id = n.id
    -- The base object is joined as text, in the form json_build_object
    -- renders (a jsonb payload as jsonb's text, a status that is one of the
    -- two words set above, integers), and checked by the cast to json below:
    -- json_build_object looks up how to render each argument's type on every
    -- row, which cost more than the text it wrote.
    CROSS JOIN LATERAL (SELECT '{"status" : "' || n.status || '", "payload" : ' || n.payload::text
               || ', "priority" : ' || n.priority || ', "max_retries" : ' || n.max_retries
               || ', "timeout_seconds" : ' || n.timeout_seconds || '}' AS base) b
    -- The optional fields a job leaves unset are left out of its data (a
    -- reader takes a missing key as null): most jobs set none, and their six
    -- null keys were a quarter of the log's size (events and indexes) for
    -- small payloads. A job that sets some has them appended to the base
    -- text, each value rendered by to_json as json_build_object renders it,
    -- and the whole checked by the cast.
    CROSS JOIN LATERAL (SELECT CASE
               WHEN n.scheduled_at IS NULL AND n.expires_at IS NULL AND n.tags IS NULL
                    AND n.parent_job_id IS NULL AND n.completion_webhook IS NULL
                    AND n.idempotency_key IS NULL THEN b.base::json
               ELSE (left(b.base, -1)
                     || CASE WHEN n.scheduled_at IS NULL THEN '' ELSE ', "scheduled_at" : ' || to_json(n.scheduled_at)::text END
                     || CASE WHEN n.expires_at IS NULL THEN '' ELSE ', "expires_at" : ' || to_json(n.expires_at)::text END
                     || CASE WHEN n.tags IS NULL THEN '' ELSE ', "tags" : ' || to_json(n.tags)::text END
                     || CASE WHEN n.parent_job_id IS NULL THEN '' ELSE ', "parent_job_id" : ' || to_json(n.parent_job_id)::text END
                     || CASE WHEN n.completion_webhook IS NULL THEN '' ELSE ', "completion_webhook" : ' || to_json(n.completion_webhook)::text END
                     || CASE WHEN n.idempotency_key IS NULL THEN '' ELSE ', "idempotency_key" : ' || to_json(n.idempotency_key)::text END
                     || '}')::json
               END AS data) d
)
SELECT id, status FROM inserted;

-- name: JobIDsByIdempotencyKeys :many
SELECT id, idempotency_key::text AS idempotency_key
FROM jobs
WHERE organization_id = sqlc.arg('organization_id') AND idempotency_key = ANY(sqlc.arg('keys')::text[]);

-- name: JobClaimMulti :many
-- Leases ready jobs of one queue to one or more claim requests (several
-- when claims are coalesced): one pick, highest priority first, then
-- oldest, dealt to the requests in their order (req is each request's
-- 1-based position in the arrays), each request getting at most its limit
-- and its registered worker's max_concurrency minus the leases it holds,
-- shared in order between requests of the same worker. A paused queue
-- hands out nothing; the queue's max_concurrent_jobs minus its leased jobs
-- and its rate limit's token bucket cap the whole pick. SKIP LOCKED lets
-- concurrent claimers take disjoint sets. Those counts are only current if
-- ClaimLocksMulti ran first, in the same transaction: this statement's
-- snapshot predates any lock it would take.
WITH clock AS (
    SELECT coalesce(sqlc.narg('now')::timestamptz, now()) AS ts
), req AS (
    -- Each request's lease id: one per claim, shared by the jobs it gets
    -- (see JobClaimOne). A CTE that calls a volatile function is never
    -- inlined but evaluated once, so each request keeps one id.
    SELECT i AS ord, (sqlc.arg('worker_ids')::text[])[i] AS worker_id, (sqlc.arg('limits')::int[])[i] AS lim,
           (sqlc.arg('lease_secs')::int[])[i] AS lease_secs, (sqlc.arg('actors')::text[])[i] AS actor,
           gen_random_uuid() AS lease_id
    FROM generate_subscripts(sqlc.arg('worker_ids')::text[], 1) AS i
), held AS (
    SELECT w.id, w.max_concurrency - (
               SELECT count(*) FROM processing_jobs h
               WHERE h.organization_id = w.organization_id AND h.worker_id = w.id) AS free
    FROM workers w
    WHERE w.id = ANY(sqlc.arg('worker_ids')::text[]) AND w.organization_id = sqlc.arg('organization_id')
), wanted AS (
    SELECT r.ord, r.worker_id, r.lease_secs, r.actor, r.lease_id,
           CASE WHEN h.id IS NULL THEN r.lim
                ELSE least(r.lim, greatest(h.free - coalesce(sum(r.lim) OVER (
                         PARTITION BY r.worker_id ORDER BY r.ord
                         ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0), 0))
           END::int AS slots
    FROM req r LEFT JOIN held h ON h.id = r.worker_id
), bounds AS (
    SELECT w.*, (sum(w.slots) OVER (ORDER BY w.ord) - w.slots)::int AS lo,
           (sum(w.slots) OVER (ORDER BY w.ord))::int AS hi
    FROM wanted w
), queue AS (
    SELECT q.enabled, q.max_concurrent_jobs, q.rate_limit_per_second,
           -- The bucket holds a tenth of a second's tokens (at least one), so
           -- a burst never runs far ahead of the rate.
           least(greatest(1, ceil(q.rate_limit_per_second / 10.0)),
                 q.rate_tokens + extract(epoch FROM c.ts - coalesce(q.rate_refilled_at, c.ts - interval '1 hour'))
                                 * q.rate_limit_per_second)::float8 AS tokens
    FROM queue_config q, clock c
    WHERE q.organization_id = sqlc.arg('organization_id') AND q.queue_name = sqlc.arg('queue_name')
), total AS (
    SELECT least(
        (SELECT coalesce(sum(slots), 0) FROM wanted)::int,
        coalesce((SELECT CASE WHEN NOT q.enabled THEN 0 END FROM queue q), 2147483647),
        coalesce((SELECT greatest(q.max_concurrent_jobs - (
                      SELECT count(*) FROM processing_jobs h
                      WHERE h.organization_id = sqlc.arg('organization_id')
                        AND h.queue_name = sqlc.arg('queue_name') AND h.capped), 0)
                  FROM queue q WHERE q.max_concurrent_jobs IS NOT NULL), 2147483647),
        -- The bucket can be below zero: with the database clock a claim runs
        -- at its transaction's start, which may precede the refill time a
        -- claim that took the lock first recorded. A negative LIMIT is an
        -- error, so the slot count stops at zero.
        coalesce((SELECT greatest(floor(q.tokens), 0)::int FROM queue q WHERE q.rate_limit_per_second IS NOT NULL),
                 2147483647)
    )::int AS n
), picked AS (
    SELECT p.job_id, p.priority, p.created_at
    FROM pending_jobs p
    WHERE text_key(p.organization_id) = text_key(sqlc.arg('organization_id')) AND text_key(p.queue_name) = text_key(sqlc.arg('queue_name'))
      AND p.organization_id = sqlc.arg('organization_id')
      AND p.queue_name = sqlc.arg('queue_name')
      AND p.run_at <= (SELECT ts FROM clock)
      AND (p.expires_at IS NULL OR p.expires_at > (SELECT ts FROM clock))
    ORDER BY p.priority DESC, p.created_at, p.job_id
    LIMIT (SELECT n FROM total)
    FOR UPDATE SKIP LOCKED
), dealt AS (
    SELECT k.job_id, b.ord, b.worker_id, b.lease_secs, b.actor, b.lease_id
    FROM (SELECT picked.job_id,
                 row_number() OVER (ORDER BY picked.priority DESC, picked.created_at, picked.job_id) AS rn
          FROM picked) k
    JOIN bounds b ON k.rn > b.lo AND k.rn <= b.hi
), moved AS (
    -- Joins to the picked set go through = ANY(ARRAY(...)): the planner
    -- cannot estimate the subquery LIMIT above, and a join it guesses large
    -- becomes a hash join that scans all of pending_jobs and jobs on every
    -- claim. An array of keys is always a primary-key probe per row.
    DELETE FROM pending_jobs p
    WHERE p.job_id = ANY(ARRAY(SELECT dealt.job_id FROM dealt))
    RETURNING p.job_id
), claimed AS (
    UPDATE jobs j
    SET status = 'processing',
        assigned_worker_id = d.worker_id,
        lease_id = d.lease_id,
        lease_expires_at = c.ts + make_interval(secs => d.lease_secs),
        started_at = c.ts,
        updated_at = c.ts,
        version = j.version + 1
    FROM dealt d, clock c
    WHERE j.id = ANY(ARRAY(SELECT moved.job_id FROM moved)) AND j.id = d.job_id
    RETURNING j.*, d.ord::int AS req, d.actor::text AS claim_actor
), leased AS (
    -- capped: the queue has a concurrency cap, whose count reads the
    -- leases of capped queues alone (processing_jobs_capped_idx).
    INSERT INTO processing_jobs (job_id, organization_id, queue_name, worker_id, lease_id,
                                 lease_expires_at, claimed_at, capped)
    SELECT id, organization_id, queue_name, assigned_worker_id, lease_id, lease_expires_at, started_at,
           coalesce((SELECT q.max_concurrent_jobs IS NOT NULL FROM queue q), false)
    FROM claimed
), spent AS (
    UPDATE queue_config q
    SET rate_tokens = (SELECT tokens FROM queue) - (SELECT count(*) FROM claimed),
        rate_refilled_at = (SELECT ts FROM clock)
    WHERE q.organization_id = sqlc.arg('organization_id') AND q.queue_name = sqlc.arg('queue_name')
      AND q.rate_limit_per_second IS NOT NULL
), logged AS (
    INSERT INTO job_events (organization_id, stream_type, stream_id, stream_seq, event_type,
                            queue_name, actor, data, occurred_at)
    SELECT organization_id, 'job', id::text, version, 'job.claimed', queue_name, claim_actor,
           json_build_object('worker_id', assigned_worker_id, 'lease_id', lease_id,
                             'lease_expires_at', lease_expires_at, 'attempt', retry_count + 1,
                             'due_at', greatest(created_at, coalesce(scheduled_at, created_at))),
           updated_at
    FROM claimed
)
SELECT * FROM claimed
ORDER BY req, priority DESC, created_at, id;

-- name: JobClaimOne :many
-- JobClaimMulti for a single request, the claim of a queue nobody else is
-- claiming on this instance (most claims at a moderate load). Same
-- conditions, same writes, same rows (RETURNING j.*, req, claim_actor,
-- req always 1), so its rows are read as JobClaimMultiRow; what it leaves
-- out is the dealing between requests (window functions, sorts and a join
-- into the UPDATE), which cost a claim of one job about a sixth of its
-- Postgres CPU. Run after ClaimCapGate and ClaimLocksMulti in the same
-- transaction, as JobClaimMulti is.
WITH clock AS (
    SELECT coalesce(sqlc.narg('now')::timestamptz, now()) AS ts
), queue AS (
    SELECT q.enabled, q.max_concurrent_jobs, q.rate_limit_per_second,
           least(greatest(1, ceil(q.rate_limit_per_second / 10.0)),
                 q.rate_tokens + extract(epoch FROM c.ts - coalesce(q.rate_refilled_at, c.ts - interval '1 hour'))
                                 * q.rate_limit_per_second)::float8 AS tokens
    FROM queue_config q, clock c
    WHERE q.organization_id = sqlc.arg('organization_id') AND q.queue_name = sqlc.arg('queue_name')
), total AS (
    SELECT least(
        sqlc.arg('lim')::int,
        -- A registered worker's max_concurrency minus the leases it holds.
        coalesce((SELECT greatest(w.max_concurrency - (
                      SELECT count(*) FROM processing_jobs h
                      WHERE h.organization_id = w.organization_id AND h.worker_id = w.id), 0)
                  FROM workers w
                  WHERE w.id = sqlc.arg('worker_id')::text AND w.organization_id = sqlc.arg('organization_id')),
                 2147483647),
        coalesce((SELECT CASE WHEN NOT q.enabled THEN 0 END FROM queue q), 2147483647),
        coalesce((SELECT greatest(q.max_concurrent_jobs - (
                      SELECT count(*) FROM processing_jobs h
                      WHERE h.organization_id = sqlc.arg('organization_id')
                        AND h.queue_name = sqlc.arg('queue_name') AND h.capped), 0)
                  FROM queue q WHERE q.max_concurrent_jobs IS NOT NULL), 2147483647),
        coalesce((SELECT greatest(floor(q.tokens), 0)::int FROM queue q WHERE q.rate_limit_per_second IS NOT NULL),
                 2147483647)
    )::int AS n
), picked AS (
    SELECT p.job_id
    FROM pending_jobs p
    WHERE text_key(p.organization_id) = text_key(sqlc.arg('organization_id')) AND text_key(p.queue_name) = text_key(sqlc.arg('queue_name'))
      AND p.organization_id = sqlc.arg('organization_id')
      AND p.queue_name = sqlc.arg('queue_name')
      AND p.run_at <= (SELECT ts FROM clock)
      AND (p.expires_at IS NULL OR p.expires_at > (SELECT ts FROM clock))
    ORDER BY p.priority DESC, p.created_at, p.job_id
    LIMIT (SELECT n FROM total)
    FOR UPDATE SKIP LOCKED
), moved AS (
    DELETE FROM pending_jobs p
    WHERE p.job_id = ANY(ARRAY(SELECT picked.job_id FROM picked))
    RETURNING p.job_id
), claimed AS (
    UPDATE jobs j
    SET status = 'processing',
        assigned_worker_id = sqlc.arg('worker_id')::text,
        -- One lease id for the claim, not one per job: gen_random_uuid()
        -- goes through OpenSSL, whose fork check makes a getpid system call
        -- on every call, and one per job cost an eighth of this statement's
        -- CPU at a hundred jobs. A lease is its job's id and this lease id
        -- together: every check of a lease names its job, and a job leased
        -- again gets the id of a new claim.
        lease_id = (SELECT gen_random_uuid()),
        lease_expires_at = c.ts + make_interval(secs => sqlc.arg('lease_secs')::int),
        started_at = c.ts,
        updated_at = c.ts,
        version = j.version + 1
    FROM clock c
    WHERE j.id = ANY(ARRAY(SELECT moved.job_id FROM moved))
    RETURNING j.*, 1::int AS req, sqlc.arg('actor')::text AS claim_actor
), leased AS (
    -- capped: the queue has a concurrency cap, whose count reads the
    -- leases of capped queues alone (processing_jobs_capped_idx).
    INSERT INTO processing_jobs (job_id, organization_id, queue_name, worker_id, lease_id,
                                 lease_expires_at, claimed_at, capped)
    SELECT id, organization_id, queue_name, assigned_worker_id, lease_id, lease_expires_at, started_at,
           coalesce((SELECT q.max_concurrent_jobs IS NOT NULL FROM queue q), false)
    FROM claimed
), spent AS (
    UPDATE queue_config q
    SET rate_tokens = (SELECT tokens FROM queue) - (SELECT count(*) FROM claimed),
        rate_refilled_at = (SELECT ts FROM clock)
    WHERE q.organization_id = sqlc.arg('organization_id') AND q.queue_name = sqlc.arg('queue_name')
      AND q.rate_limit_per_second IS NOT NULL
), logged AS (
    INSERT INTO job_events (organization_id, stream_type, stream_id, stream_seq, event_type,
                            queue_name, actor, data, occurred_at)
    SELECT organization_id, 'job', id::text, version, 'job.claimed', queue_name, claim_actor,
           json_build_object('worker_id', assigned_worker_id, 'lease_id', lease_id,
                             'lease_expires_at', lease_expires_at, 'attempt', retry_count + 1,
                             'due_at', greatest(created_at, coalesce(scheduled_at, created_at))),
           updated_at
    FROM claimed
)
SELECT * FROM claimed
ORDER BY priority DESC, created_at, id;

-- name: JobComplete :one
-- Completes a leased job. Matches only the current, unexpired lease held by
-- worker_id (and lease_id when given); no row means the caller is stale.
WITH clock AS (
    SELECT coalesce(sqlc.narg('now')::timestamptz, now()) AS ts
), released AS (
    DELETE FROM processing_jobs p
    USING clock c
    WHERE p.job_id = sqlc.arg('job_id')
      AND p.organization_id = sqlc.arg('organization_id')
      AND p.worker_id = sqlc.arg('worker_id')
      AND (sqlc.narg('lease_id')::uuid IS NULL OR p.lease_id = sqlc.narg('lease_id')::uuid)
      AND p.lease_expires_at > c.ts
    RETURNING p.job_id, p.lease_id
), done AS (
    UPDATE jobs j
    SET status = 'completed',
        -- A JSON null result is stored as SQL NULL, however it is spelled
        -- (" null" too): the event records it as JSON null either way, and
        -- the read model must be what the log says.
        result = nullif(sqlc.narg('result')::jsonb, 'null'::jsonb),
        completed_at = c.ts,
        lease_id = NULL,
        lease_expires_at = NULL,
        updated_at = c.ts,
        version = j.version + 1
    FROM released r, clock c
    WHERE j.id = r.job_id
    RETURNING j.id, j.organization_id, j.queue_name, j.version, j.updated_at, j.result,
              j.assigned_worker_id, j.started_at, r.lease_id AS released_lease_id
), logged AS (
    INSERT INTO job_events (organization_id, stream_type, stream_id, stream_seq, event_type,
                            queue_name, actor, data, occurred_at)
    SELECT organization_id, 'job', id::text, version, 'job.completed', queue_name,
           sqlc.arg('actor')::text,
           json_build_object('worker_id', assigned_worker_id, 'lease_id', released_lease_id,
                             'result', result, 'started_at', started_at),
           updated_at
    FROM done
)
SELECT id, queue_name, started_at, updated_at AS completed_at FROM done;

-- name: JobFail :one
-- Fails a leased job: back to pending after a backoff of
-- min(2^retry_count, 60) minutes while retries remain (and allow_retry),
-- otherwise into the dead-letter queue. Appends job.failed and then
-- job.retry_scheduled or job.deadlettered.
WITH clock AS (
    SELECT coalesce(sqlc.narg('now')::timestamptz, now()) AS ts
), released AS (
    DELETE FROM processing_jobs p
    USING clock c
    WHERE p.job_id = sqlc.arg('job_id')
      AND p.organization_id = sqlc.arg('organization_id')
      AND p.worker_id = sqlc.arg('worker_id')
      AND (sqlc.narg('lease_id')::uuid IS NULL OR p.lease_id = sqlc.narg('lease_id')::uuid)
      AND p.lease_expires_at > c.ts
    RETURNING p.job_id, p.lease_id
), failed AS (
    UPDATE jobs j
    SET status = CASE WHEN sqlc.arg('allow_retry')::bool AND j.retry_count < j.max_retries
                      THEN 'pending' ELSE 'deadletter' END,
        retry_count = CASE WHEN sqlc.arg('allow_retry')::bool AND j.retry_count < j.max_retries
                           THEN j.retry_count + 1 ELSE j.retry_count END,
        scheduled_at = CASE WHEN sqlc.arg('allow_retry')::bool AND j.retry_count < j.max_retries
                            THEN c.ts + make_interval(mins => least(power(2, j.retry_count), 60)::int)
                            ELSE j.scheduled_at END,
        last_error = sqlc.arg('error')::text,
        lease_id = NULL,
        lease_expires_at = NULL,
        updated_at = c.ts,
        version = j.version + 2
    FROM released r, clock c
    WHERE j.id = r.job_id
    RETURNING j.*, r.lease_id AS released_lease_id
), queued AS (
    INSERT INTO pending_jobs (job_id, organization_id, queue_name, priority, run_at, expires_at, created_at)
    SELECT id, organization_id, queue_name, priority, scheduled_at, expires_at, created_at
    FROM failed
    WHERE status = 'pending'
), logged AS (
    INSERT INTO job_events (organization_id, stream_type, stream_id, stream_seq, event_type,
                            queue_name, actor, data, occurred_at)
    SELECT organization_id, 'job', id::text, seq, event_type, queue_name, sqlc.arg('actor')::text,
           data, updated_at
    FROM (
        SELECT f.organization_id, f.id, f.version - 1 AS seq, 'job.failed' AS event_type,
               f.queue_name, f.updated_at,
               json_build_object('worker_id', f.assigned_worker_id, 'lease_id', f.released_lease_id,
                                 'error', f.last_error) AS data
        FROM failed f
        UNION ALL
        SELECT f.organization_id, f.id, f.version,
               CASE WHEN f.status = 'pending' THEN 'job.retry_scheduled' ELSE 'job.deadlettered' END,
               f.queue_name, f.updated_at,
               CASE WHEN f.status = 'pending'
                    THEN json_build_object('retry_count', f.retry_count, 'run_at', f.scheduled_at)
                    ELSE json_build_object('reason', CASE WHEN sqlc.arg('allow_retry')::bool
                                                          THEN 'retries_exhausted' ELSE 'retry_declined' END,
                                           'retry_count', f.retry_count)
               END
        FROM failed f
    ) e
    ORDER BY id, seq
)
SELECT id, queue_name, status, retry_count, scheduled_at FROM failed;

-- name: JobRenewLease :one
-- Extends the current lease by lease_secs from now.
WITH clock AS (
    SELECT coalesce(sqlc.narg('now')::timestamptz, now()) AS ts
), renewed AS (
    UPDATE processing_jobs p
    SET lease_expires_at = c.ts + make_interval(secs => sqlc.arg('lease_secs')::int)
    FROM clock c
    WHERE p.job_id = sqlc.arg('job_id')
      AND p.organization_id = sqlc.arg('organization_id')
      AND p.worker_id = sqlc.arg('worker_id')
      AND (sqlc.narg('lease_id')::uuid IS NULL OR p.lease_id = sqlc.narg('lease_id')::uuid)
      AND p.lease_expires_at > c.ts
    RETURNING p.job_id, p.lease_id, p.lease_expires_at
), bumped AS (
    UPDATE jobs j
    SET lease_expires_at = r.lease_expires_at,
        updated_at = c.ts,
        version = j.version + 1
    FROM renewed r, clock c
    WHERE j.id = r.job_id
    RETURNING j.id, j.organization_id, j.queue_name, j.version, j.updated_at,
              j.assigned_worker_id, j.lease_id, j.lease_expires_at
), logged AS (
    INSERT INTO job_events (organization_id, stream_type, stream_id, stream_seq, event_type,
                            queue_name, actor, data, occurred_at)
    SELECT organization_id, 'job', id::text, version, 'job.lease_renewed', queue_name,
           sqlc.arg('actor')::text,
           json_build_object('worker_id', assigned_worker_id, 'lease_id', lease_id,
                             'lease_expires_at', lease_expires_at),
           updated_at
    FROM bumped
)
SELECT id, lease_expires_at FROM bumped;

-- name: JobRecordRejectedAttempt :one
-- Records a stale or foreign worker's refused complete, fail or renewal in
-- the job's history. It changes no state but the stream sequence.
WITH bumped AS (
    UPDATE jobs j
    SET version = j.version + 1
    WHERE j.id = sqlc.arg('job_id') AND j.organization_id = sqlc.arg('organization_id')
    RETURNING j.id, j.organization_id, j.queue_name, j.version
)
INSERT INTO job_events (organization_id, stream_type, stream_id, stream_seq, event_type,
                        queue_name, actor, data, occurred_at)
SELECT b.organization_id, 'job', b.id::text, b.version, 'job.attempt_rejected', b.queue_name,
       sqlc.arg('actor')::text,
       json_build_object('action', sqlc.arg('action')::text, 'worker_id', sqlc.arg('worker_id')::text,
                         'lease_id', sqlc.narg('lease_id')::uuid, 'reason', sqlc.arg('reason')::text),
       coalesce(sqlc.narg('now')::timestamptz, now())
FROM bumped b
RETURNING position;

-- name: JobCancel :one
-- Cancels a job that has not started: only pending and scheduled jobs have a
-- pending_jobs row to take.
WITH clock AS (
    SELECT coalesce(sqlc.narg('now')::timestamptz, now()) AS ts
), removed AS (
    DELETE FROM pending_jobs p
    WHERE p.job_id = sqlc.arg('job_id') AND p.organization_id = sqlc.arg('organization_id')
    RETURNING p.job_id
), cancelled AS (
    UPDATE jobs j
    SET status = 'cancelled', updated_at = c.ts, version = j.version + 1
    FROM removed r, clock c
    WHERE j.id = r.job_id
    RETURNING j.id, j.organization_id, j.queue_name, j.version, j.updated_at
), logged AS (
    INSERT INTO job_events (organization_id, stream_type, stream_id, stream_seq, event_type,
                            queue_name, actor, data, occurred_at)
    SELECT organization_id, 'job', id::text, version, 'job.cancelled', queue_name,
           sqlc.arg('actor')::text, '{}'::json, updated_at
    FROM cancelled
)
SELECT id FROM cancelled;

-- name: JobSetPriority :one
WITH clock AS (
    SELECT coalesce(sqlc.narg('now')::timestamptz, now()) AS ts
), old AS (
    SELECT p.job_id, p.priority
    FROM pending_jobs p
    WHERE p.job_id = sqlc.arg('job_id') AND p.organization_id = sqlc.arg('organization_id')
    FOR UPDATE
), moved AS (
    UPDATE pending_jobs p
    SET priority = sqlc.arg('priority')::int
    FROM old
    WHERE p.job_id = old.job_id
    RETURNING p.job_id, old.priority AS old_priority
), changed AS (
    UPDATE jobs j
    SET priority = sqlc.arg('priority')::int, updated_at = c.ts, version = j.version + 1
    FROM moved m, clock c
    WHERE j.id = m.job_id
    RETURNING j.id, j.organization_id, j.queue_name, j.version, j.updated_at, j.priority,
              m.old_priority
), logged AS (
    INSERT INTO job_events (organization_id, stream_type, stream_id, stream_seq, event_type,
                            queue_name, actor, data, occurred_at)
    SELECT organization_id, 'job', id::text, version, 'job.priority_changed', queue_name,
           sqlc.arg('actor')::text,
           json_build_object('old_priority', old_priority, 'new_priority', priority),
           updated_at
    FROM changed
)
SELECT id, old_priority, priority AS new_priority FROM changed;

-- name: JobRetry :many
-- Puts failed or dead-lettered jobs back in line, ready at once. A manual
-- retry counts as one more attempt; a DLQ retry starts the count again.
-- Targets are job_ids when given, else the queue when given, else all, oldest
-- first, at most max_jobs.
WITH clock AS (
    SELECT coalesce(sqlc.narg('now')::timestamptz, now()) AS ts
), targets AS (
    SELECT t.id, t.status
    FROM jobs t
    WHERE t.organization_id = sqlc.arg('organization_id')
      -- from_statuses are dead statuses (failed, deadletter): dead_status
      -- equals status for those, and has the index (sql/0010).
      AND t.dead_status = ANY(sqlc.arg('from_statuses')::text[])
      AND (cardinality(sqlc.arg('job_ids')::uuid[]) = 0 OR t.id = ANY(sqlc.arg('job_ids')::uuid[]))
      AND (sqlc.narg('queue_name')::text IS NULL OR t.queue_name = sqlc.narg('queue_name')::text)
    ORDER BY t.created_at, t.id
    LIMIT sqlc.arg('max_jobs')
    FOR UPDATE
), retried AS (
    UPDATE jobs j
    SET status = 'pending',
        retry_count = CASE WHEN sqlc.arg('reset_count')::bool THEN 0 ELSE j.retry_count + 1 END,
        last_error = NULL,
        updated_at = c.ts,
        version = j.version + 1
    FROM targets t, clock c
    WHERE j.id = t.id
    RETURNING j.*, t.status AS from_status
), queued AS (
    INSERT INTO pending_jobs (job_id, organization_id, queue_name, priority, run_at, expires_at, created_at)
    SELECT id, organization_id, queue_name, priority, updated_at, expires_at, created_at
    FROM retried
), logged AS (
    INSERT INTO job_events (organization_id, stream_type, stream_id, stream_seq, event_type,
                            queue_name, actor, data, occurred_at)
    SELECT organization_id, 'job', id::text, version, 'job.retried', queue_name,
           sqlc.arg('actor')::text,
           json_build_object('retry_count', retry_count, 'source', sqlc.arg('source')::text,
                             'from_status', from_status),
           updated_at
    FROM retried
)
SELECT id, organization_id, queue_name, status, payload, result, retry_count, max_retries, last_error,
       created_at, scheduled_at, started_at, completed_at, expires_at, priority, tags, timeout_seconds,
       parent_job_id, completion_webhook, assigned_worker_id, lease_id, lease_expires_at, idempotency_key,
       updated_at, workflow_id, dependency_mode, dependencies_met, version, dead_status
FROM retried
ORDER BY created_at, id;

-- name: JobPurgeDeadLetters :one
-- Removes dead-lettered jobs from the read model. Their history stays in the
-- log, ending with job.purged.
WITH clock AS (
    SELECT coalesce(sqlc.narg('now')::timestamptz, now()) AS ts
), targets AS (
    SELECT t.id
    FROM jobs t
    WHERE t.organization_id = sqlc.arg('organization_id')
      AND t.dead_status = 'deadletter'
      AND (sqlc.narg('queue_name')::text IS NULL OR t.queue_name = sqlc.narg('queue_name')::text)
      AND (sqlc.narg('older_than')::timestamptz IS NULL OR t.created_at < sqlc.narg('older_than')::timestamptz)
    ORDER BY t.created_at, t.id
    LIMIT sqlc.arg('max_jobs')
    FOR UPDATE
), purged AS (
    DELETE FROM jobs j
    USING targets t
    WHERE j.id = t.id
    RETURNING j.id, j.organization_id, j.queue_name, j.version
), logged AS (
    INSERT INTO job_events (organization_id, stream_type, stream_id, stream_seq, event_type,
                            queue_name, actor, data, occurred_at)
    SELECT p.organization_id, 'job', p.id::text, p.version + 1, 'job.purged', p.queue_name,
           sqlc.arg('actor')::text, '{}'::json, c.ts
    FROM purged p CROSS JOIN clock c
)
SELECT count(*)::bigint FROM purged;

-- name: JobExpireLeases :many
-- Takes leases back: the reaper's sweep of every lease past its expiry, or,
-- with worker_id (and organization_id) set, every lease of a worker that went
-- offline. Each job is retried at once while retries remain, else
-- dead-lettered. Appends job.lease_expired (with the reason) and then
-- job.retry_scheduled or job.deadlettered; retry_error and exhausted_error
-- become last_error.
WITH clock AS (
    SELECT coalesce(sqlc.narg('now')::timestamptz, now()) AS ts
), stale AS (
    -- The candidates come from one of two reads, chosen by whether worker_id
    -- is set: a test of parameters alone, so even the generic plan runs only
    -- the read that applies. The sweep reads the table (no index covers the
    -- expiry: sql/0014_processing_lease_index.sql); a worker's release reads
    -- processing_jobs_worker_idx. As one OR over a single scan, the generic
    -- plan read the whole table for a worker's few leases too. Locking
    -- re-checks the conditions on each row's current version, so a lease
    -- renewed or finished meanwhile is passed by.
    SELECT p.job_id
    FROM processing_jobs p
    WHERE p.job_id = ANY(ARRAY(
              (SELECT h.job_id FROM processing_jobs h
               WHERE sqlc.narg('worker_id')::text IS NULL AND h.lease_expires_at <= (SELECT ts FROM clock)
               ORDER BY h.lease_expires_at
               LIMIT sqlc.arg('max_jobs'))
              UNION ALL
              SELECT h.job_id FROM processing_jobs h
              WHERE h.organization_id = sqlc.narg('organization_id')::text
                AND h.worker_id = sqlc.narg('worker_id')::text))
      AND ((sqlc.narg('worker_id')::text IS NULL AND p.lease_expires_at <= (SELECT ts FROM clock))
           OR (p.organization_id = sqlc.narg('organization_id')::text AND p.worker_id = sqlc.narg('worker_id')::text))
    ORDER BY p.lease_expires_at
    LIMIT sqlc.arg('max_jobs')
    FOR UPDATE SKIP LOCKED
), expired AS (
    DELETE FROM processing_jobs p
    USING stale s
    WHERE p.job_id = s.job_id
    RETURNING p.job_id, p.worker_id, p.lease_id
), requeued AS (
    UPDATE jobs j
    SET status = CASE WHEN j.retry_count < j.max_retries THEN 'pending' ELSE 'deadletter' END,
        retry_count = CASE WHEN j.retry_count < j.max_retries THEN j.retry_count + 1 ELSE j.retry_count END,
        last_error = CASE WHEN j.retry_count < j.max_retries THEN sqlc.arg('retry_error')::text
                          ELSE sqlc.arg('exhausted_error')::text END,
        scheduled_at = CASE WHEN j.retry_count < j.max_retries THEN c.ts ELSE j.scheduled_at END,
        lease_id = NULL,
        lease_expires_at = NULL,
        updated_at = c.ts,
        version = j.version + 2
    FROM expired e, clock c
    WHERE j.id = e.job_id
    RETURNING j.*, e.worker_id AS expired_worker_id, e.lease_id AS expired_lease_id
), queued AS (
    INSERT INTO pending_jobs (job_id, organization_id, queue_name, priority, run_at, expires_at, created_at)
    SELECT id, organization_id, queue_name, priority, updated_at, expires_at, created_at
    FROM requeued
    WHERE status = 'pending'
), logged AS (
    INSERT INTO job_events (organization_id, stream_type, stream_id, stream_seq, event_type,
                            queue_name, actor, data, occurred_at)
    SELECT organization_id, 'job', id::text, seq, event_type, queue_name, sqlc.arg('actor')::text,
           data, updated_at
    FROM (
        SELECT r.organization_id, r.id, r.version - 1 AS seq, 'job.lease_expired' AS event_type,
               r.queue_name, r.updated_at,
               json_build_object('worker_id', r.expired_worker_id, 'lease_id', r.expired_lease_id,
                                 'reason', sqlc.arg('reason')::text) AS data
        FROM requeued r
        UNION ALL
        SELECT r.organization_id, r.id, r.version,
               CASE WHEN r.status = 'pending' THEN 'job.retry_scheduled' ELSE 'job.deadlettered' END,
               r.queue_name, r.updated_at,
               CASE WHEN r.status = 'pending'
                    THEN json_build_object('retry_count', r.retry_count, 'run_at', r.updated_at,
                                           'error', r.last_error)
                    ELSE json_build_object('reason', sqlc.arg('reason')::text, 'retry_count', r.retry_count,
                                           'error', r.last_error)
               END
        FROM requeued r
    ) e
    ORDER BY id, seq
)
SELECT id, organization_id, queue_name, status FROM requeued;

-- name: JobRecordReplay :one
-- Links a job to its replay in the original's history (no state changes).
WITH bumped AS (
    UPDATE jobs j
    SET version = j.version + 1
    WHERE j.id = sqlc.arg('job_id') AND j.organization_id = sqlc.arg('organization_id')
    RETURNING j.id, j.organization_id, j.queue_name, j.version
)
INSERT INTO job_events (organization_id, stream_type, stream_id, stream_seq, event_type,
                        queue_name, actor, data, occurred_at)
SELECT b.organization_id, 'job', b.id::text, b.version, 'job.replayed', b.queue_name,
       sqlc.arg('actor')::text, json_build_object('replay_job_id', sqlc.arg('replay_job_id')::uuid),
       coalesce(sqlc.narg('now')::timestamptz, now())
FROM bumped b
RETURNING position;

-- name: JobDeadLettersInWindow :many
-- Dead-lettered jobs of a queue whose dead-lettering (their last
-- transition) falls in [from, to), oldest first: a bulk replay's targets.
SELECT j.id
FROM jobs j
WHERE j.organization_id = sqlc.arg('organization_id') AND j.dead_status = 'deadletter'
  AND (sqlc.narg('queue_name')::text IS NULL OR j.queue_name = sqlc.narg('queue_name')::text)
  AND (sqlc.narg('from_time')::timestamptz IS NULL OR j.updated_at >= sqlc.narg('from_time')::timestamptz)
  AND (sqlc.narg('to_time')::timestamptz IS NULL OR j.updated_at < sqlc.narg('to_time')::timestamptz)
ORDER BY j.updated_at, j.id
LIMIT sqlc.arg('max_jobs');

-- name: JobCompleteBatch :many
-- Completes many leased jobs in one statement; each item needs the current,
-- unexpired lease of its worker (and lease_id when given) in its own
-- organization (items of several, from coalesced single completes, share
-- the statement; a job is named once). Items that match no lease are left
-- out of the result for the caller to refuse one by one.
--
-- The DELETE and the UPDATE below join nothing: each finds its rows by
-- primary key through = ANY(ARRAY(...)) and reads an item's values from the
-- argument arrays by position. A relation joined into an UPDATE or DELETE
-- costs a whole-row copy of each of its rows (kept for rechecking rows that
-- change under the statement), which was a tenth of the database's work in
-- a batch work-off; and a join the planner guesses wrong (the generic plan
-- expects ten items) became a hash of every lease in processing_jobs on
-- every call.
WITH held AS MATERIALIZED (
    -- The leases named, found by primary key alone (MATERIALIZED keeps the
    -- checks below out of this scan): with the lease checks in the scan,
    -- statistics of a nearly empty table led the planner through
    -- processing_jobs_worker_idx (or the lease index, since dropped),
    -- reading every lease of the organization (45,000 entries) to complete
    -- 100 jobs.
    SELECT p.job_id, p.organization_id, p.worker_id, p.lease_id, p.lease_expires_at,
           array_position(sqlc.arg('job_ids')::uuid[], p.job_id) AS item
    FROM processing_jobs p
    WHERE p.job_id = ANY(sqlc.arg('job_ids')::uuid[])
), released AS (
    DELETE FROM processing_jobs p
    WHERE p.job_id = ANY(ARRAY(
        SELECT h.job_id FROM held h
        WHERE h.organization_id = (sqlc.arg('organization_ids')::text[])[h.item]
          AND h.worker_id = (sqlc.arg('worker_ids')::text[])[h.item]
          AND (h.lease_id = (sqlc.arg('lease_ids')::uuid[])[h.item]
               OR (sqlc.arg('lease_ids')::uuid[])[h.item] = '00000000-0000-0000-0000-000000000000')
          AND h.lease_expires_at > coalesce(sqlc.narg('now')::timestamptz, now())))
    RETURNING p.job_id, p.lease_id
), done AS (
    UPDATE jobs j
    SET status = 'completed',
        result = nullif((sqlc.arg('results')::jsonb[])[array_position(sqlc.arg('job_ids')::uuid[], j.id)], 'null'::jsonb),
        completed_at = coalesce(sqlc.narg('now')::timestamptz, now()),
        lease_id = NULL,
        lease_expires_at = NULL,
        updated_at = coalesce(sqlc.narg('now')::timestamptz, now()),
        version = j.version + 1
    WHERE j.id = ANY(ARRAY(SELECT released.job_id FROM released))
    RETURNING j.id, j.organization_id, j.queue_name, j.version, j.updated_at, j.result,
              j.assigned_worker_id, j.started_at
), logged AS (
    INSERT INTO job_events (organization_id, stream_type, stream_id, stream_seq, event_type,
                            queue_name, actor, data, occurred_at)
    SELECT d.organization_id, 'job', d.id::text, d.version, 'job.completed', d.queue_name,
           'worker:' || d.assigned_worker_id,
           json_build_object('worker_id', d.assigned_worker_id, 'lease_id', r.lease_id,
                             'result', d.result, 'started_at', d.started_at),
           d.updated_at
    FROM done d JOIN released r ON r.job_id = d.id
)
SELECT id, queue_name, started_at, updated_at AS completed_at FROM done;
