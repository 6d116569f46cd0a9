package commands_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/events"
	"github.com/spooled-go/spooled/internal/testdb"
)

// idleBarrier lets claimers that found nothing wait for each other. When the
// last one arrives, nobody holds a lease and nobody is mid-call, so onAllIdle
// may move the shared clock without expiring a lease under a worker's feet.
type idleBarrier struct {
	mu        sync.Mutex
	cond      *sync.Cond
	n         int
	waiting   int
	gen       int
	stop      bool
	onAllIdle func() (stop bool)
}

func newIdleBarrier(n int, onAllIdle func() bool) *idleBarrier {
	b := &idleBarrier{n: n, onAllIdle: onAllIdle}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// idle reports an empty claim and blocks until every claimer has done so (or
// the run stops). It returns whether the claimer should stop.
func (b *idleBarrier) idle() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stop {
		return true
	}
	b.waiting++
	if b.waiting == b.n {
		b.stop = b.onAllIdle()
		b.waiting = 0
		b.gen++
		b.cond.Broadcast()
		return b.stop
	}
	for gen := b.gen; gen == b.gen && !b.stop; {
		b.cond.Wait()
	}
	return b.stop
}

func (b *idleBarrier) abort() {
	b.mu.Lock()
	b.stop = true
	b.cond.Broadcast()
	b.mu.Unlock()
}

func (b *idleBarrier) stopped() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stop
}

// trackedJob is what the test did to one job, kept under the test's mutex.
type trackedJob struct {
	maxRetries int
	retryCount int
	holder     string    // worker holding the lease, "" when released
	claimers   []string  // worker of every claim, in order
	events     []string  // event types the test's transitions must have appended
	terminal   string    // "completed" or "deadletter" once finished
	readyAt    time.Time // not claimable before (the backoff of the last failure)
}

