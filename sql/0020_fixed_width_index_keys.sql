-- The indexes every job writes at enqueue lead with fixed-width keys.
--
-- pending_jobs_claim_idx was (organization_id, queue_name, priority DESC,
-- created_at, job_id); jobs_org_created_idx (organization_id, created_at
-- DESC) and jobs_org_queue_created_idx (organization_id, queue_name,
-- created_at DESC). Behind a variable-width organization id (36 bytes for
-- the ids the server mints) and queue name, Postgres cannot cache the
-- offsets of the later columns: every comparison of an insert's descent
-- walks the tuple from its start (nocache_index_getattr), and the claim
-- index's entry was about 80 bytes. Each of the three cost the enqueue
-- statement 6-15% of its Postgres CPU (bench/NOTES.md, the seventeenth
-- spell).
--
-- text_key hashes a text to 64 bits, and the indexes lead with the keys of
-- the organization and the queue instead of the texts: every column of
-- their entries is fixed-width. Two texts can share a key, so a query that
-- reads through these indexes states both, the key (for the index) and
-- the text (for the answer): a collision costs a skipped entry, never a job
-- of another queue or tenant. TestTextKeyCollisionsStayApart runs the
-- server's reads with every text sharing one key.
CREATE FUNCTION text_key(t text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
AS $$ SELECT hashtextextended(t, 0) $$;

-- The old indexes are found by what they cover: a twin's copies have
-- generated names, and a projection swap trades the tables' names but not
-- their indexes'. Building the new ones locks the tables: on a large jobs
-- table, run this migration in a maintenance window.
SELECT drop_indexes_by_definition(ARRAY['pending_jobs', 'pending_jobs_rebuild']::regclass[],
                                  'USING btree (organization_id, queue_name, priority DESC, created_at, job_id)');
CREATE INDEX pending_jobs_claim_idx
    ON pending_jobs (text_key(organization_id), text_key(queue_name), priority DESC, created_at, job_id);
CREATE INDEX pending_jobs_rebuild_claim_idx
    ON pending_jobs_rebuild (text_key(organization_id), text_key(queue_name), priority DESC, created_at, job_id);

SELECT drop_indexes_by_definition(ARRAY['jobs', 'jobs_rebuild']::regclass[],
                                  'USING btree (organization_id, created_at DESC)');
SELECT drop_indexes_by_definition(ARRAY['jobs', 'jobs_rebuild']::regclass[],
                                  'USING btree (organization_id, queue_name, created_at DESC)');
CREATE INDEX jobs_org_created_idx ON jobs (text_key(organization_id), created_at DESC);
CREATE INDEX jobs_rebuild_org_created_idx ON jobs_rebuild (text_key(organization_id), created_at DESC);
CREATE INDEX jobs_org_queue_created_idx
    ON jobs (text_key(organization_id), text_key(queue_name), created_at DESC);
CREATE INDEX jobs_rebuild_org_queue_created_idx
    ON jobs_rebuild (text_key(organization_id), text_key(queue_name), created_at DESC);
