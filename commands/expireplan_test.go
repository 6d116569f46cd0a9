package commands_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/internal/testdb"
	"github.com/spooled-go/spooled/queries"
)

// TestLeaseReadsOfTheReaper: the reaper's two reads of processing_jobs in
// JobExpireLeases, in the generic plan the server runs after a few calls.
// Releasing an offline worker's leases reads that worker's leases alone
// (through processing_jobs_worker_idx), never the table: no index covers
// the expiry any more (sql/0014_processing_lease_index.sql), and as one OR
// over a single scan the generic plan read every lease of every worker.
// The sweep takes exactly the expired leases, oldest first, up to its
// limit. Both run for real inside a transaction that is rolled back.
func TestLeaseReadsOfTheReaper(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const mine, others = 4, 12
	e.enqueueBulk("reap", 0, mine+others)
	if got := len(e.claim("reap", "offline", mine)); got != mine {
		t.Fatalf("claimed %d of %d", got, mine)
	}
	// The others' leases expire in turn, a second apart.
	for i := range others {
		_, err := e.svc.Claim(e.ctx, e.actor.OrgID, commands.ClaimRequest{
			QueueName: "reap", WorkerID: fmt.Sprintf("w%d", i), Limit: 1, LeaseSecs: 60 + i,
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	tx := e.genericPlan("expire_generic", queries.JobExpireLeasesSQL)
	leases := func(where string) (n int) {
		t.Helper()
		if err := tx.QueryRow(e.ctx, "SELECT count(*) FROM processing_jobs WHERE "+where).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// A worker's release.
	release := fmt.Sprintf("EXECUTE expire_generic(NULL, 'offline', 10000, '%s', 'gone', 'gone for good', 'system:worker_health', 'worker_offline')", e.actor.OrgID)
	plan := testdb.Explain(t, e.ctx, tx, "ANALYZE, FORMAT JSON", release)
	if left := leases("worker_id = 'offline'"); left != 0 {
		t.Fatalf("the release left %d of the worker's %d leases", left, mine)
	}
	if left := leases("true"); left != others {
		t.Fatalf("the release took other workers' leases: %d of %d left", left, others)
	}
	usedWorkerIndex := false
	for _, n := range plan.Plan.Nodes() {
		if n.Relation != "processing_jobs" {
			continue
		}
		if n.NodeType == "Seq Scan" && n.Loops > 0 {
			t.Errorf("releasing one worker's %d leases scanned all of processing_jobs:\n%s", mine, plan.Raw)
		}
		usedWorkerIndex = usedWorkerIndex || n.IndexName == "processing_jobs_worker_idx"
	}
	if !usedWorkerIndex {
		t.Errorf("the release did not read processing_jobs_worker_idx:\n%s", plan.Raw)
	}

	// The sweep, at a moment when five of the others' leases have expired,
	// with a limit of three: the three that expired first.
	at := e.clk.Now().Add(64*time.Second + 500*time.Millisecond).Format(time.RFC3339Nano)
	sweep := fmt.Sprintf("EXECUTE expire_generic('%s', NULL, 3, NULL, 'expired', 'expired for good', 'system:lease_reaper', 'lease_expired')", at)
	testdb.Explain(t, e.ctx, tx, "ANALYZE, FORMAT JSON", sweep)
	if left := leases("true"); left != others-3 {
		t.Fatalf("the sweep left %d leases, want %d", left, others-3)
	}
	if gone := leases("worker_id IN ('w0', 'w1', 'w2')"); gone != 0 {
		t.Fatalf("the sweep passed by %d of the three oldest expired leases", gone)
	}
}
