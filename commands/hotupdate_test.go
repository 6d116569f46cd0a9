package commands_test

import (
	"testing"
	"time"

	"github.com/spooled-go/spooled/commands"
)

// TestClaimAndCompleteAreHOTUpdates: no index of jobs covers a column a
// claim or a complete changes, so both updates can be heap-only (no new
// index entries; sql/0010_jobs_hot_updates.sql). One that does would make
// every update non-HOT. An update is HOT only while the row's page has room
// for the new version, and old versions are pruned only when no snapshot
// can see them: the test's few small jobs share one page that holds all
// their versions, so every update must be HOT whatever runs beside it.
// Postgres reports its table statistics after a delay, so the test polls.
func TestClaimAndCompleteAreHOTUpdates(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const n = 5
	e.enqueueBulk("hot", 0, n)
	jobs := e.claim("hot", "w", n)
	if len(jobs) != n {
		t.Fatalf("claimed %d of %d", len(jobs), n)
	}
	for _, j := range jobs {
		if err := e.svc.Complete(e.ctx, e.actor.OrgID, commands.LeaseRef{JobID: j.ID.String(), WorkerID: "w", LeaseID: j.LeaseID}, nil); err != nil {
			t.Fatal(err)
		}
	}

	updates, hot := tableUpdates(e, "jobs", 2*n)
	if updates != 2*n {
		t.Fatalf("jobs saw %d updates, want %d (a claim and a complete per job)", updates, 2*n)
	}
	if hot != updates {
		t.Fatalf("%d of %d updates of jobs were HOT, want all", hot, updates)
	}
}

// TestWholePageClaimsStayHOT: a claim of 100 jobs updates every row of
// their pages in one statement, before any old version can be pruned, so
// each page must hold its rows' next versions too (fillfactor 50 in
// sql/0012_jobs_fillfactor_50.sql, a third since 0015). A claim lengthens
// each row (the lease columns fill in), so at 50 not quite all fit: 88 of
// 100 here, against 40 at fillfactor 70.
func TestWholePageClaimsStayHOT(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const n = 100
	for b := range 3 {
		e.enqueueBulk("pages", b*n, n)
	}
	if jobs := e.claim("pages", "w", n); len(jobs) != n {
		t.Fatalf("claimed %d of %d", len(jobs), n)
	}
	updates, hot := tableUpdates(e, "jobs", n)
	if updates != n {
		t.Fatalf("jobs saw %d updates, want %d (one claim per job)", updates, n)
	}
	if hot < updates*8/10 {
		t.Fatalf("%d of %d claim updates of jobs were HOT, want at least 80%%", hot, updates)
	}
}

// TestWholePagesStayHOTThroughComplete: a claim and then a complete of 100
// jobs, while an older snapshot (a report, an ANALYZE of the hot tables)
// keeps every version of their rows from being pruned: each page must hold
// three versions of its rows, enqueued, claimed and completed
// (sql/0015_jobs_fillfactor_33.sql). At fillfactor 50 the completes found
// their pages full and left them: 104 of these 200 updates were HOT.
func TestWholePagesStayHOTThroughComplete(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const n = 100
	for b := range 3 {
		e.enqueueBulk("pages", b*n, n)
	}

	// The old snapshot: a repeatable-read transaction has taken its
	// snapshot once it has run a statement.
	old, err := e.pool.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Rollback(e.ctx)
	if _, err := old.Exec(e.ctx, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"); err != nil {
		t.Fatal(err)
	}
	var seen int
	if err := old.QueryRow(e.ctx, "SELECT count(*) FROM jobs").Scan(&seen); err != nil {
		t.Fatal(err)
	}
	if seen != 3*n {
		t.Fatalf("the old snapshot sees %d jobs, want %d", seen, 3*n)
	}

	jobs := e.claim("pages", "w", n)
	if len(jobs) != n {
		t.Fatalf("claimed %d of %d", len(jobs), n)
	}
	items := make([]commands.CompleteItem, len(jobs))
	for i, j := range jobs {
		items[i] = commands.CompleteItem{Ref: commands.LeaseRef{JobID: j.ID.String(), WorkerID: "w", LeaseID: j.LeaseID}}
	}
	refused, err := e.svc.CompleteBatch(e.ctx, e.actor.OrgID, items)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range refused {
		if r != nil {
			t.Fatalf("complete %d refused: %v", i, r)
		}
	}

	updates, hot := tableUpdates(e, "jobs", 2*n)
	if updates != 2*n {
		t.Fatalf("jobs saw %d updates, want %d (a claim and a complete per job)", updates, 2*n)
	}
	if hot < updates*8/10 {
		t.Fatalf("%d of %d updates of jobs were HOT, want at least 80%%", hot, updates)
	}
}

// TestLeaseRenewalsAreHOT: a renewal changes only lease_expires_at, which
// no index of processing_jobs covers (sql/0014_processing_lease_index.sql),
// so every renewal can be heap-only. Workers of long jobs renew all the
// time; with an index on the expiry each renewal put a new entry into every
// index of the table.
func TestLeaseRenewalsAreHOT(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const n, renewals = 3, 4
	e.enqueueBulk("renew", 0, n)
	jobs := e.claim("renew", "w", n)
	if len(jobs) != n {
		t.Fatalf("claimed %d of %d", len(jobs), n)
	}
	for r := range renewals {
		// A new expiry each round: an update that leaves an indexed value
		// as it was can be HOT even under an index on it.
		for _, j := range jobs {
			if _, err := e.svc.RenewLease(e.ctx, e.actor.OrgID, commands.LeaseRef{JobID: j.ID.String(), WorkerID: "w", LeaseID: j.LeaseID}, 60+r); err != nil {
				t.Fatal(err)
			}
		}
	}
	updates, hot := tableUpdates(e, "processing_jobs", n*renewals)
	if updates != n*renewals {
		t.Fatalf("processing_jobs saw %d updates, want %d (one per renewal)", updates, n*renewals)
	}
	if hot != updates {
		t.Fatalf("%d of %d lease renewals were HOT, want all", hot, updates)
	}
}

// tableUpdates reads how many updates a table of e's schema has seen and
// how many of them were HOT, once at least want are counted (or after
// 30 s): Postgres reports table statistics when backends go idle, after a
// delay.
func tableUpdates(e *env, table string, want int64) (updates, hot int64) {
	e.t.Helper()
	eventually(30*time.Second, func() bool {
		err := e.pool.QueryRow(e.ctx, `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
			WHERE relid = $1::regclass`, table).Scan(&updates, &hot)
		if err != nil {
			e.t.Fatal(err)
		}
		return updates >= want
	})
	return updates, hot
}
