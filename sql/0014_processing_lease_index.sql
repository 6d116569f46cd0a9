-- processing_jobs_lease_idx (lease_expires_at) served one reader, the lease
-- reaper's sweep (JobExpireLeases), which runs every
-- LEASE_REAPER_INTERVAL_SECS (5). Every claim wrote an entry into it, and
-- every lease renewal did too: a renewal changes lease_expires_at, so with
-- this index it could never be a heap-only (HOT) update, and each one put
-- a new entry into all four indexes of the table.
--
-- Without it the sweep reads the table. processing_jobs holds only live
-- leases: with 100,000 of them (9 MB) the sweep took 5 ms, against 1 ms
-- through the index (EXPLAIN ANALYZE of its generic plan), every 5 s. The
-- batch work-off of make bench, three alternated pairs of
-- `bin/spooled-bench -e2e-only -e2e-modes batch`: 28,668/28,104/26,413 ->
-- 29,584/28,908/29,229 jobs/s, Postgres CPU 9.4/9.8/10.3 -> 9.2/9.4/9.5 s.
--
-- drop_indexes_by_definition (0013) finds the rebuild twin's copy, whose
-- name was generated.
SELECT drop_indexes_by_definition(ARRAY['processing_jobs', 'processing_jobs_rebuild']::regclass[],
                                  'USING btree (lease_expires_at)');
