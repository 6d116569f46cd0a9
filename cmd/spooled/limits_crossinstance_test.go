package main_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spooled-go/spooled/internal/testdb"
)

// TestCrossInstanceQueueLimits runs two server processes on one schema and
// drives a queue's limits from 16 HTTP claimers split across them: the
// queue's max_concurrent_jobs holds (seen by the claimers and sampled from
// the database), and its rate limit holds without starving the queue. The
// limits are enforced by the claim statement under a lock on the queue's
// row, so they hold across instances, not per instance.
func TestCrossInstanceQueueLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildServer(t)
	pool, dbURL := testdb.NewWithURL(t, testdb.Options{})
	// Each process runs its own embedded NATS: no claim here waits for a
	// hint. The per-client limit is off: 16 claimers share one key.
	env := []string{"DATABASE_URL=" + dbURL, "RATE_LIMIT_REQUESTS_PER_SECOND=0", "DATABASE_MAX_CONNECTIONS=20"}
	procs := []*serverProc{startServer(t, bin, "a", env...), startServer(t, bin, "b", env...)}

	// An enterprise organization whose plan request rate (500/s per
	// instance) is lifted before its key is first used: the claimers make
	// thousands of requests a second and the plan's rate is not what this
	// test is about.
	st, out := callAPI(procs[0].base, "", "POST", "/api/v1/admin/organizations",
		map[string]any{"name": "Limits", "slug": "limits-" + randHex(4), "plan_tier": "enterprise"})
	org, _ := out["organization"].(map[string]any)
	apiKey, _ := out["api_key"].(map[string]any)
	orgID, _ := org["id"].(string)
	key, _ := apiKey["key"].(string)
	if st != 201 || key == "" || orgID == "" {
		t.Fatalf("create organization: %d %v", st, out)
	}
	if _, err := pool.Exec(context.Background(), `UPDATE organizations SET custom_limits =
		'{"rate_limit_requests_per_second": 1000000, "rate_limit_burst": 1000000}' WHERE id = $1`, orgID); err != nil {
		t.Fatal(err)
	}

	t.Run("concurrency cap", func(t *testing.T) { limConcurrencyCap(t, pool, procs, orgID, key) })
	t.Run("rate limit", func(t *testing.T) { limRateLimit(t, pool, procs, orgID, key) })

	stopped := time.Now()
	for _, p := range procs {
		p.term(t)
	}
	for _, p := range procs {
		p.waitExit(t, 30*time.Second)
	}
	t.Logf("both processes exited %s after SIGTERM", time.Since(stopped).Round(time.Millisecond))
}