// TestTenThousandJobsEightClaimers drives 10,000 jobs through 8 concurrent
// claimers that complete or fail at random, then checks that every job ended
// in exactly one terminal state, the hot tables are empty, and the log holds
// exactly the transitions the test performed, in order, without gaps and
// without two live leases on one job. It does not run in parallel with the
// other tests, so its timing means something.
func TestTenThousandJobsEightClaimers(t *testing.T) {
	const (
		total   = 10000
		perBulk = 100
		workers = 8
		queue   = "load"
	)
	e := newEnvWith(t, testdb.Options{MaxConns: 20})
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Minute)
	defer cancel()
	org := e.actor.OrgID
	// Another tenant's jobs in a queue of the same name must never be claimed.
	other := e.newOrg("globex")
	e.enqueue(other, commands.NewJob{QueueName: queue})

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	started := time.Now()

	jobs := make(map[uuid.UUID]*trackedJob, total)
	for b := 0; b < total/perBulk; b++ {
		batch := make([]commands.NewJob, perBulk)
		for i := range batch {
			batch[i] = commands.NewJob{QueueName: queue, Payload: payload(b*perBulk + i), MaxRetries: ptr(i % 3)}
		}
		res, err := e.svc.EnqueueBulk(ctx, e.actor, batch)
		if err != nil {
			t.Fatalf("bulk %d: %v", b, err)
		}
		for i, r := range res {
			if r.Err != nil || !r.Created {
				t.Fatalf("bulk %d item %d: %+v", b, i, r)
			}
			if jobs[r.ID] != nil {
				t.Fatalf("bulk %d item %d: id %s returned twice", b, i, r.ID)
			}
			jobs[r.ID] = &trackedJob{maxRetries: i % 3, events: []string{events.JobEnqueued}}
		}
	}
	enqueued := time.Since(started)

	var (
		mu       sync.Mutex // guards every trackedJob and finished
		finished int
		claims   atomic.Int64
		attempts atomic.Int64
		rounds   int
	)
	barrier := newIdleBarrier(workers, func() bool {
		mu.Lock()
		done := finished
		mu.Unlock()
		if done == total {
			return true
		}
		// Every claimer came back empty, so nothing may be ready now.
		now := *e.clk.Now()
		var ready int64
		if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM pending_jobs
			WHERE organization_id = $1 AND queue_name = $2 AND run_at <= $3`, org, queue, now).Scan(&ready); err != nil {
			t.Errorf("count ready jobs: %v", err)
			return true
		}
		if ready != 0 {
			t.Errorf("every claimer came back empty, but %d jobs are ready at %s", ready, now)
			return true
		}
		rounds++
		if rounds > 10 {
			t.Errorf("%d jobs still unfinished after %d clock advances", total-done, rounds-1)
			return true
		}
		// Backoff is at most 4 minutes here (max_retries <= 2).
		e.clk.Advance(2 * time.Hour)
		return false
	})

	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			worker := fmt.Sprintf("worker-%d", w)
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			fail := func(format string, args ...any) {
				t.Errorf(worker+": "+format, args...)
				barrier.abort()
			}
			for !barrier.stopped() {
				got, err := e.svc.Claim(ctx, org, commands.ClaimRequest{
					QueueName: queue, WorkerID: worker, Limit: 1 + rng.IntN(20), LeaseSecs: 30,
				})
				if err != nil {
					fail("claim: %v", err)
					return
				}
				claims.Add(1)
				if len(got) == 0 {
					if barrier.idle() {
						return
					}
					continue
				}
				// The clock moves only while every claimer is idle, so this is
				// the time the claim ran at.
				claimedAt := *e.clk.Now()
				mu.Lock()
				for _, j := range got {
					tj := jobs[j.ID]
					switch {
					case tj == nil:
						mu.Unlock()
						fail("claimed job %s, which this tenant never enqueued", j.ID)
						return
					case tj.holder != "":
						mu.Unlock()
						fail("claimed job %s while %s holds it", j.ID, tj.holder)
						return
					case tj.terminal != "":
						mu.Unlock()
						fail("claimed job %s after it was %s", j.ID, tj.terminal)
						return
					case claimedAt.Before(tj.readyAt):
						mu.Unlock()
						fail("claimed job %s at %s, before its backoff ends at %s", j.ID, claimedAt, tj.readyAt)
						return
					case j.Status != "processing" || j.AssignedWorkerID == nil || *j.AssignedWorkerID != worker ||
						j.LeaseID == nil || int(j.RetryCount) != tj.retryCount:
						mu.Unlock()
						fail("claimed job %s looks wrong: status %s worker %v lease %v retry_count %d (want %d)",
							j.ID, j.Status, j.AssignedWorkerID, j.LeaseID, j.RetryCount, tj.retryCount)
						return
					}
					tj.holder = worker
					tj.claimers = append(tj.claimers, worker)
					tj.events = append(tj.events, events.JobClaimed)
				}
				mu.Unlock()

				for _, j := range got {
					attempts.Add(1)
					tj := jobs[j.ID]
					ref := commands.LeaseRef{JobID: j.ID.String(), WorkerID: worker, LeaseID: j.LeaseID}
					if rng.IntN(10) < 7 {
						if err := e.svc.Complete(ctx, org, ref, payload(w)); err != nil {
							fail("complete %s: %v", j.ID, err)
							return
						}
						// Released only after the call: a failed job is not
						// claimable again before the clock moves, and the clock
						// moves only when every claimer is idle.
						mu.Lock()
						tj.holder = ""
						tj.events = append(tj.events, events.JobCompleted)
						tj.terminal = "completed"
						finished++
						mu.Unlock()
						continue
					}
					now := *e.clk.Now()
					out, err := e.svc.Fail(ctx, org, ref, "boom", true)
					if err != nil {
						fail("fail %s: %v", j.ID, err)
						return
					}
					mu.Lock()
					tj.holder = ""
					tj.events = append(tj.events, events.JobFailed)
					if wantRetry := tj.retryCount < tj.maxRetries; out.WillRetry != wantRetry {
						mu.Unlock()
						fail("fail %s with retry_count %d of %d: will_retry=%v", j.ID, tj.retryCount, tj.maxRetries, out.WillRetry)
						return
					}
					if out.WillRetry {
						tj.events = append(tj.events, events.JobRetryScheduled)
						backoff := time.Duration(1<<tj.retryCount) * time.Minute
						tj.retryCount++
						tj.readyAt = now.Add(backoff)
						if out.RetryCount != tj.retryCount || out.RetryAt == nil || !out.RetryAt.Equal(now.Add(backoff)) {
							mu.Unlock()
							fail("fail %s: outcome %+v (retry at %v), want retry_count %d at %s",
								j.ID, out, out.RetryAt, tj.retryCount, now.Add(backoff))
							return
						}
					} else {
						tj.events = append(tj.events, events.JobDeadLettered)
						tj.terminal = "deadletter"
						finished++
					}
					mu.Unlock()
				}
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(started)
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("10,000 jobs: enqueue %s, all done in %s (%.0f jobs/s); %d claim calls, %d attempts, %d clock advances",
		enqueued.Round(time.Millisecond), elapsed.Round(time.Millisecond), total/elapsed.Seconds(),
		claims.Load(), attempts.Load(), rounds)
	if finished != total {
		t.Fatalf("test finished %d of %d jobs", finished, total)
	}

	// The read model: exactly one row per job, in the terminal state the test
	// drove it to, with its version at the newest event's sequence.
	// Rows are collected before any assertion: a t.Fatalf with a result set
	// open would keep its connection and hang the pool's Close in cleanup.
	type jobRow struct {
		ID          uuid.UUID
		Status      string
		RetryCount  int
		Version     int
		Worker      *string
		LeaseClosed bool
	}
	rows, err := e.pool.Query(ctx, `SELECT id, status, retry_count, version, assigned_worker_id,
		lease_id IS NULL AND lease_expires_at IS NULL FROM jobs WHERE organization_id = $1`, org)
	if err != nil {
		t.Fatal(err)
	}
	final, err := pgx.CollectRows(rows, pgx.RowToStructByPos[jobRow])
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[uuid.UUID]bool, total)
	statusCount := map[string]int{}
	for _, r := range final {
		tj := jobs[r.ID]
		switch {
		case tj == nil:
			t.Fatalf("read model holds job %s the test never enqueued", r.ID)
		case seen[r.ID]:
			t.Fatalf("read model holds job %s twice", r.ID)
		case r.Status != tj.terminal:
			t.Fatalf("job %s is %s, want %s", r.ID, r.Status, tj.terminal)
		case r.RetryCount != tj.retryCount:
			t.Fatalf("job %s has retry_count %d, want %d", r.ID, r.RetryCount, tj.retryCount)
		case r.Version != len(tj.events):
			t.Fatalf("job %s has version %d, want %d (one per event)", r.ID, r.Version, len(tj.events))
		case r.Worker == nil || *r.Worker != tj.claimers[len(tj.claimers)-1]:
			t.Fatalf("job %s was last assigned to %v, want %s", r.ID, r.Worker, tj.claimers[len(tj.claimers)-1])
		case !r.LeaseClosed:
			t.Fatalf("job %s is %s but still shows a lease", r.ID, r.Status)
		}
		seen[r.ID] = true
		statusCount[r.Status]++
	}
	if len(seen) != total {
		t.Fatalf("read model holds %d jobs, want %d", len(seen), total)
	}
	t.Logf("final states: %v", statusCount)
	if n := e.scalar(`SELECT count(*) FROM pending_jobs WHERE organization_id = $1`, org); n != 0 {
		t.Fatalf("%d pending_jobs rows left", n)
	}
	if n := e.scalar(`SELECT count(*) FROM processing_jobs WHERE organization_id = $1`, org); n != 0 {
		t.Fatalf("%d processing_jobs rows left", n)
	}
	if n := e.scalar(`SELECT count(*) FROM pending_jobs WHERE organization_id = $1`, other.OrgID); n != 1 {
		t.Fatalf("the other tenant's job left pending_jobs (%d rows)", n)
	}

	// The log: per job, exactly the transitions performed, sequence 1..n, and
	// never two claims without a completion or failure between them.
	type eventRow struct {
		ID     uuid.UUID
		Seq    int
		Type   string
		Worker string
	}
	evRows, err := e.pool.Query(ctx, `SELECT stream_id::uuid, stream_seq, event_type, coalesce(data->>'worker_id', '')
		FROM job_events WHERE organization_id = $1 AND stream_type = 'job'
		ORDER BY stream_id, stream_seq, position`, org)
	if err != nil {
		t.Fatal(err)
	}
	logRows, err := pgx.CollectRows(evRows, pgx.RowToStructByPos[eventRow])
	if err != nil {
		t.Fatal(err)
	}
	logged := make(map[uuid.UUID][]string, total)
	loggedWorkers := make(map[uuid.UUID][]string, total)
	for _, r := range logRows {
		if r.Seq != len(logged[r.ID])+1 {
			t.Fatalf("job %s: event %s has sequence %d after %d events", r.ID, r.Type, r.Seq, len(logged[r.ID]))
		}
		logged[r.ID] = append(logged[r.ID], r.Type)
		if r.Type == events.JobClaimed {
			loggedWorkers[r.ID] = append(loggedWorkers[r.ID], r.Worker)
		}
	}
	if len(logged) != total {
		t.Fatalf("log has %d job streams, want %d", len(logged), total)
	}
	var totalEvents int
	for id, tj := range jobs {
		got := logged[id]
		totalEvents += len(got)
		if !slices.Equal(got, tj.events) {
			t.Fatalf("job %s log:\n got %v\nwant %v", id, got, tj.events)
		}
		if !slices.Equal(loggedWorkers[id], tj.claimers) {
			t.Fatalf("job %s claimed by %v in the log, by %v in the test", id, loggedWorkers[id], tj.claimers)
		}
		leased := false
		for _, typ := range got {
			switch typ {
			case events.JobClaimed:
				if leased {
					t.Fatalf("job %s log %v: claimed twice without a release", id, got)
				}
				leased = true
			case events.JobCompleted, events.JobFailed:
				if !leased {
					t.Fatalf("job %s log %v: %s without a lease", id, got, typ)
				}
				leased = false
			}
		}
		if leased {
			t.Fatalf("job %s log %v ends under a lease", id, got)
		}
	}
	t.Logf("log: %d job events", totalEvents)

	// events.JobHistory (the partition-pruned read) agrees on a sample.
	n := 0
	for id, tj := range jobs {
		if n++; n > 100 {
			break
		}
		e.wantHistory(org, id, tj.events...)
	}
}
