-- The hot-table vacuum ANALYZEs pending_jobs and processing_jobs every
-- HOT_TABLE_VACUUM_INTERVAL_SECS (queries/maintenance.go), because their
-- size swings from nothing to hundreds of thousands of rows in seconds and
-- plans made from stale statistics probe the wrong indexes. At the default
-- statistics target (100) each ANALYZE samples 30,000 rows and sorts every
-- column of them: 126-139 ms on this VM for a 200,000-row pending_jobs,
-- every 2 s through a backlog, against 15-19 ms at a target of 10 (3,000
-- rows). What the plans of claims, probes and completes need from these
-- tables is their size and the share of each (organization, queue), which
-- a sample of 3,000 rows gives; the finer histograms were never read. The
-- *_rebuild twins get the same targets: a projection swap renames them in.
DO $$
DECLARE
    t text;
    c text;
BEGIN
    FOREACH t IN ARRAY ARRAY['pending_jobs', 'pending_jobs_rebuild', 'processing_jobs', 'processing_jobs_rebuild'] LOOP
        FOR c IN SELECT attname FROM pg_attribute
                 WHERE attrelid = t::regclass
                   AND attnum > 0 AND NOT attisdropped LOOP
            EXECUTE format('ALTER TABLE %I ALTER COLUMN %I SET STATISTICS 10', t, c);
        END LOOP;
    END LOOP;
END
$$;
