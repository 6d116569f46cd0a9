-- The text keys that lead the indexes a job writes and reads (its
-- organization, queue, worker, idempotency key, and the log's stream id)
-- compare bytewise. Under any database collation but C, every comparison
-- of two such keys went through the locale machinery (a locale lookup, a
-- copy of both strings and strcoll when they differ), and a B-tree insert
-- or probe makes a dozen or more of them per index: in the batch
-- end-to-end benchmark on a C.UTF-8 database that path was about 2% of the
-- machine's CPU, and the same server on a C database ran 2-4% faster
-- (bench/NOTES.md, the sixteenth spell). These keys are identifiers, never
-- text a person expects ordered by language rules; queue names now sort by
-- code point under any database collation (as C.UTF-8 sorted them).
--
-- Only the collation changes, so no table is rewritten, but every index
-- on these columns is rebuilt under an exclusive lock: on a large log or
-- jobs table, run this migration in a maintenance window. jobs.status stays
-- as it is (the generated dead_status is computed from it). Columns of
-- other tables compared with these keep the default collation: an
-- implicit C and the database default combine to C, never to an error.
ALTER TABLE organizations
    ALTER COLUMN id TYPE text COLLATE "C",
    ALTER COLUMN slug TYPE text COLLATE "C";
ALTER TABLE api_keys
    ALTER COLUMN organization_id TYPE text COLLATE "C",
    ALTER COLUMN key_hash TYPE text COLLATE "C";
ALTER TABLE workers
    ALTER COLUMN id TYPE text COLLATE "C",
    ALTER COLUMN organization_id TYPE text COLLATE "C";
ALTER TABLE queue_config
    ALTER COLUMN organization_id TYPE text COLLATE "C",
    ALTER COLUMN queue_name TYPE text COLLATE "C";
ALTER TABLE queue_stats
    ALTER COLUMN organization_id TYPE text COLLATE "C",
    ALTER COLUMN queue_name TYPE text COLLATE "C";
ALTER TABLE queue_stats_hourly
    ALTER COLUMN organization_id TYPE text COLLATE "C",
    ALTER COLUMN queue_name TYPE text COLLATE "C";
ALTER TABLE job_events
    ALTER COLUMN organization_id TYPE text COLLATE "C",
    ALTER COLUMN stream_id TYPE text COLLATE "C";
ALTER TABLE jobs
    ALTER COLUMN organization_id TYPE text COLLATE "C",
    ALTER COLUMN queue_name TYPE text COLLATE "C",
    ALTER COLUMN idempotency_key TYPE text COLLATE "C";
ALTER TABLE jobs_rebuild
    ALTER COLUMN organization_id TYPE text COLLATE "C",
    ALTER COLUMN queue_name TYPE text COLLATE "C",
    ALTER COLUMN idempotency_key TYPE text COLLATE "C";
ALTER TABLE pending_jobs
    ALTER COLUMN organization_id TYPE text COLLATE "C",
    ALTER COLUMN queue_name TYPE text COLLATE "C";
ALTER TABLE pending_jobs_rebuild
    ALTER COLUMN organization_id TYPE text COLLATE "C",
    ALTER COLUMN queue_name TYPE text COLLATE "C";
ALTER TABLE processing_jobs
    ALTER COLUMN organization_id TYPE text COLLATE "C",
    ALTER COLUMN queue_name TYPE text COLLATE "C",
    ALTER COLUMN worker_id TYPE text COLLATE "C";
ALTER TABLE processing_jobs_rebuild
    ALTER COLUMN organization_id TYPE text COLLATE "C",
    ALTER COLUMN queue_name TYPE text COLLATE "C",
    ALTER COLUMN worker_id TYPE text COLLATE "C";
