package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spooled-go/spooled/internal/app"
	"github.com/spooled-go/spooled/internal/config"
)

const adminKey = "bench-admin-key-not-secret"

// schemaURL is dbURL whose connections use schema.
func schemaURL(dbURL, schema string) (string, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// freshSchema drops and recreates schema in the bench database.
func freshSchema(ctx context.Context, dbURL, schema string) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, fmt.Sprintf("DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s", pgx.Identifier{schema}.Sanitize(), pgx.Identifier{schema}.Sanitize()))
	return err
}

func dropSchema(dbURL, schema string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
}

// server is one Spooled server running in this process (app.New + Start),
// on its own freshly migrated schema, with an enterprise organization.
type server struct {
	app    *app.App
	schema string
	dbURL  string
	base   string
	key    string
	sql    *pgxpool.Pool // the bench's own connection to the same schema
	stop   context.CancelFunc
	// closing silences the server's log while it stops (its "NATS
	// disconnected" warning at shutdown is expected).
	closing atomic.Bool
}

type quietHandler struct {
	slog.Handler
	off *atomic.Bool
}

func (h quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return !h.off.Load() && h.Handler.Enabled(ctx, l)
}

func (h quietHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return quietHandler{h.Handler.WithAttrs(a), h.off}
}

func (h quietHandler) WithGroup(n string) slog.Handler {
	return quietHandler{h.Handler.WithGroup(n), h.off}
}

func startServer(ctx context.Context, o options, schema string) (*server, error) {
	dbURL := o.db
	if err := freshSchema(ctx, dbURL, schema); err != nil {
		return nil, fmt.Errorf("schema %s: %w", schema, err)
	}
	surl, err := schemaURL(dbURL, schema)
	if err != nil {
		return nil, err
	}
	cfg := config.Default()
	cfg.DatabaseURL = surl
	cfg.Host, cfg.Port, cfg.MetricsPort = "127.0.0.1", 0, 0
	cfg.AdminAPIKey = adminKey
	cfg.RateLimitRequestsPerSecond = 0 // no per-client limit
	if o.jobConns >= 0 {
		cfg.DatabaseJobConnections = int32(o.jobConns)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &server{schema: schema, dbURL: dbURL}
	log := slog.New(quietHandler{slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}), &s.closing})

	// Every goroutine the server starts inherits the label side=server, so
	// the CPU profile can be split into server and bench-client work.
	var sctx context.Context
	sctx, s.stop = context.WithCancel(context.Background())
	pprof.Do(sctx, pprof.Labels("side", "server"), func(lctx context.Context) {
		s.app, err = app.New(lctx, cfg, log, app.Options{})
		if err == nil {
			if err = s.app.Start(lctx); err != nil {
				_ = s.app.Stop(context.Background(), true)
			}
		}
	})
	if err != nil {
		s.stop()
		return nil, fmt.Errorf("start server: %w", err)
	}
	s.base = "http://" + s.app.Addr()
	if s.sql, err = pgxpool.New(ctx, surl); err != nil {
		s.close()
		return nil, err
	}
	if err := s.enterpriseOrg(ctx); err != nil {
		s.close()
		return nil, fmt.Errorf("organization: %w", err)
	}
	return s, nil
}

// enterpriseOrg creates the benchmark's organization on the enterprise plan
// and keeps its key in s.key.
func (s *server) enterpriseOrg(ctx context.Context) error {
	key, err := s.createOrg(ctx, "Benchmark", "bench-org", "enterprise")
	if err != nil {
		return err
	}
	s.key = key
	return nil
}

// tenantKeys creates n more organizations on plan (enterprise unless
// -tenants-plan says otherwise), as enterpriseOrg does, and returns their
// keys: the tenants of scenario 1d and of -sustained-tenants.
func (s *server) tenantKeys(ctx context.Context, n int, plan string) ([]string, error) {
	keys := make([]string, n)
	for i := range keys {
		var err error
		if keys[i], err = s.createOrg(ctx, "Tenant "+strconv.Itoa(i), "bench-tenant-"+strconv.Itoa(i), plan); err != nil {
			return nil, fmt.Errorf("tenant %d: %w", i, err)
		}
	}
	return keys, nil
}

