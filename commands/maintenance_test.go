package commands_test

import (
	"testing"
	"time"

	"github.com/spooled-go/spooled/commands"
)

// TestVacuumHotTables: the periodic maintenance statement runs (its
// options are accepted by this Postgres) and vacuums and analyzes both
// queue tables. Postgres reports table statistics after a delay, so the
// test polls.
func TestVacuumHotTables(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.enqueue(e.actor, commands.NewJob{QueueName: "q"})
	if err := e.svc.VacuumHotTables(e.ctx); err != nil {
		t.Fatal(err)
	}
	done := eventually(10*time.Second, func() bool {
		var n int
		err := e.pool.QueryRow(e.ctx, `SELECT count(*) FROM pg_stat_user_tables
			WHERE relid IN ('pending_jobs'::regclass, 'processing_jobs'::regclass)
			  AND last_vacuum IS NOT NULL AND last_analyze IS NOT NULL`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n == 2
	})
	if !done {
		t.Fatal("pending_jobs and processing_jobs were not both vacuumed and analyzed")
	}
}
