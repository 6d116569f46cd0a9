-- Queue configuration (control plane). A row exists once a queue is
-- configured or paused; queues themselves are implicit in job queue names.
-- Pause, resume and config changes are also events in the log (stream
-- "queue", stream_id = this row's id).
CREATE TABLE queue_config (
    id                    uuid        NOT NULL UNIQUE,
    organization_id       text        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    queue_name            text        NOT NULL,
    max_retries           integer     NOT NULL,
    default_timeout       integer     NOT NULL,
    rate_limit_per_second integer,
    max_concurrent_jobs   integer,
    enabled               boolean     NOT NULL DEFAULT true,
    paused_at             timestamptz,
    paused_reason         text,
    settings              jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- Token bucket of the claim rate limit, shared by every server instance
    -- through this row. Limiter state, not job state: it has no events.
    rate_tokens           float8      NOT NULL DEFAULT 0,
    rate_refilled_at      timestamptz,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    PRIMARY KEY (organization_id, queue_name)
);

-- Checkpoints of the asynchronous projections: each follows the log by
-- (tx_id, position) and reads only below the oldest running transaction, so
-- it never skips an event committed out of order.
CREATE TABLE projector_checkpoints (
    name          text PRIMARY KEY,
    last_tx_id    xid8        NOT NULL DEFAULT '0'::xid8,
    last_position bigint      NOT NULL DEFAULT 0,
    last_event_at timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- queue_stats: finished-job counters per queue, maintained by the
-- "queue_stats" projection. Live counts (pending, scheduled, processing)
-- come from the hot tables instead.
CREATE TABLE queue_stats (
    organization_id text   NOT NULL,
    queue_name      text   NOT NULL,
    enqueued        bigint NOT NULL DEFAULT 0,
    completed       bigint NOT NULL DEFAULT 0,
    deadletter      bigint NOT NULL DEFAULT 0,
    cancelled       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (organization_id, queue_name)
);

-- queue_stats_hourly: activity per queue per hour (created, completed,
-- failed attempts, dead-lettered, run and wait time sums), for the 1 h and
-- 24 h windows of the stats and dashboard endpoints and the daily job quota.
CREATE TABLE queue_stats_hourly (
    organization_id text        NOT NULL,
    queue_name      text        NOT NULL,
    hour            timestamptz NOT NULL,
    created         bigint      NOT NULL DEFAULT 0,
    completed       bigint      NOT NULL DEFAULT 0,
    failed          bigint      NOT NULL DEFAULT 0,
    deadlettered    bigint      NOT NULL DEFAULT 0,
    run_ms_sum      bigint      NOT NULL DEFAULT 0,
    run_count       bigint      NOT NULL DEFAULT 0,
    wait_ms_sum     bigint      NOT NULL DEFAULT 0,
    wait_count      bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (organization_id, queue_name, hour)
);
CREATE INDEX queue_stats_hourly_org_hour_idx ON queue_stats_hourly (organization_id, hour);

-- The oldest waiting job of a queue (max_job_age_seconds).
CREATE INDEX pending_jobs_age_idx ON pending_jobs (organization_id, queue_name, created_at);