// limConcurrencyCap: max_concurrent_jobs 5, 300 jobs, 16 claimers (8 per
// process, claim limits 1 to 5) that each hold a job a few milliseconds
// and complete it. The claimers' own count of jobs held never passes 5:
// it rises when a claim answers (after the server committed the leases)
// and falls before the complete is sent (before the server releases
// them), so it never under-counts the server's. A sampler reads the
// queue's leases from the database meanwhile.
func limConcurrencyCap(t *testing.T, pool *pgxpool.Pool, procs []*serverProc, orgID, key string) {
	const (
		maxConc   = 5
		total     = 300
		claimers  = 16
		hold      = 3 * time.Millisecond
		maxRounds = 20000 // per claimer; the deadline ends a stuck run first
	)
	queue := "cap." + randHex(4)
	st, out := callAPI(procs[0].base, key, "PUT", "/api/v1/queues/"+queue+"/config", map[string]any{"max_concurrent_jobs": maxConc})
	if st != 200 || out["max_concurrent_jobs"] != float64(maxConc) {
		t.Fatalf("configure queue: %d %v", st, out)
	}
	limEnqueue(t, procs, key, queue, total)

	var (
		held, maxHeld, completed, claims, empty atomic.Int64
		seen                                    sync.Map
		errs                                    limErrors
		wg                                      sync.WaitGroup
	)
	deadline := time.Now().Add(90 * time.Second)
	stopSampling := make(chan struct{})
	sampled := make(chan [2]int64, 1) // max, samples
	go func() {
		var max, n int64
		defer func() { sampled <- [2]int64{max, n} }()
		for {
			select {
			case <-stopSampling:
				return
			default:
			}
			var c int64
			if err := pool.QueryRow(context.Background(),
				`SELECT count(*) FROM processing_jobs WHERE organization_id = $1 AND queue_name = $2`, orgID, queue).Scan(&c); err != nil {
				errs.add("sample: %v", err)
				return
			}
			n++
			if c > max {
				max = c
			}
			if n > 1_000_000 {
				return
			}
		}
	}()

	started := time.Now()
	for i := range claimers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := procs[i%len(procs)]
			limit := 1 + i%maxConc
			worker := fmt.Sprintf("cap-%s-%d", p.name, i)
			for round := 0; round < maxRounds && completed.Load() < total; round++ {
				if time.Now().After(deadline) {
					errs.add("%s: deadline with %d of %d jobs completed", worker, completed.Load(), total)
					return
				}
				st, out := callAPI(p.base, key, "POST", "/api/v1/jobs/claim",
					map[string]any{"queue_name": queue, "worker_id": worker, "limit": limit})
				if st != 200 {
					errs.add("%s: claim: %d %v", worker, st, out)
					return
				}
				jobs, _ := out["jobs"].([]any)
				claims.Add(1)
				if len(jobs) == 0 {
					empty.Add(1)
					continue
				}
				if len(jobs) > limit {
					errs.add("%s: claim with limit %d returned %d jobs", worker, limit, len(jobs))
				}
				now := held.Add(int64(len(jobs)))
				for m := maxHeld.Load(); now > m && !maxHeld.CompareAndSwap(m, now); m = maxHeld.Load() {
				}
				if now > maxConc {
					errs.add("%s: %d jobs held at once after a claim of %d, cap %d", worker, now, len(jobs), maxConc)
				}
				// Hold the jobs briefly, as a worker doing a little work.
				<-time.After(hold)
				for _, j := range jobs {
					m := j.(map[string]any)
					id, _ := m["id"].(string)
					if _, dup := seen.LoadOrStore(id, worker); dup {
						errs.add("%s: job %s claimed twice", worker, id)
					}
					held.Add(-1) // before the complete: the server's count falls after it
					st, out := callAPI(p.base, key, "POST", "/api/v1/jobs/"+id+"/complete",
						map[string]any{"worker_id": worker, "lease_id": m["lease_id"]})
					if st != 200 {
						errs.add("%s: complete %s: %d %v", worker, id, st, out)
						return
					}
					completed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(started)
	close(stopSampling)
	s := <-sampled
	errs.check(t, procs)

	t.Logf("concurrency cap %d: %d jobs completed in %s by %d claimers on 2 processes; %d claims (%d empty); "+
		"most jobs held at once: %d seen by the claimers, %d in processing_jobs (%d samples)",
		maxConc, completed.Load(), elapsed.Round(time.Millisecond), claimers, claims.Load(), empty.Load(), maxHeld.Load(), s[0], s[1])
	if completed.Load() != total {
		t.Fatalf("%d jobs completed, want %d", completed.Load(), total)
	}
	if maxHeld.Load() > maxConc || s[0] > maxConc {
		t.Fatalf("held at once: %d by the claimers, %d sampled; cap %d", maxHeld.Load(), s[0], maxConc)
	}
	// The load did press against the cap: without it, 16 claimers asking
	// for up to 5 each would hold far more.
	if maxHeld.Load() < maxConc-1 {
		t.Fatalf("at most %d jobs were held at once; the run never pressed the cap of %d", maxHeld.Load(), maxConc)
	}
	if s[1] < 10 {
		t.Fatalf("only %d samples of processing_jobs", s[1])
	}
	var done, leased int64
	if err := pool.QueryRow(context.Background(), `SELECT
		(SELECT count(*) FROM jobs WHERE organization_id = $1 AND queue_name = $2 AND status = 'completed'),
		(SELECT count(*) FROM processing_jobs WHERE organization_id = $1 AND queue_name = $2)`, orgID, queue).Scan(&done, &leased); err != nil {
		t.Fatal(err)
	}
	if done != total || leased != 0 {
		t.Fatalf("database: %d completed, %d leased; want %d and 0", done, leased, total)
	}
}

// limRateLimit: rate_limit 50/s and 400 jobs; 16 claimers (8 per process)
// claim up to 10 at a time as fast as they can for 5 s. The queue's bucket
// holds max(1, ceil(50/10)) = 5 tokens, so at most 5 + 250 jobs can be
// claimed in the window; the run must claim at most 1.1 × 250 and at least
// 0.8 × 250 (the limiter must not starve the queue either).
func limRateLimit(t *testing.T, pool *pgxpool.Pool, procs []*serverProc, orgID, key string) {
	const (
		rate      = 50
		window    = 5 * time.Second
		jobs      = 400
		claimers  = 16
		maxRounds = 100000 // per claimer; the window ends the run first
	)
	queue := "rate." + randHex(4)
	st, out := callAPI(procs[1].base, key, "PUT", "/api/v1/queues/"+queue+"/config", map[string]any{"rate_limit": rate})
	if st != 200 || out["rate_limit"] != float64(rate) {
		t.Fatalf("configure queue: %d %v", st, out)
	}
	limEnqueue(t, procs, key, queue, jobs)

	var (
		claimed, claims, empty atomic.Int64
		perProc                [2]atomic.Int64
		errs                   limErrors
		wg                     sync.WaitGroup
		lastMu                 sync.Mutex
		last                   time.Time
	)
	start := time.Now()
	end := start.Add(window)
	for i := range claimers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := procs[i%len(procs)]
			worker := fmt.Sprintf("rate-%s-%d", p.name, i)
			for round := 0; round < maxRounds && time.Now().Before(end); round++ {
				st, out := callAPI(p.base, key, "POST", "/api/v1/jobs/claim",
					map[string]any{"queue_name": queue, "worker_id": worker, "limit": 10})
				answered := time.Now()
				if st != 200 {
					errs.add("%s: claim: %d %v", worker, st, out)
					return
				}
				got, _ := out["jobs"].([]any)
				claims.Add(1)
				if len(got) == 0 {
					empty.Add(1)
					continue
				}
				claimed.Add(int64(len(got)))
				perProc[i%len(procs)].Add(int64(len(got)))
				lastMu.Lock()
				if answered.After(last) {
					last = answered
				}
				lastMu.Unlock()
			}
		}()
	}
	wg.Wait()
	errs.check(t, procs)
	elapsed := time.Since(start)
	n := claimed.Load()
	achieved := float64(n) / elapsed.Seconds()
	t.Logf("rate limit %d/s: %d jobs claimed in %s (%.1f/s; %d through a, %d through b; last claim answered at %s); %d claims, %d empty",
		rate, n, elapsed.Round(time.Millisecond), achieved, perProc[0].Load(), perProc[1].Load(),
		last.Sub(start).Round(time.Millisecond), claims.Load(), empty.Load())

	budget := float64(rate) * window.Seconds() // 250
	if float64(n) > 1.1*budget {
		t.Fatalf("%d jobs claimed in %s at %d/s: over 1.1 × %.0f", n, window, rate, budget)
	}
	// Starvation can only be judged when the claimers asked far more often
	// than the limiter should grant: on a machine too busy for that (each
	// claim slowed by other work), a low count says nothing about the
	// limiter. The upper bound above holds whatever the load.
	if attempts := float64(claims.Load()); attempts >= 3*budget {
		if float64(n) < 0.8*budget {
			t.Fatalf("%d jobs claimed in %s at %d/s from %.0f claims: under 0.8 × %.0f, the limiter starves the queue",
				n, window, rate, attempts, budget)
		}
	} else {
		t.Logf("only %.0f claims in the window (the machine is busy): starvation not judged", attempts)
	}
	if perProc[0].Load() == 0 || perProc[1].Load() == 0 {
		t.Fatalf("claims per process %d / %d: both must have claimed", perProc[0].Load(), perProc[1].Load())
	}

	// The database agrees: every job claimed once, and in no second of the
	// run (by the claims' own timestamps) much more than the bucket (5)
	// plus a second's rate (50) was claimed. The timestamps are their
	// transactions' start times, which may run slightly out of lock order,
	// so the bound gets the same 10% as the window's.
	var leased, worst int64
	if err := pool.QueryRow(context.Background(), `
		WITH c AS (SELECT started_at FROM jobs WHERE organization_id = $1 AND queue_name = $2 AND status = 'processing')
		SELECT (SELECT count(*) FROM c),
		       coalesce((SELECT max((SELECT count(*) FROM c c2 WHERE c2.started_at >= c1.started_at
		                                                       AND c2.started_at < c1.started_at + interval '1 second'))
		                 FROM c c1), 0)`, orgID, queue).Scan(&leased, &worst); err != nil {
		t.Fatal(err)
	}
	t.Logf("most jobs claimed in any 1 s: %d (bucket 5 + rate 50 = 55)", worst)
	if leased != n {
		t.Fatalf("database: %d jobs leased, the claimers got %d", leased, n)
	}
	if float64(worst) > 1.1*(5+rate) {
		t.Fatalf("%d jobs claimed within one second; the bucket allows %d", worst, 5+rate)
	}
}