// createOrg creates an organization on plan through the admin route and
// lifts its request rate in custom_limits before its key is first used
// (keys are cached with their limits). It returns the key.
func (s *server) createOrg(ctx context.Context, name, slug, plan string) (string, error) {
	a := newAPI(s.base, "", 1)
	defer a.close()
	var out struct {
		Organization struct {
			ID string `json:"id"`
		} `json:"organization"`
		APIKey struct {
			Key string `json:"key"`
		} `json:"api_key"`
	}
	err := a.post(ctx, "/api/v1/admin/organizations",
		map[string]string{"name": name, "slug": slug, "plan_tier": plan}, &out, "X-Admin-Key", adminKey)
	if err != nil {
		return "", err
	}
	tag, err := s.sql.Exec(ctx, `UPDATE organizations SET custom_limits = $1::jsonb WHERE id = $2`,
		`{"rate_limit_requests_per_second": 1000000, "rate_limit_burst": 1000000}`, out.Organization.ID)
	if err != nil {
		return "", err
	}
	if tag.RowsAffected() != 1 {
		return "", fmt.Errorf("custom_limits: organization %s not found", out.Organization.ID)
	}
	return out.APIKey.Key, nil
}

func (s *server) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s.closing.Store(true)
	if s.app != nil {
		_ = s.app.Stop(ctx, true)
	}
	s.stop()
	if s.sql != nil {
		s.sql.Close()
	}
	dropSchema(s.dbURL, s.schema)
}

// ---- scenario 1: enqueue ---------------------------------------------------

func runSingleEnqueue(ctx context.Context, s *server, clients int, warm, dur time.Duration) loopResult {
	a := newAPI(s.base, s.key, clients)
	defer a.close()
	return closedLoop(ctx, clients, warm, dur, func(ctx context.Context, g, i int) (int, error) {
		return 1, a.post(ctx, "/api/v1/jobs", singleBody(g, i), nil)
	})
}

// runSingleEnqueueTenants is scenario 1d: 1a's clients, each enqueueing
// for an organization of its own (client g uses keys[g%len(keys)]), as a
// server shared by many teams sees single enqueues.
func runSingleEnqueueTenants(ctx context.Context, s *server, keys []string, clients int, warm, dur time.Duration) loopResult {
	a := newAPI(s.base, "", clients)
	defer a.close()
	auth := make([]string, len(keys))
	for i, k := range keys {
		auth[i] = "Bearer " + k
	}
	return closedLoop(ctx, clients, warm, dur, func(ctx context.Context, g, i int) (int, error) {
		return 1, a.post(ctx, "/api/v1/jobs", singleBody(g, i), nil, "Authorization", auth[g%len(auth)])
	})
}

// tenantsRun is scenario 1d and what it cost.
type tenantsRun struct {
	loopResult
	CPU        cpuTimes
	Statements uint64  // group-commit statements of the run
	Requests   float64 // and the requests they served
}

// runTenants creates 1d's organizations on s (on -tenants-plan) and runs 1d.
func runTenants(ctx context.Context, s *server, o options) (tenantsRun, error) {
	keys, err := s.tenantKeys(ctx, o.clients, o.tenantsPlan)
	if err != nil {
		return tenantsRun{}, fmt.Errorf("tenants: %w", err)
	}
	st0, rq0 := s.groupCommits("enqueue")
	cpu0 := readCPU()
	run := tenantsRun{loopResult: runSingleEnqueueTenants(ctx, s, keys, o.clients, o.warm, o.enqueueDur)}
	run.CPU = readCPU().sub(cpu0)
	st1, rq1 := s.groupCommits("enqueue")
	run.Statements, run.Requests = st1-st0, rq1-rq0
	return run, nil
}

func singleBody(g, i int) []byte {
	return []byte(`{"queue_name":"bench-single","payload":{"g":` + strconv.Itoa(g) + `,"n":` + strconv.Itoa(i) + `}}`)
}

