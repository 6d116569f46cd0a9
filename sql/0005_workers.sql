-- The workers registry (control plane). Registration, deregistration and
-- health changes are also events in the log; heartbeats are not, since they
-- change nothing but last_heartbeat.
CREATE TABLE workers (
    id              text PRIMARY KEY,
    organization_id text        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    queue_name      text        NOT NULL,
    queue_names     text[]      NOT NULL,
    hostname        text        NOT NULL,
    worker_type     text,
    max_concurrency integer     NOT NULL,
    current_jobs    integer     NOT NULL DEFAULT 0,
    status          text        NOT NULL DEFAULT 'healthy',
    last_heartbeat  timestamptz NOT NULL,
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    version         text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    CONSTRAINT workers_status_check CHECK (status IN ('healthy', 'degraded', 'draining', 'offline'))
);
CREATE INDEX workers_org_heartbeat_idx ON workers (organization_id, last_heartbeat DESC);
CREATE INDEX workers_live_idx ON workers (last_heartbeat) WHERE status <> 'offline';

-- A waiting claim sleeps until the next job of its queue is due.
CREATE INDEX pending_jobs_due_idx ON pending_jobs (organization_id, queue_name, run_at);
-- Leases held by one worker (max_concurrency, recovery of a lost worker).
CREATE INDEX processing_jobs_worker_idx ON processing_jobs (organization_id, worker_id);
