-- name: MigrationLock :exec
SELECT pg_advisory_lock(sqlc.arg('key')::bigint);

-- name: MigrationUnlock :exec
SELECT pg_advisory_unlock(sqlc.arg('key')::bigint);

-- name: MigrationVersions :many
SELECT version FROM schema_migrations ORDER BY version;

-- name: MigrationRecord :exec
INSERT INTO schema_migrations (version, name) VALUES (sqlc.arg('version'), sqlc.arg('name'));
