-- Planner pins for statements whose plan must not follow the statistics.

-- name: PlanPin :exec
-- Run first in the transaction of a statement that must walk an index in
-- order and stop after a batch: a claim (pending_jobs_claim_idx), a
-- projector's page of the log after its cursor (EventsAfterCursor) or a
-- rebuild's page in stream order (EventsJobStreamsAfter). It turns
-- sorting off for the rest of that transaction only (PlanSave and
-- PlanRestore give it back where other statements follow). When the
-- statistics have not seen the rows the statement reads (a new queue, a
-- burst since the last ANALYZE, log events past the newest ANALYZE saw),
-- the planner can expect next to none, and reading every matching row and
-- sorting them looks as cheap as the ordered scan: it then sorts the whole
-- backlog on every claim, or reads every event after the cursor for every
-- page of a catch-up, spilling to disk once that outgrows work_mem. With
-- sorting priced out, the ordered index scan is the only plan left for the
-- batch. Pricing a sort out lifts every plan's cost above the JIT
-- thresholds, so JIT goes off too: compiling the claim would cost seconds
-- for a statement that runs in milliseconds. And the plan is made once per
-- connection (generic): planning the claim's CTEs anew for every claim cost
-- about 3% of Postgres's CPU in the 200,000-job benchmark, and with sorting
-- priced out the generic plan walks the same index.
SELECT set_config('enable_sort', 'off', true), set_config('jit', 'off', true),
       set_config('plan_cache_mode', 'force_generic_plan', true);

-- name: PlanSave :exec
-- Keeps the settings PlanPin changes, in placeholder settings local to the
-- transaction, for PlanRestore: a statement that PlanPin pins can then be
-- followed by others that plan as the session would (a projection's writes
-- after its log read).
SELECT set_config('spooled.saved_enable_sort', current_setting('enable_sort'), true),
       set_config('spooled.saved_jit', current_setting('jit'), true),
       set_config('spooled.saved_plan_cache_mode', current_setting('plan_cache_mode'), true);

-- name: PlanRestore :exec
-- Gives the transaction back the settings PlanSave kept.
SELECT set_config('enable_sort', current_setting('spooled.saved_enable_sort'), true),
       set_config('jit', current_setting('spooled.saved_jit'), true),
       set_config('plan_cache_mode', current_setting('spooled.saved_plan_cache_mode'), true);

-- name: PlanNoSort :exec
-- PlanPin without the generic plan, for a page read newest or oldest first
-- from an index that gives the order: an organization's job list
-- (JobList), its log without a stream filter (EventLogPage) or the newest
-- event of its log (EventLogEnd). With sorting priced out, the page walks
-- the index and stops after the offset and the page, however few rows the
-- statistics expect; without it, an organization the statistics have not
-- seen (a new tenant's burst) or log events past the newest ANALYZE saw
-- are read in full and sorted for every page. The plan is still made for
-- the call, so constant filters keep their effect (time filters prune the
-- log's partitions).
SELECT set_config('enable_sort', 'off', true), set_config('jit', 'off', true);

-- name: TxLockTimeout :exec
-- Bounds the lock waits of the rest of this transaction, so that one that
-- may close a lock cycle with a writer (a projection swap, a cap change)
-- gives up (and retries) before deadlock detection could abort the writer.
SELECT set_config('lock_timeout', sqlc.arg('timeout')::text, true);
