-- The append-only event log. Every job transition and every control-plane
-- change that matters for audit is one row here. Rows are never updated or
-- deleted; whole monthly partitions are dropped only past retention.
--
-- position orders events globally; tx_id (the writing transaction's xid8) lets
-- readers page by (tx_id, position) and stop below the oldest transaction
-- still in flight, so no concurrent writer's event is ever skipped.
CREATE TABLE job_events (
    position        bigint GENERATED ALWAYS AS IDENTITY,
    tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    organization_id text        NOT NULL,
    stream_type     text        NOT NULL,
    stream_id       text        NOT NULL,
    stream_seq      integer     NOT NULL,
    event_type      text        NOT NULL,
    queue_name      text,
    actor           text        NOT NULL,
    data            jsonb       NOT NULL DEFAULT '{}'::jsonb,
    occurred_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (position, occurred_at)
) PARTITION BY RANGE (occurred_at);

-- A job's (or queue's) history: one index probe per partition, pruned by the
-- UUIDv7 time of the job id.
CREATE INDEX job_events_stream_idx ON job_events (stream_id, stream_seq);
-- Gap-free readers page by (tx_id, position).
CREATE INDEX job_events_tx_idx ON job_events (tx_id, position);
CREATE INDEX job_events_org_tx_idx ON job_events (organization_id, tx_id, position);

-- create_jobs_partition_for_month creates the log partition holding the month
-- of the given date (idempotent) and returns its name.
CREATE FUNCTION create_jobs_partition_for_month(month_date date) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    range_start date := date_trunc('month', month_date)::date;
    range_end   date := (date_trunc('month', month_date) + interval '1 month')::date;
    part_name   text := 'job_events_' || to_char(range_start, 'YYYY_MM');
BEGIN
    IF to_regclass(quote_ident(current_schema()) || '.' || part_name) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF job_events FOR VALUES FROM (%L) TO (%L)',
                       part_name, range_start, range_end);
    END IF;
    RETURN part_name;
END;
$$;

-- check_partition_health lists every log partition plus each month from the
-- current one to three months ahead, saying whether it exists.
CREATE FUNCTION check_partition_health()
RETURNS TABLE (partition_name text, range_start date, range_end date,
               row_estimate bigint, total_bytes bigint, status text)
LANGUAGE sql STABLE AS $$
    WITH expected AS (
        SELECT (date_trunc('month', now()) + make_interval(months => m))::date AS range_start
        FROM generate_series(0, 3) AS m
    ), existing AS (
        SELECT c.relname::text AS partition_name,
               to_date(substring(c.relname FROM '(\d{4}_\d{2})$'), 'YYYY_MM') AS range_start,
               c.reltuples::bigint AS row_estimate,
               pg_total_relation_size(c.oid) AS total_bytes
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = to_regclass(quote_ident(current_schema()) || '.job_events')
    )
    SELECT coalesce(x.partition_name, 'job_events_' || to_char(e.range_start, 'YYYY_MM')),
           coalesce(x.range_start, e.range_start),
           (coalesce(x.range_start, e.range_start) + interval '1 month')::date,
           coalesce(x.row_estimate, 0),
           coalesce(x.total_bytes, 0),
           CASE WHEN x.partition_name IS NULL THEN 'missing' ELSE 'ok' END
    FROM existing x
    FULL JOIN expected e ON e.range_start = x.range_start
    ORDER BY 2;
$$;

-- maintain_jobs_partitions creates the partitions for the current month and
-- the next three. Retention (dropping old partitions after carrying live jobs
-- forward) is added with the partition lifecycle.
CREATE PROCEDURE maintain_jobs_partitions()
LANGUAGE plpgsql AS $$
BEGIN
    FOR m IN 0..3 LOOP
        PERFORM create_jobs_partition_for_month((date_trunc('month', now()) + make_interval(months => m))::date);
    END LOOP;
END;
$$;

-- A fresh database can take writes at once: the previous month (for clock
-- skew and pinned test clocks), this month and three ahead.
SELECT create_jobs_partition_for_month((date_trunc('month', now()) + make_interval(months => m))::date)
FROM generate_series(-1, 3) AS m;
