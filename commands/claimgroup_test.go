package commands_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/events"
	"github.com/spooled-go/spooled/internal/metrics"
	"github.com/spooled-go/spooled/internal/testdb"
	"github.com/spooled-go/spooled/queries"
)

// TestClaimMultiDealsInOrder: one coalesced claim statement deals the
// queue's next jobs to its requests in their order, each getting at most
// its limit and its registered worker's remaining max_concurrency (shared
// in order between that worker's requests), and the queue's concurrency
// cap bounds the whole pick.
func TestClaimMultiDealsInOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	batch := make([]commands.NewJob, 10)
	for i := range batch {
		batch[i] = commands.NewJob{QueueName: "multi", Payload: payload(i)}
	}
	res, err := e.svc.EnqueueBulk(e.ctx, e.actor, batch)
	if err != nil {
		t.Fatal(err)
	}
	w1, err := e.svc.RegisterWorker(e.ctx, e.actor, commands.NewWorker{QueueName: "multi", Hostname: "h1", MaxConcurrency: ptr(3)})
	if err != nil {
		t.Fatal(err)
	}
	q := queries.New()
	claim := func(workers []string, limits []int32) []queries.JobClaimMultiRow {
		t.Helper()
		p := queries.JobClaimMultiParams{Now: e.clk.Now(), OrganizationID: e.actor.OrgID, QueueName: "multi",
			WorkerIds: workers, Limits: limits}
		for _, w := range workers {
			p.LeaseSecs = append(p.LeaseSecs, 30)
			p.Actors = append(p.Actors, events.ActorWorker(w))
		}
		rows, err := q.ClaimMultiPipelined(e.ctx, e.pool,
			queries.ClaimLocksMultiParams{OrganizationID: e.actor.OrgID, QueueName: "multi", WorkerIds: workers}, p)
		if err != nil {
			t.Fatal(err)
		}
		return rows
	}
	type got struct {
		req    int32
		worker string
		id     uuid.UUID
	}
	check := func(rows []queries.JobClaimMultiRow, want []got) {
		t.Helper()
		if len(rows) != len(want) {
			t.Fatalf("%d jobs dealt, want %d: %+v", len(rows), len(want), rows)
		}
		// Each request's jobs share a lease id of their own.
		leases, reqOf := map[int32]uuid.UUID{}, map[uuid.UUID]int32{}
		for i, r := range rows {
			if r.Req != want[i].req || *r.AssignedWorkerID != want[i].worker || r.ID != want[i].id ||
				r.ClaimActor != events.ActorWorker(want[i].worker) {
				t.Fatalf("row %d: request %d, worker %s, job %s; want request %d, worker %s, job %s",
					i, r.Req, *r.AssignedWorkerID, r.ID, want[i].req, want[i].worker, want[i].id)
			}
			if r.LeaseID == nil {
				t.Fatalf("row %d: no lease id", i)
			}
			if l, ok := leases[r.Req]; ok && l != *r.LeaseID {
				t.Fatalf("row %d: request %d's jobs have leases %s and %s", i, r.Req, l, *r.LeaseID)
			}
			if q, ok := reqOf[*r.LeaseID]; ok && q != r.Req {
				t.Fatalf("row %d: requests %d and %d share lease %s", i, q, r.Req, *r.LeaseID)
			}
			leases[r.Req], reqOf[*r.LeaseID] = *r.LeaseID, r.Req
		}
	}
	job := func(i int) uuid.UUID { return res[i].ID }

	// w1 may hold 3: its first request gets 2, its second the 1 left.
	rows := claim([]string{w1.ID, "free", w1.ID, "other"}, []int32{2, 3, 2, 10})
	check(rows, []got{
		{1, w1.ID, job(0)}, {1, w1.ID, job(1)},
		{2, "free", job(2)}, {2, "free", job(3)}, {2, "free", job(4)},
		{3, w1.ID, job(5)},
		{4, "other", job(6)}, {4, "other", job(7)}, {4, "other", job(8)}, {4, "other", job(9)},
	})
	var claimed int64
	if err := e.pool.QueryRow(e.ctx, `SELECT count(*) FROM job_events WHERE event_type = 'job.claimed'`).Scan(&claimed); err != nil || claimed != 10 {
		t.Fatalf("%d job.claimed events, %v; want 10", claimed, err)
	}

	// The queue's cap bounds the pick: 10 leased already, cap 12 leaves 2,
	// which go to the first request.
	for i := range batch {
		batch[i] = commands.NewJob{QueueName: "multi", Payload: payload(100 + i)}
	}
	if res, err = e.svc.EnqueueBulk(e.ctx, e.actor, batch); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.ConfigureQueue(e.ctx, e.actor, "multi", commands.QueueSettings{MaxConcurrentJobs: ptr(12)}); err != nil {
		t.Fatal(err)
	}
	rows = claim([]string{"a", "b"}, []int32{5, 5})
	check(rows, []got{{1, "a", job(0)}, {1, "a", job(1)}})
}

