-- The asynchronous projector: checkpoints and the gap-free log read.

-- name: ProjectorCheckpointEnsure :exec
INSERT INTO projector_checkpoints (name) VALUES (sqlc.arg('name')) ON CONFLICT (name) DO NOTHING;

-- name: ProjectorCheckpointLock :one
-- Takes the projection for this transaction; another instance holding it
-- makes this return no row, and that instance does the work.
SELECT name, last_tx_id::text::bigint AS last_tx_id, last_position, last_event_at
FROM projector_checkpoints
WHERE name = sqlc.arg('name')
FOR UPDATE SKIP LOCKED;

-- name: ProjectorCheckpointSave :exec
UPDATE projector_checkpoints
SET last_tx_id = sqlc.arg('last_tx_id')::bigint::text::xid8,
    last_position = sqlc.arg('last_position'),
    last_event_at = sqlc.narg('last_event_at'),
    updated_at = now()
WHERE name = sqlc.arg('name');

-- name: ProjectorCheckpointReset :exec
UPDATE projector_checkpoints
SET last_tx_id = '0'::xid8, last_position = 0, last_event_at = NULL, updated_at = now()
WHERE name = sqlc.arg('name');

-- name: ProjectorCheckpoints :many
SELECT name, last_tx_id::text::bigint AS last_tx_id, last_position, last_event_at, updated_at
FROM projector_checkpoints
ORDER BY name;

-- name: EventsAfterCursor :many
-- Events after (tx_id, position) in cursor order, only from transactions
-- that have all finished: everything below the oldest running transaction
-- is final, so a reader that pages this way never skips a late commit.
-- data comes as text: the projections decode the few events whose data
-- they read, and a jsonb column would have the driver validate every
-- event's JSON, job payloads included (9% of the server's CPU under single
-- enqueues). It comes only for the event types a projection reads it of
-- (data_types, or every type with all_data) and is '' for the rest, so a
-- job.created's payload is neither rendered nor sent for the stats.
SELECT position, tx_id::text::bigint AS tx_id, organization_id, stream_type, stream_id, stream_seq,
       event_type, queue_name, actor,
       (CASE WHEN sqlc.arg('all_data')::boolean OR job_events.event_type = ANY(sqlc.arg('data_types')::text[])
             THEN job_events.data::text ELSE '' END)::text AS data,
       occurred_at
FROM job_events
WHERE (tx_id, position) > (sqlc.arg('after_tx_id')::bigint::text::xid8, sqlc.arg('after_position')::bigint)
  AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
-- Qualified: a bare tx_id here would name the bigint output column, an
-- order no index has, and every batch would sort all events after the
-- cursor (a catch-up quadratic in the backlog).
ORDER BY job_events.tx_id, job_events.position
LIMIT sqlc.arg('max_rows');

-- name: EventsAfterCheckpoint :one
-- Events a projection has not applied yet, readable or not (a transaction
-- still running holds later ones back).
SELECT count(*)::bigint
FROM job_events e, projector_checkpoints cp
WHERE cp.name = sqlc.arg('name') AND (e.tx_id, e.position) > (cp.last_tx_id, cp.last_position);
