package queries

import "context"

// VacuumHotTables vacuums the queue tables claims scan (see
// sql/0009_hot_table_vacuum.sql). SKIP_LOCKED: when another instance's
// vacuum (or autovacuum) is at work on a table, this one passes it by.
// (Hand-written: VACUUM cannot run in a transaction or a function, and
// sqlc does not parse it.)
func (q *Queries) VacuumHotTables(ctx context.Context, db DBTX) error {
	_, err := db.Exec(ctx, "VACUUM (SKIP_LOCKED) pending_jobs, processing_jobs")
	return err
}
