-- pending_jobs and processing_jobs are queues: rows are inserted and
-- deleted moments later. A claim walks pending_jobs_claim_idx from its
-- front, where the entries of claimed (deleted) rows pile up until a vacuum
-- removes them, so with Postgres's defaults (vacuum once 20% of rows are
-- dead) claims slow down in proportion to the backlog already worked off.
-- Vacuum them after a fixed number of dead rows, unthrottled. The server
-- also vacuums them every HOT_TABLE_VACUUM_INTERVAL_SECS, since
-- autovacuum's naptime (1 min by default) is long for a busy queue. Their
-- *_rebuild twins get the same settings: a projection swap renames them in.
ALTER TABLE pending_jobs SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0);
ALTER TABLE processing_jobs SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0);
ALTER TABLE pending_jobs_rebuild SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0);
ALTER TABLE processing_jobs_rebuild SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0);
-- jobs gets two updates per job (claim, finish): vacuum it at 2% dead.
ALTER TABLE jobs SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0);
ALTER TABLE jobs_rebuild SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0);
