-- Tenants and their credentials. Changes to these that matter for audit are
-- also appended to the log by the commands that make them.
CREATE TABLE organizations (
    id            text PRIMARY KEY,
    name          text        NOT NULL,
    slug          text        NOT NULL UNIQUE,
    plan_tier     text        NOT NULL DEFAULT 'free',
    billing_email text,
    settings      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    custom_limits jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- The seeded tenant every Spooled database starts with.
INSERT INTO organizations (id, name, slug, plan_tier)
VALUES ('default-org', 'Default Organization', 'default', 'free');

-- API keys are stored only as the SHA-256 of the raw key: keys carry 256 bits
-- of randomness, so a fast hash is safe and lets authentication be one
-- unique-index probe instead of a scan of bcrypt candidates.
CREATE TABLE api_keys (
    id              uuid PRIMARY KEY,
    organization_id text        NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name            text        NOT NULL,
    key_hash        text        NOT NULL UNIQUE,
    key_prefix      text        NOT NULL,
    queues          text[]      NOT NULL DEFAULT '{}',
    rate_limit      integer,
    is_active       boolean     NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_used       timestamptz,
    expires_at      timestamptz
);
CREATE INDEX api_keys_org_idx ON api_keys (organization_id, created_at DESC);
