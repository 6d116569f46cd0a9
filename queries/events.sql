-- The log outside the job transitions: control-plane appends and rebuild reads.

-- name: EventAppend :one
-- Appends one control-plane event; its stream sequence follows the stream's
-- newest event. Callers hold a lock on the stream's row, which orders appends.
INSERT INTO job_events (organization_id, stream_type, stream_id, stream_seq, event_type,
                        queue_name, actor, data)
SELECT sqlc.arg('organization_id'), sqlc.arg('stream_type'), sqlc.arg('stream_id'),
       coalesce(max(e.stream_seq), 0) + 1, sqlc.arg('event_type'), sqlc.narg('queue_name'),
       sqlc.arg('actor'), sqlc.arg('data')
FROM job_events e
WHERE e.stream_id = sqlc.arg('stream_id')
RETURNING position, occurred_at;

-- name: EventsJobStreamsAfter :many
-- Rebuild input: job events in (stream, sequence) order, one page at a time.
SELECT organization_id, stream_id, stream_seq, event_type, queue_name, data, occurred_at
FROM job_events
WHERE stream_type = 'job'
  AND (stream_id, stream_seq) > (sqlc.arg('after_stream')::text, sqlc.arg('after_seq')::int)
ORDER BY stream_id, stream_seq
LIMIT sqlc.arg('max_rows');

-- name: PartitionsMaintain :exec
-- Creates partitions ahead; with retention_months > 0 also carries live
-- jobs forward and drops partitions past retention.
CALL maintain_jobs_partitions(sqlc.arg('retention_months')::int);

-- name: PartitionHealth :many
SELECT h.partition_name::text AS partition_name, h.range_start::date AS range_start,
       h.row_estimate::bigint AS row_estimate, h.total_bytes::bigint AS total_bytes, h.status::text AS status
FROM check_partition_health() AS h(partition_name, range_start, range_end, row_estimate, total_bytes, status);
