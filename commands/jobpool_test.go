package commands_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/internal/pgdb"
	"github.com/spooled-go/spooled/internal/testdb"
	"github.com/spooled-go/spooled/workers"
)

// jobPathStatements are the statements WithJobPool moves off the main pool.
// Single completes are group committed, so they run as JobCompleteBatch;
// a pipelined claim runs PlanPin, ClaimCapGate and ClaimLocksMulti, then
// JobClaimMulti or JobClaimOne.
var jobPathStatements = []string{
	"JobEnqueueBatch", "QueueClaimProbe", "PlanPin", "ClaimCapGate", "ClaimLocksMulti", "JobClaimOne", "JobClaimMulti",
	"JobComplete", "JobFail", "JobRenewLease", "JobCompleteBatch",
}

// TestJobPathRunsOnJobPool: with a job pool of one connection, sixteen
// workers enqueueing (single and bulk), claiming, renewing, failing and
// completing (single and batch) all finish, every job ends completed or
// dead-lettered as its worker decided, and every job statement ran on the
// job pool while the main pool ran none.
func TestJobPathRunsOnJobPool(t *testing.T) {
	t.Parallel()
	mainCount, jobCount := testdb.NewStatementCounter(), testdb.NewStatementCounter()
	pool, url := testdb.NewWithURL(t, testdb.Options{Tracer: mainCount})
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1
	cfg.AfterConnect = pgdb.RegisterUUID
	cfg.ConnConfig.Tracer = jobCount
	jobPool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(jobPool.Close)
	hub := workers.NewWakeups(nil)
	svc := commands.New(pool, nil, hub, testDefaults, commands.WithWaiter(hub, time.Minute),
		commands.WithGroupCommit(1), commands.WithJobPool(jobPool))
	t.Cleanup(func() { _ = svc.Close(context.Background()) })
	e := &env{t: t, ctx: t.Context(), pool: pool, svc: svc}
	e.actor = e.newOrg("narrow")
	mainCount.Take()
	jobCount.Take()

	const workersN, rounds = 16, 6
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, workersN)
	var failed atomic.Int64
	for w := range workersN {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- runNarrowWorker(ctx, svc, e.actor, fmt.Sprintf("w%d", w), rounds, &failed)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	// Each worker enqueued one single job and a bulk of three per round.
	total, dead := int64(workersN*rounds*4), failed.Load()
	if dead == 0 {
		t.Fatal("no worker failed a job: the test did not exercise JobFail")
	}
	if n := e.scalar(`SELECT count(*) FROM jobs WHERE status = 'completed'`); n != total-dead {
		t.Fatalf("%d jobs completed, want %d", n, total-dead)
	}
	if n := e.scalar(`SELECT count(*) FROM jobs WHERE status = 'deadletter'`); n != dead {
		t.Fatalf("%d jobs dead-lettered, want %d", n, dead)
	}
	onMain, onJobs := mainCount.Take(), jobCount.Take()
	for _, name := range jobPathStatements {
		if onMain[name] != 0 {
			t.Errorf("%s ran %d times on the main pool", name, onMain[name])
		}
	}
	for _, name := range []string{"JobEnqueueBatch", "QueueClaimProbe", "PlanPin", "JobFail", "JobRenewLease", "JobCompleteBatch"} {
		if onJobs[name] == 0 {
			t.Errorf("%s never ran on the job pool (job pool ran %v)", name, onJobs)
		}
	}
	if onJobs["JobClaimOne"]+onJobs["JobClaimMulti"] == 0 {
		t.Errorf("no claim ran on the job pool (job pool ran %v)", onJobs)
	}
}

// runNarrowWorker does, each round: one single enqueue and a bulk of three;
// claims up to four jobs; renews the first and completes it alone; fails
// the second without a retry (it is dead-lettered, counted in failed);
// completes the rest in one batch. Then it drains what other workers left.
func runNarrowWorker(ctx context.Context, svc *commands.Service, actor commands.Actor, id string, rounds int, failed *atomic.Int64) error {
	queue := "narrow"
	for r := range rounds {
		if _, err := svc.Enqueue(ctx, actor, []commands.NewJob{{QueueName: queue, Payload: payload(r)}}); err != nil {
			return fmt.Errorf("%s: enqueue: %w", id, err)
		}
		bulk := []commands.NewJob{{QueueName: queue, Payload: payload(r)}, {QueueName: queue, Payload: payload(r)}, {QueueName: queue, Payload: payload(r)}}
		if _, err := svc.EnqueueBulk(ctx, actor, bulk); err != nil {
			return fmt.Errorf("%s: bulk enqueue: %w", id, err)
		}
		jobs, err := svc.ClaimWait(ctx, actor.OrgID, commands.ClaimRequest{QueueName: queue, WorkerID: id, Limit: 4, LeaseSecs: 30}, time.Second)
		if err != nil {
			return fmt.Errorf("%s: claim: %w", id, err)
		}
		var batch []commands.CompleteItem
		for i, j := range jobs {
			ref := commands.LeaseRef{JobID: j.ID.String(), WorkerID: id, LeaseID: j.LeaseID}
			switch {
			case i == 0:
				if _, err := svc.RenewLease(ctx, actor.OrgID, ref, 60); err != nil {
					return fmt.Errorf("%s: renew: %w", id, err)
				}
				if err := svc.Complete(ctx, actor.OrgID, ref, nil); err != nil {
					return fmt.Errorf("%s: complete: %w", id, err)
				}
			case i == 1:
				if _, err := svc.Fail(ctx, actor.OrgID, ref, "refused", false); err != nil {
					return fmt.Errorf("%s: fail: %w", id, err)
				}
				failed.Add(1)
			default:
				batch = append(batch, commands.CompleteItem{Ref: ref})
			}
		}
		if len(batch) > 0 {
			refused, err := svc.CompleteBatch(ctx, actor.OrgID, batch)
			if err != nil {
				return fmt.Errorf("%s: complete batch: %w", id, err)
			}
			if err := errors.Join(refused...); err != nil {
				return fmt.Errorf("%s: complete batch refused: %w", id, err)
			}
		}
	}
	// Drain what other workers' claims left. The queue is shared, so a
	// worker stops when a whole-queue count says nothing is left for anyone.
	for {
		jobs, err := svc.ClaimWait(ctx, actor.OrgID, commands.ClaimRequest{QueueName: queue, WorkerID: id, Limit: 10, LeaseSecs: 30}, 200*time.Millisecond)
		if err != nil {
			return fmt.Errorf("%s: drain claim: %w", id, err)
		}
		if len(jobs) == 0 {
			var left int64
			if err := svc.Pool().QueryRow(ctx, `SELECT count(*) FROM jobs WHERE status IN ('pending', 'scheduled', 'processing')`).Scan(&left); err != nil {
				return fmt.Errorf("%s: count left: %w", id, err)
			}
			if left == 0 {
				return nil
			}
			if ctx.Err() != nil {
				return fmt.Errorf("%s: %d jobs left at the deadline: %w", id, left, ctx.Err())
			}
			continue
		}
		items := make([]commands.CompleteItem, len(jobs))
		for i, j := range jobs {
			items[i] = commands.CompleteItem{Ref: commands.LeaseRef{JobID: j.ID.String(), WorkerID: id, LeaseID: j.LeaseID}}
		}
		refused, err := svc.CompleteBatch(ctx, actor.OrgID, items)
		if err != nil {
			return fmt.Errorf("%s: drain complete: %w", id, err)
		}
		if err := errors.Join(refused...); err != nil {
			return fmt.Errorf("%s: drain complete refused: %w", id, err)
		}
	}
}