// runHTTPFloor is scenario 1c: the clients of 1a send the same request
// without credentials, which the server answers 401 before any database
// work. Its rate is what HTTP alone allows on this machine, server and
// clients sharing the cores: no single enqueue can go faster, whatever
// the database does.
func runHTTPFloor(ctx context.Context, s *server, clients int, warm, dur time.Duration) loopResult {
	a := newAPI(s.base, "", clients)
	defer a.close()
	return closedLoop(ctx, clients, warm, dur, func(ctx context.Context, g, i int) (int, error) {
		err := a.post(ctx, "/api/v1/jobs", singleBody(g, i), nil)
		var he *httpError
		switch {
		case errors.As(err, &he) && he.Status == http.StatusUnauthorized:
			return 1, nil
		case err == nil:
			return 0, errors.New("an enqueue without credentials was accepted")
		default:
			return 0, err
		}
	})
}

// bulkBody is a POST /jobs/bulk body of n small jobs.
func bulkBody(queue string, first, n int, extra func(i int) string) []byte {
	b := make([]byte, 0, 64+n*32)
	b = append(b, `{"queue_name":"`...)
	b = append(b, queue...)
	b = append(b, `","jobs":[`...)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"payload":{"n":`...)
		b = strconv.AppendInt(b, int64(first+i), 10)
		if extra != nil {
			b = append(b, extra(first+i)...)
		}
		b = append(b, `}}`...)
	}
	return append(b, `]}`...)
}

type bulkAnswer struct {
	SuccessCount int `json:"success_count"`
	FailureCount int `json:"failure_count"`
}

func postBulk(ctx context.Context, a *api, body []byte, want int) error {
	var out bulkAnswer
	if err := a.post(ctx, "/api/v1/jobs/bulk", body, &out); err != nil {
		return err
	}
	if out.SuccessCount != want {
		return fmt.Errorf("bulk: %d of %d created (%d failed)", out.SuccessCount, want, out.FailureCount)
	}
	return nil
}

func runBulkEnqueue(ctx context.Context, s *server, clients int, warm, dur time.Duration) loopResult {
	a := newAPI(s.base, s.key, clients)
	defer a.close()
	return closedLoop(ctx, clients, warm, dur, func(ctx context.Context, g, i int) (int, error) {
		return 100, postBulk(ctx, a, bulkBody("bench-bulk", (g<<24)+i*100, 100, nil), 100)
	})
}

// ---- scenario 2: end to end ------------------------------------------------

// insertBulk inserts total jobs into queue with bulk calls of 100 from
// clients goroutines.
func insertBulk(ctx context.Context, a *api, queue string, total, clients int) (time.Duration, error) {
	batches := make(chan int, (total+99)/100)
	for first := 0; first < total; first += 100 {
		batches <- first
	}
	close(batches)
	t0 := time.Now()
	var (
		wg   sync.WaitGroup
		once sync.Once
		ferr error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for first := range batches {
				n := min(100, total-first)
				if err := postBulk(ctx, a, bulkBody(queue, first, n, nil), n); err != nil {
					once.Do(func() { ferr = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(t0), ferr
}

type claimedJob struct {
	ID      string          `json:"id"`
	LeaseID string          `json:"lease_id"`
	Payload json.RawMessage `json:"payload"`
}

type claimAnswer struct {
	Jobs []claimedJob `json:"jobs"`
}

func claimBody(queue, worker string, limit, waitMS int) []byte {
	return []byte(`{"queue_name":"` + queue + `","worker_id":"` + worker + `","limit":` + strconv.Itoa(limit) +
		`,"wait_ms":` + strconv.Itoa(waitMS) + `}`)
}

func completeJob(ctx context.Context, a *api, worker string, j claimedJob) error {
	return a.post(ctx, "/api/v1/jobs/"+j.ID+"/complete", []byte(`{"worker_id":"`+worker+`","lease_id":"`+j.LeaseID+`"}`), nil)
}

type batchAnswer struct {
	Completed []string          `json:"completed"`
	Failed    []json.RawMessage `json:"failed"`
}

// completeBatch completes a claimed batch with one POST /api/v1/jobs/complete
// and returns how many the server completed.
func completeBatch(ctx context.Context, a *api, worker string, jobs []claimedJob) (int, error) {
	var b strings.Builder
	b.WriteString(`{"worker_id":"` + worker + `","jobs":[`)
	for i, j := range jobs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"job_id":"` + j.ID + `","lease_id":"` + j.LeaseID + `"}`)
	}
	b.WriteString(`]}`)
	var out batchAnswer
	if err := a.post(ctx, "/api/v1/jobs/complete", []byte(b.String()), &out); err != nil {
		return 0, err
	}
	if len(out.Failed) > 0 {
		return len(out.Completed), fmt.Errorf("%d of %d refused, first: %s", len(out.Failed), len(jobs), out.Failed[0])
	}
	return len(out.Completed), nil
}

