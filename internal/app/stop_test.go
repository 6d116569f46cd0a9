package app_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spooled-go/spooled/internal/config"
	"github.com/spooled-go/spooled/internal/testdb"
)

// TestStopEndsWithTheDatabaseStuck: with the database not answering (here
// pending_jobs is locked by another transaction), Stop returns soon after its
// deadline instead of waiting for the database: the drain's deadline
// cancels what requests still run (a bulk enqueue on its handler's own
// connection) and what the group commit runs (a single enqueue), and the
// pools close. Nothing was written. Stop used to wait for the database
// however long it took, and a server asked to stop did not exit.
func TestStopEndsWithTheDatabaseStuck(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, dbURL := testdb.NewWithURL(t, testdb.Options{})
	// The background loops that touch pending_jobs are kept out of the
	// way, so that the backends waiting for its lock are the requests'.
	a, _ := wkStartAppStoppable(t, dbURL, nil, func(c *config.Config) {
		c.DatabaseMaxConnections = 20
		c.HotTableVacuumInterval = 0
		c.LeaseReaperInterval = time.Hour
		c.WorkerHealthCheckInterval = time.Hour
	})
	api := wkNewOrg(t, wkNewAPI(t, a, ""))

	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	holder, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(ctx)
	if _, err := holder.Exec(ctx, `LOCK TABLE pending_jobs IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	answers := make(chan int, 2)
	go func() {
		st, _, _ := api.call("POST", "/api/v1/jobs", map[string]any{"queue_name": "stuck", "payload": map[string]any{}})
		answers <- st
	}()
	go func() {
		st, _, _ := api.call("POST", "/api/v1/jobs/bulk", map[string]any{"queue_name": "stuck",
			"jobs": []map[string]any{{"payload": map[string]any{}}}})
		answers <- st
	}()
	waiting := func() int {
		var n int
		// A prepared statement takes its locks when bound, before
		// pg_stat_activity shows its text: count the backends waiting for
		// a lock on pending_jobs (of this test's schema).
		_ = conn.QueryRow(ctx, `SELECT count(*) FROM pg_locks
		                        WHERE relation = 'pending_jobs'::regclass AND NOT granted`).Scan(&n)
		return n
	}
	deadline := time.Now().Add(20 * time.Second)
	for waiting() < 2 {
		if time.Now().After(deadline) {
			rows, _ := conn.Query(ctx, `SELECT coalesce(wait_event_type, '') || ' ' || coalesce(wait_event, '') || ' ' ||
			                                   coalesce(state, '') || ' ' || left(query, 50)
			                            FROM pg_stat_activity WHERE datname = current_database()`)
			for rows.Next() {
				var l string
				_ = rows.Scan(&l)
				t.Log(l)
			}
			rows.Close()
			for range len(answers) {
				t.Logf("an enqueue was answered %d", <-answers)
			}
			t.Fatal("the two enqueues never both waited for pending_jobs' lock")
		}
		time.Sleep(10 * time.Millisecond)
	}

	stopped := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		stopped <- a.Stop(sctx, true)
	}()
	select {
	case err := <-stopped:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Stop with the database stuck: %v, want the deadline's error", err)
		}
	case <-time.After(15 * time.Second):
		_ = holder.Rollback(ctx) // lets the statements, and Stop, finish
		<-stopped
		t.Fatal("Stop waited for the database past its deadline")
	}
	for range 2 {
		if st := <-answers; st >= 200 && st < 300 {
			t.Fatalf("a cancelled enqueue was answered %d", st)
		}
	}
	if err := holder.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM jobs`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d jobs written by cancelled enqueues, want 0", n)
	}
}
