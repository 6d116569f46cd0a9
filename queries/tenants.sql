-- Organizations and API keys.

-- name: OrganizationCreate :one
INSERT INTO organizations (id, name, slug, plan_tier, billing_email)
VALUES (sqlc.arg('id'), sqlc.arg('name'), sqlc.arg('slug'), sqlc.arg('plan_tier'), sqlc.narg('billing_email'))
RETURNING *;

-- name: OrganizationGet :one
SELECT * FROM organizations WHERE id = sqlc.arg('id');

-- name: OrganizationSetPlan :exec
UPDATE organizations SET plan_tier = sqlc.arg('plan_tier'), updated_at = now() WHERE id = sqlc.arg('id');

-- name: APIKeyCreate :one
INSERT INTO api_keys (id, organization_id, name, key_hash, key_prefix, queues, rate_limit, expires_at)
VALUES (sqlc.arg('id'), sqlc.arg('organization_id'), sqlc.arg('name'), sqlc.arg('key_hash'),
        sqlc.arg('key_prefix'), sqlc.arg('queues'), sqlc.narg('rate_limit'), sqlc.narg('expires_at'))
RETURNING *;

-- name: APIKeyByHash :one
-- Authentication: one probe of the unique hash index.
SELECT k.id, k.organization_id, k.name, k.queues, k.is_active, k.expires_at, o.plan_tier, o.custom_limits
FROM api_keys k
JOIN organizations o ON o.id = k.organization_id
WHERE k.key_hash = sqlc.arg('key_hash');

-- name: APIKeyList :many
SELECT * FROM api_keys
WHERE organization_id = sqlc.arg('organization_id')
ORDER BY created_at DESC, id
LIMIT 100;

-- name: APIKeyGet :one
SELECT * FROM api_keys WHERE id = sqlc.arg('id') AND organization_id = sqlc.arg('organization_id');

-- name: APIKeyUpdate :one
UPDATE api_keys
SET name = coalesce(sqlc.narg('name'), name),
    queues = coalesce(sqlc.narg('queues'), queues),
    rate_limit = coalesce(sqlc.narg('rate_limit'), rate_limit),
    is_active = coalesce(sqlc.narg('is_active'), is_active)
WHERE id = sqlc.arg('id') AND organization_id = sqlc.arg('organization_id')
RETURNING *;

-- name: APIKeyRevokeByName :many
-- Development bootstrap: retire earlier keys of the same name.
UPDATE api_keys SET is_active = false
WHERE organization_id = sqlc.arg('organization_id') AND name = sqlc.arg('name') AND is_active
RETURNING id;

-- name: APIKeyTouch :exec
UPDATE api_keys SET last_used = now() WHERE id = ANY(sqlc.arg('ids')::uuid[]);