type workOffResult struct {
	Workers  int
	Done     int64
	Elapsed  time.Duration
	Claims   int64
	Errors   int64
	FirstErr string
	TimedOut bool
}

func (r workOffResult) rate() float64 { return float64(r.Done) / r.Elapsed.Seconds() }

// workOff runs workers that claim up to 100 jobs at a time and complete
// them, until total jobs are completed or limit passes. With batch false a
// worker completes each job with its own POST /jobs/{id}/complete, as the
// SDK workers do; with batch true it completes the claimed batch with one
// POST /jobs/complete.
func workOff(ctx context.Context, a *api, queue string, total int64, workers, waitMS int, limit time.Duration, batch bool) workOffResult {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var (
		done, claims, errs atomic.Int64
		firstErr           atomic.Value
		wg                 sync.WaitGroup
		last               atomic.Int64
	)
	fail := func(err error) {
		errs.Add(1)
		firstErr.CompareAndSwap(nil, err.Error())
	}
	t0 := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := "bench-worker-" + strconv.Itoa(w)
			body := claimBody(queue, id, 100, waitMS)
			for ctx.Err() == nil && done.Load() < total {
				var out claimAnswer
				if err := a.post(ctx, "/api/v1/jobs/claim", body, &out); err != nil {
					if ctx.Err() == nil {
						fail(err)
						time.Sleep(10 * time.Millisecond)
					}
					continue
				}
				claims.Add(1)
				if batch && len(out.Jobs) > 0 {
					n, err := completeBatch(ctx, a, id, out.Jobs)
					if err != nil && ctx.Err() == nil {
						fail(err)
					}
					if d := done.Add(int64(n)); d >= total && d-int64(n) < total {
						last.Store(int64(time.Since(t0)))
						cancel()
					}
					continue
				}
				for _, j := range out.Jobs {
					if err := completeJob(ctx, a, id, j); err != nil {
						if ctx.Err() == nil {
							fail(err)
						}
						continue
					}
					if done.Add(1) == total {
						last.Store(int64(time.Since(t0)))
						cancel() // idle long-polls stop waiting
					}
				}
			}
		}()
	}
	wg.Wait()
	r := workOffResult{Workers: workers, Done: done.Load(), Claims: claims.Load(), Errors: errs.Load()}
	if v, ok := firstErr.Load().(string); ok {
		r.FirstErr = v
	}
	r.Elapsed = time.Duration(last.Load())
	if r.Done < total {
		r.TimedOut, r.Elapsed = true, time.Since(t0)
	}
	return r
}

type probeRow struct {
	Workers int
	Rate    float64
	Done    int64
	Errors  int64
}

