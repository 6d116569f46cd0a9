package queries

import "context"

// VacuumHotTables vacuums and analyzes the queue tables claims and
// completes read (see sql/0009_hot_table_vacuum.sql). ANALYZE keeps their
// statistics at most one interval old: these tables go from empty to a
// backlog of hundreds of thousands in seconds, and plans made from
// statistics taken while they were empty probe the wrong indexes (a
// complete scanned every lease of its organization instead of its own
// rows). SKIP_LOCKED: when another instance's vacuum (or autovacuum) is at
// work on a table, this one passes it by. TRUNCATE false: these tables
// shrink to nothing and refill within seconds, and giving their empty tail
// back to the file system needs an exclusive lock that every claim and
// enqueue contends for; a busy table kept the vacuum retrying for that
// lock (Timeout:VacuumTruncate) for seconds instead of finishing.
// (Hand-written: VACUUM cannot run in a transaction or a function, and
// sqlc does not parse it.)
func (q *Queries) VacuumHotTables(ctx context.Context, db DBTX) error {
	_, err := db.Exec(ctx, "VACUUM (ANALYZE, SKIP_LOCKED, TRUNCATE false) pending_jobs, processing_jobs")
	return err
}
