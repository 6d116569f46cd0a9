-- Log retention: whole monthly partitions are dropped once past the
-- retention period, after every job still in the read model whose history
-- touches them has been carried forward as a job.snapshot event in the
-- current partition. Nothing live is lost, and the projections can still be
-- rebuilt from what remains.

-- carry_forward_and_drop_partition appends a job.snapshot for each job of
-- the read model with events in the partition, then drops the partition.
-- Writers of the job projections are paused (EXCLUSIVE locks) so each
-- snapshot is a consistent read of the job's rows. Writers take those locks
-- in different orders, so the locks are waited for at most 20 ms and
-- retried: a lock-order collision never becomes a deadlock that Postgres
-- would settle by aborting a writer.
CREATE FUNCTION carry_forward_and_drop_partition(partition_name text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    carried integer;
    old_timeout text := current_setting('lock_timeout');
BEGIN
    FOR attempt IN 1..500 LOOP
        BEGIN
            PERFORM set_config('lock_timeout', '20ms', true);
            LOCK TABLE jobs, pending_jobs, processing_jobs IN EXCLUSIVE MODE;
            PERFORM set_config('lock_timeout', old_timeout, true);
            EXECUTE format($q$
                WITH touched AS (
                    SELECT DISTINCT e.stream_id FROM %I e WHERE e.stream_type = 'job'
                ), bumped AS (
                    UPDATE jobs j SET version = j.version + 1
                    FROM touched t
                    WHERE j.id::text = t.stream_id
                    RETURNING j.*
                ), logged AS (
                    INSERT INTO job_events (organization_id, stream_type, stream_id, stream_seq, event_type,
                                            queue_name, actor, data)
                    SELECT b.organization_id, 'job', b.id::text, b.version, 'job.snapshot', b.queue_name,
                           'system:retention',
                           jsonb_build_object(
                               'job', to_jsonb(b),
                               'pending', (SELECT to_jsonb(p) FROM pending_jobs p WHERE p.job_id = b.id),
                               'processing', (SELECT to_jsonb(h) FROM processing_jobs h WHERE h.job_id = b.id))
                    FROM bumped b
                    RETURNING 1
                )
                SELECT count(*) FROM logged
            $q$, partition_name) INTO carried;
            EXECUTE format('DROP TABLE %I', partition_name);
            RETURN carried;
        EXCEPTION WHEN lock_not_available THEN
            PERFORM set_config('lock_timeout', old_timeout, true);
            PERFORM pg_sleep(0.002);
        END;
    END LOOP;
    RAISE EXCEPTION 'could not pause writers to drop partition %', partition_name;
END;
$$;

-- maintain_jobs_partitions creates the partitions for this month and the
-- next three, and (retention_months > 0) carries forward and drops every
-- partition that ended retention_months months before this month began.
DROP PROCEDURE maintain_jobs_partitions();
CREATE PROCEDURE maintain_jobs_partitions(retention_months integer DEFAULT 6)
LANGUAGE plpgsql AS $$
DECLARE
    part record;
    cutoff date := (date_trunc('month', now()) - make_interval(months => greatest(retention_months, 0)))::date;
BEGIN
    FOR m IN 0..3 LOOP
        PERFORM create_jobs_partition_for_month((date_trunc('month', now()) + make_interval(months => m))::date);
    END LOOP;
    IF retention_months <= 0 THEN
        RETURN;
    END IF;
    FOR part IN
        SELECT h.partition_name FROM check_partition_health() h
        WHERE h.status = 'ok' AND h.range_end <= cutoff
        ORDER BY h.range_start
    LOOP
        PERFORM carry_forward_and_drop_partition(part.partition_name);
    END LOOP;
END;
$$;