// probeWorkers gives each worker count two fresh backlogs of jobs jobs,
// each on a queue of its own, and works each off for half of window, so
// every count meets a deep backlog as the end-to-end run does. The counts
// run forth and then back (8, 16, 32, 64, 64, 32, 16, 8), and a count's
// rate is the mean of its two: this machine's speed drifts by a fifth
// within minutes, and a single pass in one order handed the probe to
// whichever count ran in the fastest minute. It returns the counts' rates,
// in the order of counts.
func probeWorkers(ctx context.Context, s *server, counts []int, jobs, inserters int, window time.Duration, batch bool) ([]probeRow, error) {
	a := newAPI(s.base, s.key, slices.Max(counts)+inserters)
	defer a.close()
	rows := make([]probeRow, len(counts))
	order := make([]int, 0, 2*len(counts))
	for i := range counts {
		order = append(order, i)
	}
	for i := range counts {
		order = append(order, len(counts)-1-i)
	}
	for pass, i := range order {
		if ctx.Err() != nil {
			return nil, errBudget
		}
		w := counts[i]
		queue := fmt.Sprintf("probe-%d-%d", w, pass)
		if _, err := insertBulk(ctx, a, queue, jobs, inserters); err != nil {
			return nil, err
		}
		r := workOff(ctx, a, queue, int64(jobs), w, 250, window/2, batch)
		rows[i].Workers = w
		rows[i].Rate += r.rate() / 2
		rows[i].Done += r.Done
		rows[i].Errors += r.Errors
		progress("  probe: %3d workers: %s jobs/s (%d errors, %d of %d jobs done)", w, num(r.rate()), r.Errors, r.Done, jobs)
	}
	return rows, nil
}

// probe runs probeWorkers on a server of its own, for the work-off that
// completes each job with its own call or, with batch, the one that
// completes each claimed batch in one call.
func probe(ctx context.Context, o options, what string, counts []int, jobs int, batch bool) ([]probeRow, error) {
	if len(counts) == 0 {
		return nil, fmt.Errorf("probe, %s: no worker counts to try", what)
	}
	progress("end to end, %s: worker-count probe, each count on two backlogs of %d jobs for %s each, forth and back: %v", what, jobs, o.probeWindow/2, counts)
	s, err := startServer(ctx, o, "bench_probe")
	if err != nil {
		return nil, err
	}
	defer s.close()
	rows, err := probeWorkers(ctx, s, counts, jobs, o.inserters, o.probeWindow, batch)
	if err != nil {
		return nil, fmt.Errorf("probe, %s: %w", what, err)
	}
	return rows, nil
}

// bestCount is the worker count of the probe's fastest row.
func bestCount(rows []probeRow) int {
	best := rows[0]
	for _, p := range rows {
		if p.Rate > best.Rate {
			best = p
		}
	}
	return best.Workers
}

// probeLine lists a probe's rows for the results file.
func probeLine(rows []probeRow) string {
	parts := make([]string, len(rows))
	for i, p := range rows {
		parts[i] = fmt.Sprintf("%d workers %s jobs/s", p.Workers, num(p.Rate))
	}
	return strings.Join(parts, ", ")
}

// ---- scenario 3: sustained -------------------------------------------------

type sustainedResult struct {
	Producers, Workers int
	TargetRate         float64
	Window             time.Duration
	Enqueued           int64 // creates answered 2xx inside the window
	Started            int64 // jobs received by workers inside the window
	Completed          int64 // completes answered inside the window
	Backlog            int64 // enqueued - started at the end of the window
	Errors             int64
	FirstErr           string
	Lat                pcts // enqueue (create sent) to start (claim answer received)
	EnqLat             pcts // create sent to create answered: the enqueue's share of Lat
	Claims             claimCounts
	WaitMS             int
}

// runSustained paces producers at rate jobs/s for dur while workers
// long-poll (wait_ms) and complete; the enqueue-to-start latency is the
// claim answer's arrival minus the create's send time carried in the
// payload (one process, one clock).
func runSustained(ctx context.Context, s *server, producers, workers int, rate float64, dur time.Duration, waitMS int) sustainedResult {
	return runSustainedTenants(ctx, s, []string{s.key}, producers, workers, rate, dur, waitMS)
}

