-- Every index is written by every insert. Two served nothing the others
-- do not:
--
-- job_events_tx_idx (tx_id, position) duplicated the primary key's job:
-- every reader pages by (tx_id, position), none looks an event up by
-- position alone. The primary key becomes (tx_id, position, occurred_at)
-- (the partition key must be part of it) and serves those readers.
ALTER TABLE job_events DROP CONSTRAINT job_events_pkey;
ALTER TABLE job_events ADD PRIMARY KEY (tx_id, position, occurred_at);
DROP INDEX job_events_tx_idx;

-- pending_jobs_run_at_idx (run_at): no query reads pending jobs by run_at
-- without their organization and queue, which pending_jobs_due_idx covers.
-- The twin's copy has a generated name (and a projection swap trades the
-- tables' names, not their indexes').
DO $$
DECLARE
    idx record;
BEGIN
    FOR idx IN
        SELECT i.indexrelid::regclass AS name
        FROM pg_index i
        WHERE i.indrelid IN ('pending_jobs'::regclass, 'pending_jobs_rebuild'::regclass)
          AND pg_get_indexdef(i.indexrelid) LIKE '%USING btree (run_at)'
    LOOP
        EXECUTE format('DROP INDEX %s', idx.name);
    END LOOP;
END $$;

-- The rebuild twins missed indexes added after they were made (0005,
-- 0006): a projection swap would have renamed a twin without them into
-- place. TestRebuildTwinsMatchLiveTables keeps them equal from here on.
CREATE INDEX IF NOT EXISTS pending_jobs_rebuild_due_idx ON pending_jobs_rebuild (organization_id, queue_name, run_at);
CREATE INDEX IF NOT EXISTS pending_jobs_rebuild_age_idx ON pending_jobs_rebuild (organization_id, queue_name, created_at);
CREATE INDEX IF NOT EXISTS processing_jobs_rebuild_worker_idx ON processing_jobs_rebuild (organization_id, worker_id);
