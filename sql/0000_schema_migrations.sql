-- The migration ledger. The runner applies this file before every run (it is
-- idempotent) so that it can read which versions are already in place.
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