// runSustainedTenants is runSustained with producers and workers spread over
// the organizations of keys: producer p and worker w act for keys[p%n] and
// keys[w%n], each organization with its own queue.
func runSustainedTenants(ctx context.Context, s *server, keys []string, producers, workers int, rate float64, dur time.Duration, waitMS int) sustainedResult {
	apis := make([]*api, len(keys))
	for i, k := range keys {
		apis[i] = newAPI(s.base, k, (producers+workers)/len(keys)+1)
		defer apis[i].close()
	}
	res := sustainedResult{Producers: producers, Workers: workers, TargetRate: rate, Window: dur, WaitMS: waitMS}
	t0 := time.Now()
	end := t0.Add(dur)
	pctx, pcancel := context.WithDeadline(ctx, end)
	defer pcancel()
	wctx, wcancel := context.WithDeadline(ctx, end.Add(time.Duration(waitMS)*time.Millisecond+5*time.Second))
	defer wcancel()
	var (
		enq, started, completed, errs atomic.Int64
		firstErr                      atomic.Value
		mu                            sync.Mutex
		lats, enqLats                 []time.Duration
		pwg, wwg                      sync.WaitGroup
	)
	fail := func(err error) {
		errs.Add(1)
		firstErr.CompareAndSwap(nil, err.Error())
	}
	// Workers.
	for w := range workers {
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			id := "sustained-worker-" + strconv.Itoa(w)
			a := apis[w%len(apis)]
			body := claimBody("sustained", id, 100, waitMS)
			local := make([]time.Duration, 0, 1<<14)
			defer func() { mu.Lock(); lats = append(lats, local...); mu.Unlock() }()
			for wctx.Err() == nil && time.Now().Before(end) {
				var out claimAnswer
				err := a.post(wctx, "/api/v1/jobs/claim", body, &out)
				got := time.Now()
				if err != nil {
					if wctx.Err() == nil {
						fail(err)
						time.Sleep(10 * time.Millisecond)
					}
					continue
				}
				for _, j := range out.Jobs {
					var p struct {
						T int64 `json:"t"`
					}
					if json.Unmarshal(j.Payload, &p) == nil && p.T > 0 && got.Before(end) {
						started.Add(1)
						if len(local) < maxSamples/workers {
							local = append(local, got.Sub(time.Unix(0, p.T)))
						}
					}
				}
				for _, j := range out.Jobs {
					if err := completeJob(wctx, a, id, j); err != nil {
						if wctx.Err() == nil {
							fail(err)
						}
						continue
					}
					if time.Now().Before(end) {
						completed.Add(1)
					}
				}
			}
		}()
	}
	// Producers: each sends at rate/producers, on a schedule (open loop:
	// a late producer catches up rather than slowing the offered load).
	per := time.Duration(float64(time.Second) * float64(producers) / rate)
	for p := range producers {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			a := apis[p%len(apis)]
			next := t0.Add(per * time.Duration(p) / time.Duration(producers))
			local := make([]time.Duration, 0, 1<<12)
			defer func() { mu.Lock(); enqLats = append(enqLats, local...); mu.Unlock() }()
			for i := 0; pctx.Err() == nil; i++ {
				if d := time.Until(next); d > 0 {
					select {
					case <-pctx.Done():
						return
					case <-time.After(d):
					}
				}
				next = next.Add(per)
				sent := time.Now()
				if !sent.Before(end) {
					return
				}
				body := []byte(`{"queue_name":"sustained","payload":{"t":` + strconv.FormatInt(sent.UnixNano(), 10) + `}}`)
				if err := a.post(pctx, "/api/v1/jobs", body, nil); err != nil {
					if pctx.Err() == nil {
						fail(err)
					}
					continue
				}
				if answered := time.Now(); answered.Before(end) {
					enq.Add(1)
					if len(local) < maxSamples/producers {
						local = append(local, answered.Sub(sent))
					}
				}
			}
		}()
	}
	pwg.Wait()
	// Workers stop claiming at the end of the window; the last long-polls
	// answer by their wait_ms, or are cut at the worker deadline.
	wcancel()
	wwg.Wait()
	res.Enqueued, res.Started, res.Completed, res.Errors = enq.Load(), started.Load(), completed.Load(), errs.Load()
	res.Backlog = res.Enqueued - res.Started
	if v, ok := firstErr.Load().(string); ok {
		res.FirstErr = v
	}
	res.Lat = percentiles(lats)
	res.EnqLat = percentiles(enqLats)
	res.Claims = s.claimCounts()
	return res
}