// TestCoalescedClaimsUnderLoad: many workers claiming one queue at once
// through the coalescing service take every job exactly once, and a
// registered worker never holds more than its max_concurrency.
func TestCoalescedClaimsUnderLoad(t *testing.T) {
	t.Parallel()
	pool := testdb.NewWith(t, testdb.Options{MaxConns: 24})
	svc := commands.New(pool, nil, nil, testDefaults, commands.WithGroupCommit(2))
	t.Cleanup(func() { _ = svc.Close(context.Background()) })
	e := &env{t: t, ctx: t.Context(), pool: pool, svc: svc}
	e.actor = e.newOrg("crowd")
	const jobs = 600
	for b := 0; b < jobs/commands.MaxBulkJobs; b++ {
		batch := make([]commands.NewJob, commands.MaxBulkJobs)
		for i := range batch {
			batch[i] = commands.NewJob{QueueName: "crowd", Payload: payload(b*commands.MaxBulkJobs + i)}
		}
		if _, err := svc.EnqueueBulk(e.ctx, e.actor, batch); err != nil {
			t.Fatal(err)
		}
	}
	capped, err := svc.RegisterWorker(e.ctx, e.actor, commands.NewWorker{QueueName: "crowd", Hostname: "capped", MaxConcurrency: ptr(7)})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		seen = map[uuid.UUID]string{}
		wg   sync.WaitGroup
	)
	workers := []string{capped.ID, capped.ID, capped.ID}
	for i := range 13 {
		workers = append(workers, "w"+string(rune('a'+i)))
	}
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				got, err := svc.Claim(e.ctx, e.actor.OrgID, commands.ClaimRequest{QueueName: "crowd", WorkerID: w, Limit: 9})
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, j := range got {
					if prev, dup := seen[j.ID]; dup {
						t.Errorf("job %s claimed by %s and %s", j.ID, prev, w)
					}
					if *j.AssignedWorkerID != w {
						t.Errorf("job %s handed to %s is leased to %s", j.ID, w, *j.AssignedWorkerID)
					}
					seen[j.ID] = w
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	held := 0
	for _, w := range seen {
		if w == capped.ID {
			held++
		}
	}
	if held > 7 {
		t.Errorf("the capped worker holds %d leases, max_concurrency 7", held)
	}
	if want := jobs; len(seen) != want {
		t.Errorf("%d jobs claimed, want %d", len(seen), want)
	}
}

// panickyObserver panics in ClaimStatementRan while armed is above zero:
// a claim that panics after its statement, with its connection already
// back in the pool.
type panickyObserver struct {
	*metrics.Metrics
	armed atomic.Int32
}

func (o *panickyObserver) ClaimStatementRan(queue string, leased bool) {
	if o.armed.Add(-1) >= 0 {
		panic("claim observer")
	}
	o.Metrics.ClaimStatementRan(queue, leased)
}

// TestClaimGroupOutlivesAPanic: a claim that panics still gives its
// queue's statement slot back. With two slots per queue, two panics used
// to leave every later claim of the queue queued for good.
func TestClaimGroupOutlivesAPanic(t *testing.T) {
	t.Parallel()
	pool := testdb.NewWith(t, testdb.Options{})
	obs := &panickyObserver{Metrics: metrics.New(nil, nil, nil)}
	svc := commands.New(pool, nil, nil, testDefaults, commands.WithGroupCommit(1), commands.WithObserver(obs))
	t.Cleanup(func() { _ = svc.Close(context.Background()) })
	e := &env{t: t, ctx: t.Context(), pool: pool, svc: svc}
	e.actor = e.newOrg("panicky")
	for i := range 3 {
		e.enqueue(e.actor, commands.NewJob{QueueName: "p", Payload: payload(i)})
	}
	claim := func() ([]queries.Job, error) {
		return svc.Claim(e.ctx, e.actor.OrgID, commands.ClaimRequest{QueueName: "p", WorkerID: "w"})
	}

	obs.armed.Store(2)
	for i := range 2 {
		func() {
			defer func() {
				if recover() == nil {
					t.Fatalf("claim %d did not panic", i+1)
				}
			}()
			_, _ = claim()
		}()
	}
	done := make(chan error, 1)
	go func() {
		jobs, err := claim()
		if err == nil && len(jobs) != 1 {
			err = fmt.Errorf("%d jobs, want 1", len(jobs))
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a claim after two that panicked did not return: the queue's slots were never given back")
	}
}

// TestClaimAfterCloseIsRefused: once the service is closing, a claim (from
// a handler that outlived the HTTP drain) is refused with ErrStopping and
// runs no statement.
func TestClaimAfterCloseIsRefused(t *testing.T) {
	t.Parallel()
	counter := testdb.NewStatementCounter()
	pool := testdb.NewWith(t, testdb.Options{Tracer: counter})
	svc := commands.New(pool, nil, nil, testDefaults, commands.WithGroupCommit(1))
	e := &env{t: t, ctx: t.Context(), pool: pool, svc: svc}
	e.actor = e.newOrg("closing")
	id := e.enqueue(e.actor, commands.NewJob{QueueName: "c", Payload: payload(1)})
	if err := svc.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	counter.Take()
	jobs, err := svc.Claim(e.ctx, e.actor.OrgID, commands.ClaimRequest{QueueName: "c", WorkerID: "w"})
	if !errors.Is(err, commands.ErrStopping) || len(jobs) != 0 {
		t.Fatalf("claim after Close: %d jobs, %v; want ErrStopping", len(jobs), err)
	}
	if n := claimStatements(counter.Take()); n != 0 {
		t.Fatalf("%d claim statements ran after Close", n)
	}
	if st := e.get(e.actor.OrgID, id).Status; st != "pending" {
		t.Fatalf("job %s after the refused claim, want pending", st)
	}
}
