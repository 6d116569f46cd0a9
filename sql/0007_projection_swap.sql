-- Swapping rebuilt job projections in while the server runs.

-- lock_job_projections pauses writers of the job projections for the rest
-- of the calling transaction (EXCLUSIVE: readers go on, writers and row
-- locks wait).
CREATE FUNCTION lock_job_projections() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE jobs, pending_jobs, processing_jobs IN EXCLUSIVE MODE;
END;
$$;

-- swap_job_projections exchanges each live job projection with its
-- *_rebuild twin by renaming. Statements waiting on the live tables'
-- locks resolve the names again once they get them, so they write into the
-- swapped-in tables.
CREATE FUNCTION swap_job_projections() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    ALTER TABLE jobs RENAME TO jobs_swapping;
    ALTER TABLE jobs_rebuild RENAME TO jobs;
    ALTER TABLE jobs_swapping RENAME TO jobs_rebuild;
    ALTER TABLE pending_jobs RENAME TO pending_jobs_swapping;
    ALTER TABLE pending_jobs_rebuild RENAME TO pending_jobs;
    ALTER TABLE pending_jobs_swapping RENAME TO pending_jobs_rebuild;
    ALTER TABLE processing_jobs RENAME TO processing_jobs_swapping;
    ALTER TABLE processing_jobs_rebuild RENAME TO processing_jobs;
    ALTER TABLE processing_jobs_swapping RENAME TO processing_jobs_rebuild;
END;
$$;
