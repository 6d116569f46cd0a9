-- Targets of a projection rebuild: the fold of the log is written here and
-- compared with (or, later, swapped for) the live tables. A rebuild leaves
-- its output here for inspection; a verify rolls its own back.
CREATE TABLE jobs_rebuild (LIKE jobs INCLUDING ALL);
CREATE TABLE pending_jobs_rebuild (LIKE pending_jobs INCLUDING ALL);
CREATE TABLE processing_jobs_rebuild (LIKE processing_jobs INCLUDING ALL);