// limEnqueue creates n jobs in queue with bulk requests of 100, alternating
// the processes.
func limEnqueue(t *testing.T, procs []*serverProc, key, queue string, n int) {
	t.Helper()
	for i := 0; i < n; i += 100 {
		batch := make([]map[string]any, min(100, n-i))
		for j := range batch {
			batch[j] = map[string]any{"payload": map[string]any{"n": i + j}}
		}
		st, out := callAPI(procs[(i/100)%len(procs)].base, key, "POST", "/api/v1/jobs/bulk",
			map[string]any{"queue_name": queue, "jobs": batch})
		if st != 200 || out["success_count"] != float64(len(batch)) {
			t.Fatalf("bulk enqueue: %d %v", st, out)
		}
	}
}

// limErrors collects failures from goroutines (which must not call
// t.Fatal); the first few are reported.
type limErrors struct {
	mu   sync.Mutex
	msgs []string
}

func (e *limErrors) add(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.msgs = append(e.msgs, fmt.Sprintf(format, args...))
}

// check fails t with the first failures and the servers' error logs.
func (e *limErrors) check(t *testing.T, procs []*serverProc) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.msgs) == 0 {
		return
	}
	var logs []string
	for _, p := range procs {
		for _, line := range strings.Split(p.logs(), "\n") {
			if strings.Contains(line, "level=ERROR") && len(logs) < 5 {
				logs = append(logs, p.name+": "+line)
			}
		}
	}
	t.Fatalf("%d failures, first: %s\nserver errors:\n%s", len(e.msgs), strings.Join(e.msgs[:min(5, len(e.msgs))], "; "), strings.Join(logs, "\n"))
}
