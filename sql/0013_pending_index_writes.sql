-- Every job passes through pending_jobs, and each of its indexes takes an
-- entry per job. Two of the four served one read each:
--
-- pending_jobs_due_idx (organization_id, queue_name, run_at) served only
-- JobNextDue, which looks for the next job that is not ready yet. A job
-- that was ready when it arrived has run_at = created_at, and after that
-- "now" only grows, so the rows JobNextDue can return all have
-- run_at > created_at: scheduled jobs, retries in backoff, released
-- leases. The index now holds those rows alone (the query states the same
-- condition, so the planner can use it).
--
-- pending_jobs_age_idx (organization_id, queue_name, created_at) served
-- only StatsOldestWaiting, which now walks the claim index once per
-- priority present in the queue (a few index probes) instead.
-- drop_indexes_by_definition drops the indexes of the given tables whose
-- definition ends with suffix. A twin's copies of the live tables'
-- indexes have generated names, and a projection swap trades the tables'
-- names but not their indexes', so indexes are found by what they cover.
-- (OR REPLACE: development databases of this release's own history made
-- it in an earlier migration.)
CREATE OR REPLACE FUNCTION drop_indexes_by_definition(tables regclass[], suffix text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    idx record;
BEGIN
    FOR idx IN
        SELECT i.indexrelid::regclass AS name
        FROM pg_index i
        WHERE i.indrelid = ANY(tables) AND pg_get_indexdef(i.indexrelid) LIKE '%' || suffix
    LOOP
        EXECUTE format('DROP INDEX %s', idx.name);
    END LOOP;
END $$;

SELECT drop_indexes_by_definition(ARRAY['pending_jobs', 'pending_jobs_rebuild']::regclass[],
                                  'USING btree (organization_id, queue_name, run_at)');
SELECT drop_indexes_by_definition(ARRAY['pending_jobs', 'pending_jobs_rebuild']::regclass[],
                                  'USING btree (organization_id, queue_name, created_at)');
CREATE INDEX pending_jobs_next_due_idx ON pending_jobs (organization_id, queue_name, run_at)
    WHERE run_at > created_at;
CREATE INDEX pending_jobs_rebuild_next_due_idx ON pending_jobs_rebuild (organization_id, queue_name, run_at)
    WHERE run_at > created_at;