// claimCounts are the server's claim counters (spooled_claim_statements_total,
// spooled_claim_probes_total and spooled_claim_waits_covered_total, all
// queues): how many claim statements and probes the jobs cost, how many
// found nothing, and how many waiting claims read nothing at all.
type claimCounts struct {
	Leased, EmptyStatements, Ready, EmptyProbes, Covered float64
}

// perJob gives the counts per job started.
func (c claimCounts) perJob(jobs int64) string {
	n := max(float64(jobs), 1)
	return fmt.Sprintf("%.2f claim statements per job (%.2f of them leasing nothing), %.2f probes per job (%.2f finding the queue empty), %.2f waiting claims per job covered (no read)",
		(c.Leased+c.EmptyStatements)/n, c.EmptyStatements/n, (c.Ready+c.EmptyProbes)/n, c.EmptyProbes/n, c.Covered/n)
}

// groupCommits reads the server's spooled_group_commit_requests histogram
// for one kind: how many group-commit flushes ran and how many requests
// they gathered (the bench's one tenant makes each flush one statement).
func (s *server) groupCommits(kind string) (statements uint64, requests float64) {
	mfs, _ := s.app.MetricsRegistry().Gather() // partial on a collector's error, as in claimCounts
	for _, mf := range mfs {
		if mf.GetName() != "spooled_group_commit_requests" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == kind {
					statements += m.GetHistogram().GetSampleCount()
					requests += m.GetHistogram().GetSampleSum()
				}
			}
		}
	}
	return statements, requests
}

// groupCommitLine says how many requests a group-commit statement served.
func groupCommitLine(statements uint64, requests float64) string {
	return fmt.Sprintf("%s group-commit statements, %.1f requests each", num(float64(statements)), requests/max(float64(statements), 1))
}

func (s *server) claimCounts() claimCounts {
	var c claimCounts
	// Gather returns what it could collect along with any collector's
	// error (the scrape-time database gauges); the claim counters are in
	// memory, so the partial result is used.
	mfs, _ := s.app.MetricsRegistry().Gather()
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			outcome := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" {
					outcome = l.GetValue()
				}
			}
			v := m.GetCounter().GetValue()
			switch mf.GetName() + "/" + outcome {
			case "spooled_claim_statements_total/leased":
				c.Leased += v
			case "spooled_claim_statements_total/empty":
				c.EmptyStatements += v
			case "spooled_claim_probes_total/ready":
				c.Ready += v
			case "spooled_claim_probes_total/empty":
				c.EmptyProbes += v
			case "spooled_claim_waits_covered_total/":
				c.Covered += v
			}
		}
	}
	return c
}

// round is one alternated pair of runs: ours, and the figure it is held
// against (River's overall jobs per second against our batch end to end,
// the commit ceiling's commits per second against single enqueues).
type round struct{ ours, peer float64 }

// runRounds adds o.rounds-1 rounds to the first (2f and 4c), each River's
// run and then ours on fresh schemas, while the budget leaves time for
// them and the scenarios after.
func runRounds(ctx context.Context, r *report, st riverSettings) error {
	o := r.o
	r.rounds = []round{{ours: r.batch.overall(), peer: r.riv.overallRate()}}
	return extraRounds(ctx, o, "rounds", 3*time.Minute, func(i int) error {
		progress("round %d of %d: River, then our batch end to end", i, o.rounds)
		riv, err := runRiver(ctx, o.db, "bench_river", o.jobs, st, remaining(ctx, 3*time.Minute))
		if err != nil {
			return fmt.Errorf("river, round %d: %w", i, err)
		}
		var ours batchRun
		if err := batchEndToEnd(ctx, o, r.batchWorkers, "", &ours); err != nil {
			return fmt.Errorf("round %d: %w", i, err)
		}
		r.rounds = append(r.rounds, round{ours: ours.overall(), peer: riv.overallRate()})
		progress("  River %s jobs/s, ours %s jobs/s: %.2f×", num(riv.overallRate()), num(ours.overall()), ours.overall()/riv.overallRate())
		return nil
	})
}

