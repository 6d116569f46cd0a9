-- A job's row has three versions between its enqueue and its complete:
-- enqueued, claimed and completed. A batch work-off claims and completes
-- whole pages of rows within milliseconds, and any older snapshot still
-- open meanwhile (a report, the hot-table ANALYZE) keeps the enqueued
-- versions from being pruned, so at fillfactor 50 (0012) the completes
-- found their pages full: a fifth of all updates of jobs left their page
-- (a heap lock record, a new version elsewhere and an entry in every index
-- of jobs each; pg_walinspect of a 20,000-job batch run: 0.38 non-HOT
-- updates per job). A third leaves room for all three versions. Five
-- alternated pairs of bench's -e2e-only -e2e-modes batch: work-off
-- 12,353 -> 14,447 jobs/s (medians), Postgres CPU 21.8 -> 18.2 s, WAL
-- 19.3 -> 17.6 records per job; a quarter did no better than a third. The
-- price: the table holds a third as many rows per page as packed.
ALTER TABLE jobs SET (fillfactor = 33);
ALTER TABLE jobs_rebuild SET (fillfactor = 33);
