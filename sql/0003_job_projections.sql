-- Synchronous projections of the job log, written in the same transaction as
-- the events they fold. projections/ holds the fold that defines them and the
-- rebuild and verify that check them.

-- jobs: one row per job as GET /jobs/{id} shows it; version is the stream
-- sequence of the job's newest event.
CREATE TABLE jobs (
    id                 uuid PRIMARY KEY,
    organization_id    text        NOT NULL,
    queue_name         text        NOT NULL,
    status             text        NOT NULL,
    payload            jsonb       NOT NULL,
    result             jsonb,
    retry_count        integer     NOT NULL DEFAULT 0,
    max_retries        integer     NOT NULL,
    last_error         text,
    created_at         timestamptz NOT NULL,
    scheduled_at       timestamptz,
    started_at         timestamptz,
    completed_at       timestamptz,
    expires_at         timestamptz,
    priority           integer     NOT NULL DEFAULT 0,
    tags               jsonb,
    timeout_seconds    integer     NOT NULL,
    parent_job_id      uuid,
    completion_webhook text,
    assigned_worker_id text,
    lease_id           uuid,
    lease_expires_at   timestamptz,
    idempotency_key    text,
    updated_at         timestamptz NOT NULL,
    workflow_id        text,
    dependency_mode    text,
    dependencies_met   boolean,
    version            integer     NOT NULL,
    CONSTRAINT jobs_status_check CHECK (status IN
        ('pending', 'scheduled', 'processing', 'completed', 'failed', 'deadletter', 'cancelled'))
);
-- Idempotency keys are unique per organization, across queues, for as long as
-- the job is in the read model.
CREATE UNIQUE INDEX jobs_idempotency_idx ON jobs (organization_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_org_created_idx ON jobs (organization_id, created_at DESC);
CREATE INDEX jobs_org_queue_created_idx ON jobs (organization_id, queue_name, created_at DESC);
CREATE INDEX jobs_org_status_created_idx ON jobs (organization_id, status, created_at DESC);

-- pending_jobs: what a claim needs, and nothing else. A row lives here while
-- its job waits (ready, scheduled, or backing off) and leaves when it is
-- claimed or cancelled.
CREATE TABLE pending_jobs (
    job_id          uuid PRIMARY KEY,
    organization_id text        NOT NULL,
    queue_name      text        NOT NULL,
    priority        integer     NOT NULL,
    run_at          timestamptz NOT NULL,
    expires_at      timestamptz,
    created_at      timestamptz NOT NULL
);
CREATE INDEX pending_jobs_claim_idx
    ON pending_jobs (organization_id, queue_name, priority DESC, created_at, job_id);
CREATE INDEX pending_jobs_run_at_idx ON pending_jobs (run_at);

-- processing_jobs: leased jobs, one row per live lease. lease_id is the
-- fencing token every complete, fail and renewal must present.
CREATE TABLE processing_jobs (
    job_id           uuid PRIMARY KEY,
    organization_id  text        NOT NULL,
    queue_name       text        NOT NULL,
    worker_id        text        NOT NULL,
    lease_id         uuid        NOT NULL,
    lease_expires_at timestamptz NOT NULL,
    claimed_at       timestamptz NOT NULL
);
CREATE INDEX processing_jobs_lease_idx ON processing_jobs (lease_expires_at);
CREATE INDEX processing_jobs_org_queue_idx ON processing_jobs (organization_id, queue_name);