// extraRounds runs rounds 2 to o.rounds of what, each while at least need
// of the time budget is left before it (saying how many ran when it stops
// for the budget); an error from run ends them.
func extraRounds(ctx context.Context, o options, what string, need time.Duration, run func(i int) error) error {
	for i := 2; i <= o.rounds; i++ {
		if remainingRaw(ctx) < need {
			progress("%s: %d of %d run, the rest left out for the time budget", what, i-1, o.rounds)
			return nil
		}
		if err := run(i); err != nil {
			return err
		}
	}
	return nil
}

// medianRatio is the median of the rounds' ratios (ours ÷ peer).
func medianRatio(rs []round) float64 {
	ratios := make([]float64, len(rs))
	for i, rd := range rs {
		ratios[i] = rd.ours / rd.peer
	}
	return median(ratios)
}

// runSingleRounds adds o.rounds-1 rounds to the first commit ceiling (5)
// and single enqueues (1a), each the ceiling and then single enqueues on a
// fresh schema, while the budget leaves time for the scenarios after
// (about five minutes here).
func runSingleRounds(ctx context.Context, r *report) error {
	o := r.o
	r.singleRounds = []round{{ours: r.single.rate(), peer: r.ceiling.rate()}}
	return extraRounds(ctx, o, "ceiling and single-enqueue rounds", 7*time.Minute, func(i int) error {
		progress("round %d of %d: the commit ceiling, then single enqueues", i, o.rounds)
		c, err := runCeiling(ctx, o.db, "bench_ceiling", o.clients, o.warm, o.ceilingDur)
		if err != nil {
			return fmt.Errorf("ceiling, round %d: %w", i, err)
		}
		s, err := startServer(ctx, o, "bench_single")
		if err != nil {
			return err
		}
		single := runSingleEnqueue(ctx, s, o.clients, o.warm, o.enqueueDur)
		s.close()
		if single.Errors > 0 {
			r.notes = append(r.notes, fmt.Sprintf("single-enqueue round %d left out: %d errors, the first: %s", i, single.Errors, single.FirstErr))
			return nil
		}
		r.singleRounds = append(r.singleRounds, round{ours: single.rate(), peer: c.rate()})
		progress("  ceiling %s commits/s, single enqueues %s jobs/s: %.2f", num(c.rate()), num(single.rate()), single.rate()/c.rate())
		return nil
	})
}

// runModerateRounds adds o.rounds-1 runs of the moderate load (3a) to the
// first, each on a fresh schema, while the budget leaves time for the
// scenarios after (3b and the statement costs, about a minute here).
func runModerateRounds(ctx context.Context, r *report) {
	o := r.o
	r.moderateP50s = []time.Duration{r.sustained.Lat.P50}
	err := extraRounds(ctx, o, "moderate-load rounds", o.sustainedDur+2*time.Minute, func(i int) error {
		progress("round %d of %d: sustained at %s jobs/s, %s", i, o.rounds, num(o.moderateRate), o.sustainedDur)
		s, err := startServer(ctx, o, "bench_sustained")
		if err != nil {
			return fmt.Errorf("moderate-load round %d did not start: %w", i, err)
		}
		res := runSustained(ctx, s, o.producers, r.workers, o.moderateRate, o.sustainedDur, o.sustainedWaitMS)
		s.close()
		if res.Errors > 0 || res.Lat.N == 0 {
			r.notes = append(r.notes, fmt.Sprintf("moderate-load round %d left out: %d errors (%s), %d jobs started", i, res.Errors, res.FirstErr, res.Lat.N))
			return nil
		}
		r.moderateP50s = append(r.moderateP50s, res.Lat.P50)
		progress("  enqueue-to-start p50 %s p95 %s p99 %s", ms(res.Lat.P50), ms(res.Lat.P95), ms(res.Lat.P99))
		return nil
	})
	if err != nil {
		r.notes = append(r.notes, err.Error())
	}
}

// median is the median of xs (which it leaves unsorted).
func median[T float64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
