-- A claim updates the jobs rows it leases in one statement, and since
-- claims are coalesced (one statement serves every request that queued
-- meanwhile) that is often every row of a page at once. Old versions only
-- become prunable when the claim commits, so each new version needs room
-- on its page beside the old one: fillfactor 70 left room for about a
-- third of a page's rows and 60% of claim updates left the page (non-HOT:
-- a new entry in every index of jobs, and a heap lock record, per row;
-- pg_waldump of a 20,000-job run). Fillfactor 50 keeps a page's rows and
-- their next versions together: 70% of all updates HOT, WAL 23.4 -> 21.2
-- records per job, and in four alternated runs of make bench's
-- -e2e-only -e2e-modes batch -workers 32 Postgres CPU 31.5/28.3/28.3/35.3 s
-- -> 26.8/24.1/24.3/23.1 s, work-off 9,388/10,470/10,293/8,286 ->
-- 10,373/11,994/12,008/12,271 jobs/s. The price: the table holds half as
-- many rows per page (finished jobs included, until retention removes
-- them). Existing pages keep their packing; new pages follow this.
ALTER TABLE jobs SET (fillfactor = 50);
ALTER TABLE jobs_rebuild SET (fillfactor = 50);
