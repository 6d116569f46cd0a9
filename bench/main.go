// Command bench measures this server's throughput and latency side by side
// with River on the same Postgres, in one run, and writes the table to
// RESULTS.md (run it from bench/: `make bench` does).
//
// The server runs in this process (app.New / Start of
// github.com/spooled-go/spooled, through the replace directive in go.mod);
// the workers and producers are real HTTP clients on 127.0.0.1.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spooled-go/spooled/internal/app"
	"github.com/spooled-go/spooled/internal/config"
)

type options struct {
	// gogc is the collector's target in force: the server binary's
	// runtime default (app.TuneRuntime) unless GOGC is set. It is the
	// process's, so River's runs have it too.
	gogc                        int
	db, out, profile            string
	ceilingDur, enqueueDur      time.Duration
	floorDur                    time.Duration
	bulkDur, warm, sustainedDur time.Duration
	budget                      time.Duration
	jobs, probeJobs, workers    int
	probeCounts                 []int
	probeBatchJobs              int
	probeBatchCounts            []int
	clients, bulkClients        int
	inserters, producers        int
	sustainedRate, moderateRate float64
	sustainedWaitMS             int
	riverWorkers                int
	riverCooldown, riverPoll    time.Duration
	riverPool                   int
	jobConns                    int
	riverOnly, e2eOnly          bool
	sustainedOnly, singleOnly   bool
	sustainedTenants            int
	tenantsPlan                 string
	statementsOnly              bool
	schemaPair                  string
	schemaPairRounds            int
	statementCycles             int
	e2eModes                    string
	rounds                      int
	deadline                    int64
	quick                       bool
	probeWindow                 time.Duration
}

// serverJobConns is the job pool size the server runs with, for the report.
func (o options) serverJobConns() string {
	if o.jobConns >= 0 {
		return strconv.Itoa(o.jobConns)
	}
	return strconv.Itoa(int(config.Default().DatabaseJobConnections)) + " (its default)"
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func main() {
	var o options
	var probe, probeBatch string
	flag.StringVar(&o.db, "db", "postgres://postgres@127.0.0.1:5432/bench?sslmode=disable", "the bench database (schemas are dropped and recreated in it)")
	flag.StringVar(&o.out, "out", "RESULTS.md", "results file (overwritten)")
	flag.StringVar(&o.profile, "profile", "profiles/e2e.pprof", "CPU profile of the end-to-end run")
	flag.DurationVar(&o.ceilingDur, "ceiling-duration", 8*time.Second, "Postgres commit ceiling window")
	flag.DurationVar(&o.enqueueDur, "enqueue-duration", 10*time.Second, "single POST /jobs window")
	flag.DurationVar(&o.floorDur, "floor-duration", 5*time.Second, "HTTP floor window (1c: refused POST /jobs)")
	flag.DurationVar(&o.bulkDur, "bulk-duration", 8*time.Second, "POST /jobs/bulk window")
	flag.DurationVar(&o.warm, "warmup", time.Second, "warm-up before each timed window (not counted)")
	flag.DurationVar(&o.sustainedDur, "sustained-duration", 30*time.Second, "sustained producers+workers window")
	flag.DurationVar(&o.budget, "budget", 9*time.Minute, "hard limit for the whole run")
	flag.Int64Var(&o.deadline, "deadline", 0, "unix time the run must end by (make bench passes its start + 570 s, so the build counts); 0: -budget alone")
	flag.IntVar(&o.jobs, "jobs", 200_000, "jobs in the end-to-end runs (ours and River)")
	flag.IntVar(&o.probeJobs, "probe-jobs", 50_000, "backlog each worker count of the probe gets")
	flag.DurationVar(&o.probeWindow, "probe-window", 4*time.Second, "work-off time of each worker count in a probe (in two halves, one on the way forth and one back)")
	flag.StringVar(&probe, "probe-workers", "8,16,32,64", "worker counts to try before the end-to-end run that completes each job with its own call (2a-2c; also used for 3)")
	flag.IntVar(&o.probeBatchJobs, "probe-batch-jobs", 100_000, "backlog each worker count of the batch-complete probe gets")
	flag.StringVar(&probeBatch, "probe-batch-workers", "32,64,128,256", "worker counts to try before the batch-complete end to end (2d-2f and its rounds)")
	flag.IntVar(&o.workers, "workers", 0, "end-to-end and sustained worker count, both work-offs (0: each probe's best)")
	flag.IntVar(&o.clients, "clients", 32, "concurrent clients for single enqueues and the commit ceiling")
	flag.IntVar(&o.bulkClients, "bulk-clients", 8, "concurrent clients for bulk enqueues")
	flag.IntVar(&o.inserters, "inserters", 8, "concurrent bulk inserters (ours) and InsertMany goroutines (River)")
	flag.IntVar(&o.producers, "producers", 16, "sustained: producer goroutines")
	flag.Float64Var(&o.moderateRate, "moderate-rate", 500, "sustained 3a: offered jobs/s of the moderate load")
	flag.Float64Var(&o.sustainedRate, "sustained-rate", 0, "sustained 3b: offered jobs/s (0: a quarter of the lower of the single-enqueue and end-to-end work-off rates)")
	flag.IntVar(&o.sustainedWaitMS, "sustained-wait-ms", 5000, "sustained: the workers' claim wait_ms")
	flag.StringVar(&o.tenantsPlan, "tenants-plan", "enterprise", "plan of 1d's and -sustained-tenants' organizations (pro checks its max_active_jobs of 5,000 and max_jobs_per_day on every create: keep a run below them)")
	flag.IntVar(&o.sustainedTenants, "sustained-tenants", 1, "with -sustained-only: organizations the producers and workers are spread over (each its own queue)")
	flag.IntVar(&o.riverWorkers, "river-max-workers", 500, "River: MaxWorkers of the default queue")
	flag.DurationVar(&o.riverCooldown, "river-fetch-cooldown", 5*time.Millisecond, "River: FetchCooldown")
	flag.DurationVar(&o.riverPoll, "river-fetch-poll", 100*time.Millisecond, "River: FetchPollInterval")
	flag.IntVar(&o.jobConns, "job-connections", -1, "the server's DATABASE_JOB_CONNECTIONS (-1: its default, the number of CPUs and at least 2; 0: the job path shares the main pool)")
	flag.IntVar(&o.riverPool, "river-pool", 20, "River: pgx pool size (the server's DATABASE_MAX_CONNECTIONS default is 20)")
	flag.BoolVar(&o.e2eOnly, "e2e-only", false, "run only our end-to-end scenario (with -workers, default 64) and print its figures and Postgres activity (for tuning the server; writes no results file)")
	flag.StringVar(&o.e2eModes, "e2e-modes", "each,batch", "with -e2e-only: which work-offs to run (each: a complete call per job; batch: POST /jobs/complete per claimed batch)")
	flag.BoolVar(&o.sustainedOnly, "sustained-only", false, "run only the sustained scenario (with -workers, default 64, and -sustained-rate, default 300) and print its figures, its CPU and a CPU profile in -profile")
	flag.BoolVar(&o.singleOnly, "single-only", false, "run only the commit ceiling, the single-enqueue scenario (with a CPU profile in -profile), the HTTP floor (1c) and single enqueues of many tenants (1d), and print their figures")
	flag.StringVar(&o.schemaPair, "schema-pair", "", "URL,URL: enqueue into two databases the caller migrated (before and after a schema change), alternating statement by statement, and print each one's Postgres CPU per job")
	flag.IntVar(&o.schemaPairRounds, "schema-pair-rounds", 600, "with -schema-pair: statements of 100 jobs into each database")
	flag.BoolVar(&o.statementsOnly, "statements-only", false, "run only the statement costs (Postgres backend CPU per job of each statement of a job's life, one job and a hundred per statement) and print them")
	flag.IntVar(&o.statementCycles, "statement-cycles", 3000, "statement costs: cycles of one job (a tenth as many of a hundred)")
	flag.BoolVar(&o.quick, "quick", false, "a smoke run: small sizes, short windows")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds of the batch end to end (2d-2f) and River (4), and of the commit ceiling (5) and single enqueues (1a), alternated, for the median ratios, and runs of the moderate load (3a), for the median p50; the first round is the one the table shows")
	flag.BoolVar(&o.riverOnly, "river-only", false, "run only the River scenario and print its figures (for tuning River; writes no results file)")
	flag.Parse()
	o.gogc = app.TuneRuntime(os.Getenv).GOGC
	o.probeCounts, o.probeBatchCounts = counts(probe), counts(probeBatch)
	if o.quick {
		o.ceilingDur, o.enqueueDur, o.bulkDur, o.warm, o.sustainedDur = 2*time.Second, 3*time.Second, 2*time.Second, 500*time.Millisecond, 5*time.Second
		o.floorDur = 2 * time.Second
		o.jobs, o.probeJobs, o.probeBatchJobs, o.probeWindow = 20_000, 10_000, 20_000, 2*time.Second
		o.statementCycles = 300
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// counts parses a comma-separated list of worker counts, skipping what is
// not a positive number.
func counts(list string) []int {
	var ns []int
	for _, p := range strings.Split(list, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(p)); err == nil && n > 0 {
			ns = append(ns, n)
		}
	}
	return ns
}

type report struct {
	o                  options
	started            time.Time
	m                  machine
	pg                 pgFacts
	river              string
	ceiling            loopResult
	ceilingCPU         cpuTimes
	single             loopResult
	singleCPU          cpuTimes
	singleStatements   uint64     // group-commit statements of 1a
	singleRequests     float64    // and the requests they served
	httpFloor          loopResult // 1c
	httpFloorCPU       cpuTimes
	tenants            tenantsRun // 1d
	bulk               loopResult
	probe              []probeRow // of the work-off completing each job (2b)
	workers            int        // 2a-2c and 3
	batchProbe         []probeRow // of the batch-complete work-off (2e)
	batchWorkers       int        // 2d-2f and its rounds
	e2eInsert          time.Duration
	e2e                workOffResult
	e2eCheck           string
	e2eCPU             cpuTimes
	e2eCPUInsert       cpuTimes
	walInsert, walWork walStats
	e2eWall            time.Duration
	hwmKB              int64
	goTotal            uint64
	goHeap             uint64
	sustained          sustainedResult  // 3a: moderate load
	sustainedHigh      sustainedResult  // 3b: a quarter of capacity
	statements         []statementCosts // 7: Postgres CPU per statement
	batch              batchRun
	riv                riverResult
	rounds             []round         // every round of 2f and 4c, the first included
	singleRounds       []round         // every round of 1a and 5, the first included
	moderateP50s       []time.Duration // 3a's p50 of every run, the first included
	pprofAll           string
	pprofSrv           string
	pgActivity         string
	pprofSrvCum        string
	notes              []string
}

func run(o options) error {
	budget := o.budget
	if o.deadline > 0 {
		budget = min(budget, time.Until(time.Unix(o.deadline, 0)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Everything the bench itself starts is labelled side=bench; the
	// server's goroutines are labelled side=server (see startServer).
	pprof.SetGoroutineLabels(pprof.WithLabels(ctx, pprof.Labels("side", "bench")))

	r := &report{o: o, started: time.Now(), m: machineFacts(), river: riverVersion()}
	var err error
	if r.pg, err = postgresFacts(ctx, o.db); err != nil {
		return fmt.Errorf("postgres at %s: %w (make bench creates the database)", o.db, err)
	}
	progress("machine: nproc %s, %s; Postgres %s; River %s; server in-process; GOGC %d", r.m.NProc, r.m.CPU, r.pg.Version, r.river, o.gogc)

	if o.riverOnly {
		st := riverSettings{MaxWorkers: o.riverWorkers, FetchCooldown: o.riverCooldown, FetchPoll: o.riverPoll,
			PoolConns: int32(o.riverPool), Batch: 100, Inserters: o.inserters}
		rr, err := runRiver(ctx, o.db, "bench_river", o.jobs, st, remaining(ctx, 3*time.Minute))
		if err != nil {
			return err
		}
		fmt.Printf("River %s, %d jobs, %s: insert %s jobs/s, work-off %s jobs/s, overall %s jobs/s%s; CPU insert: self %.1f s, postgres %.1f s; work-off: self %.1f s, postgres %.1f s\n",
			r.river, o.jobs, st, num(rr.insertRate()), num(rr.workRate()), num(rr.overallRate()), timedOut(rr.TimedOut),
			rr.CPUInsert.self, rr.CPUInsert.postgres, rr.CPUWork.self, rr.CPUWork.postgres)
		return nil
	}

	if o.singleOnly {
		cpu0 := readCPU()
		c, err := runCeiling(ctx, o.db, "bench_ceiling", o.clients, o.warm, o.ceilingDur)
		if err != nil {
			return err
		}
		ceilingCPU := readCPU().sub(cpu0)
		s, err := startServer(ctx, o, "bench_single")
		if err != nil {
			return err
		}
		var res loopResult
		cpu, err := profiled(o.profile, func() { res = runSingleEnqueue(ctx, s, o.clients, o.warm, o.enqueueDur) })
		if err != nil {
			s.close()
			return err
		}
		statements, requests := s.groupCommits("enqueue")
		cpu0 = readCPU()
		floor := runHTTPFloor(ctx, s, o.clients, o.warm, o.floorDur)
		floorCPU := readCPU().sub(cpu0)
		tenants, err := runTenants(ctx, s, o)
		s.close()
		if err != nil {
			return err
		}
		fmt.Printf("ceiling %s commits/s (CPU per commit: %s); single enqueue %s jobs/s (ratio %.2f), p50 %s p99 %s, %d errors %s; CPU bench process %.1f s, postgres %.1f s (per job: %s)\n",
			num(c.rate()), cpuPerOp(ceilingCPU, c), num(res.rate()), res.rate()/c.rate(), ms(res.Lat.P50), ms(res.Lat.P99), res.Errors, res.FirstErr, cpu.self, cpu.postgres, cpuPerOp(cpu, res))
		fmt.Printf("single enqueues: %s\n", groupCommitLine(statements, requests))
		fmt.Printf("HTTP floor (refused before the database) %s requests/s (%.2f of the ceiling), p50 %s, %d errors %s; CPU per request: %s\n",
			num(floor.rate()), floor.rate()/c.rate(), ms(floor.Lat.P50), floor.Errors, floor.FirstErr, cpuPerOp(floorCPU, floor))
		fmt.Printf("single enqueues, each client its own organization (1d): %s jobs/s (ratio %.2f), p50 %s p99 %s, %d errors %s; CPU per job: %s; %s\n",
			num(tenants.rate()), tenants.rate()/c.rate(), ms(tenants.Lat.P50), ms(tenants.Lat.P99), tenants.Errors, tenants.FirstErr,
			cpuPerOp(tenants.CPU, tenants.loopResult), groupCommitLine(tenants.Statements, tenants.Requests))
		return nil
	}
	if o.schemaPair != "" {
		return schemaPair(ctx, strings.Split(o.schemaPair, ","), o.schemaPairRounds)
	}
	if o.statementsOnly {
		costs, err := statementCostRuns(ctx, o)
		if err != nil {
			return err
		}
		for _, c := range costs {
			fmt.Println(statementCostsLine(c))
		}
		return nil
	}
	if o.sustainedOnly {
		w, rate := o.workers, o.sustainedRate
		if w == 0 {
			w = 64
		}
		if rate <= 0 {
			rate = 300
		}
		s, err := startServer(ctx, o, "bench_sustained")
		if err != nil {
			return err
		}
		var res sustainedResult
		keys := []string{s.key}
		if o.sustainedTenants > 1 {
			if keys, err = s.tenantKeys(ctx, o.sustainedTenants, o.tenantsPlan); err != nil {
				s.close()
				return err
			}
		}
		cpu, err := profiled(o.profile, func() {
			res = runSustainedTenants(ctx, s, keys, o.producers, w, rate, o.sustainedDur, o.sustainedWaitMS)
		})
		s.close()
		if err != nil {
			return err
		}
		jobs := max(float64(res.Completed), 1)
		fmt.Printf("sustained: %d producers at %s jobs/s, %d workers: %s jobs/s completed, enqueue-to-start p50 %s p95 %s p99 %s over %d, backlog %d, %d errors %s\n",
			o.producers, num(rate), w, num(float64(res.Completed)/o.sustainedDur.Seconds()), ms(res.Lat.P50), ms(res.Lat.P95), ms(res.Lat.P99), res.Lat.N,
			res.Backlog, res.Errors, res.FirstErr)
		fmt.Printf("of which the create call (sent to answered): p50 %s p95 %s p99 %s\n", ms(res.EnqLat.P50), ms(res.EnqLat.P95), ms(res.EnqLat.P99))
		fmt.Printf("claims: %s\n", res.Claims.perJob(res.Started))
		fmt.Printf("CPU: bench process %.1f s (%.0f µs per job), postgres %.1f s (%.0f µs per job); profile in %s\n",
			cpu.self, cpu.self/jobs*1e6, cpu.postgres, cpu.postgres/jobs*1e6, o.profile)
		return nil
	}
	if o.e2eOnly {
		if r.workers = o.workers; r.workers == 0 {
			r.workers = 64
		}
		r.batchWorkers = r.workers
		if strings.Contains(o.e2eModes, "each") {
			if err := runE2E(ctx, r); err != nil {
				return err
			}
			fmt.Printf("%s\nCPU work-off: bench process %.1f s, postgres %.1f s; WAL %s\n%s\n%s\n",
				r.e2eCheck, r.e2eCPU.self, r.e2eCPU.postgres, r.walWork.perJob(o.jobs), r.pgActivity, r.pprofSrvCum)
		}
		if strings.Contains(o.e2eModes, "batch") {
			if err := runE2EBatch(ctx, r); err != nil {
				return err
			}
			fmt.Printf("batch: %s; %d claim calls\nCPU insert: bench process %.1f s, postgres %.1f s\nCPU work-off: bench process %.1f s, postgres %.1f s; WAL %s\n%s\n",
				r.batch.Check, r.batch.Work.Claims, r.batch.CPUInsert.self, r.batch.CPUInsert.postgres,
				r.batch.CPU.self, r.batch.CPU.postgres, r.batch.WAL.perJob(o.jobs), r.batch.Activity)
		}
		return nil
	}

	// 5. The Postgres ceiling first, on a quiet database.
	progress("ceiling: %d connections, autocommit single-row INSERT, %s", o.clients, o.ceilingDur)
	cpu0 := readCPU()
	if r.ceiling, err = runCeiling(ctx, o.db, "bench_ceiling", o.clients, o.warm, o.ceilingDur); err != nil {
		return fmt.Errorf("ceiling: %w", err)
	}
	r.ceilingCPU = readCPU().sub(cpu0)
	progress("  %s commits/s, p50 %s p99 %s", num(r.ceiling.rate()), ms(r.ceiling.Lat.P50), ms(r.ceiling.Lat.P99))

	// 1. Enqueue: single, then bulk, each on a fresh schema.
	progress("enqueue: single POST /api/v1/jobs, %d clients, %s", o.clients, o.enqueueDur)
	s, err := startServer(ctx, o, "bench_single")
	if err != nil {
		return err
	}
	cpu0 = readCPU()
	r.single = runSingleEnqueue(ctx, s, o.clients, o.warm, o.enqueueDur)
	r.singleCPU = readCPU().sub(cpu0)
	r.singleStatements, r.singleRequests = s.groupCommits("enqueue")
	progress("  %s jobs/s, p50 %s p95 %s p99 %s, %d errors %s", num(r.single.rate()), ms(r.single.Lat.P50), ms(r.single.Lat.P95), ms(r.single.Lat.P99), r.single.Errors, r.single.FirstErr)
	progress("enqueue: the same requests without credentials (HTTP floor), %d clients, %s", o.clients, o.floorDur)
	cpu0 = readCPU()
	r.httpFloor = runHTTPFloor(ctx, s, o.clients, o.warm, o.floorDur)
	r.httpFloorCPU = readCPU().sub(cpu0)
	progress("  %s requests/s, p50 %s, %d errors %s", num(r.httpFloor.rate()), ms(r.httpFloor.Lat.P50), r.httpFloor.Errors, r.httpFloor.FirstErr)
	progress("enqueue: single POST /api/v1/jobs, %d clients of %d organizations, %s", o.clients, o.clients, o.enqueueDur)
	r.tenants, err = runTenants(ctx, s, o)
	s.close()
	if err != nil {
		return err
	}
	progress("  %s jobs/s, p50 %s p95 %s p99 %s, %d errors %s", num(r.tenants.rate()), ms(r.tenants.Lat.P50), ms(r.tenants.Lat.P95), ms(r.tenants.Lat.P99), r.tenants.Errors, r.tenants.FirstErr)
	if err := runSingleRounds(ctx, r); err != nil {
		return err
	}

	progress("enqueue: POST /api/v1/jobs/bulk of 100, %d clients, %s", o.bulkClients, o.bulkDur)
	if s, err = startServer(ctx, o, "bench_bulk"); err != nil {
		return err
	}
	r.bulk = runBulkEnqueue(ctx, s, o.bulkClients, o.warm, o.bulkDur)
	s.close()
	progress("  %s jobs/s, call p50 %s p99 %s, %d errors %s", num(r.bulk.rate()), ms(r.bulk.Lat.P50), ms(r.bulk.Lat.P99), r.bulk.Errors, r.bulk.FirstErr)

	// 4. River, before our end-to-end run, which then gets whatever time the
	// budget leaves.
	st := riverSettings{MaxWorkers: o.riverWorkers, FetchCooldown: o.riverCooldown, FetchPoll: o.riverPoll,
		PoolConns: int32(o.riverPool), Batch: 100, Inserters: o.inserters}
	progress("River %s: %d jobs, InsertMany batches of %d from %d goroutines; %s", r.river, o.jobs, st.Batch, st.Inserters, st)
	if r.riv, err = runRiver(ctx, o.db, "bench_river", o.jobs, st, remaining(ctx, 3*time.Minute)); err != nil {
		return fmt.Errorf("river: %w", err)
	}
	progress("  insert %s jobs/s, work-off %s jobs/s, overall %s jobs/s%s", num(r.riv.insertRate()), num(r.riv.workRate()), num(r.riv.overallRate()), timedOut(r.riv.TimedOut))

	// 2. End to end: each work-off's 200,000-job run, right after the
	// probe that picks its worker count. The two work-offs probe apart: a
	// claim of 100 held until each job's own complete call is answered
	// keeps a worker far longer than one answered by a single call, so the
	// count that keeps the cores busy differs (bench/NOTES.md, the
	// nineteenth spell). The batch probe runs after 2a-2c, whose memory
	// peak would otherwise start from the heap its many workers left.
	r.workers, r.batchWorkers = o.workers, o.workers
	if o.workers == 0 {
		if r.probe, err = probe(ctx, o, "a complete call per job", o.probeCounts, o.probeJobs, false); err != nil {
			return err
		}
		r.workers = bestCount(r.probe)
	}
	if err := runE2E(ctx, r); err != nil {
		return err
	}
	if o.workers == 0 {
		if r.batchProbe, err = probe(ctx, o, "batch completes", o.probeBatchCounts, o.probeBatchJobs, true); err != nil {
			return err
		}
		r.batchWorkers = bestCount(r.batchProbe)
	}
	if err := runE2EBatch(ctx, r); err != nil {
		return err
	}
	if err := runRounds(ctx, r, st); err != nil {
		return err
	}

	// 3. Sustained: a moderate load, then a quarter of capacity.
	high := o.sustainedRate
	if high <= 0 {
		high = 0.25 * min(r.single.rate(), r.e2e.rate())
	}
	for _, run := range []struct {
		rate float64
		out  *sustainedResult
	}{{o.moderateRate, &r.sustained}, {high, &r.sustainedHigh}} {
		progress("sustained: %d producers at %s jobs/s, %d workers (wait_ms %d), %s", o.producers, num(run.rate), r.workers, o.sustainedWaitMS, o.sustainedDur)
		if s, err = startServer(ctx, o, "bench_sustained"); err != nil {
			return err
		}
		*run.out = runSustained(ctx, s, o.producers, r.workers, run.rate, o.sustainedDur, o.sustainedWaitMS)
		s.close()
		res := *run.out
		progress("  %s jobs/s completed, enqueue-to-start p50 %s p95 %s p99 %s, backlog %d, %d errors %s",
			num(float64(res.Completed)/o.sustainedDur.Seconds()), ms(res.Lat.P50), ms(res.Lat.P95), ms(res.Lat.P99),
			res.Backlog, res.Errors, res.FirstErr)
		if run.out == &r.sustained {
			runModerateRounds(ctx, r)
		}
	}

	// 7. Statement costs, on a server of their own.
	progress("statement costs: %d cycles of one job, %d of a hundred", o.statementCycles, max(o.statementCycles/10, 1))
	if r.statements, err = statementCostRuns(ctx, o); err != nil {
		return err
	}
	for _, c := range r.statements {
		progress("  %s", statementCostsLine(c))
	}

	doc := r.markdown()
	fmt.Println(doc)
	if err := os.WriteFile(o.out, []byte(doc), 0o644); err != nil {
		return err
	}
	progress("wrote %s (%s total)", o.out, time.Since(r.started).Round(time.Second))
	return nil
}

func remainingRaw(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return time.Until(dl)
	}
	return time.Hour
}

func remaining(ctx context.Context, want time.Duration) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(min(want, time.Until(dl)-10*time.Second), time.Second)
	}
	return want
}

func timedOut(b bool) string {
	if b {
		return " (TIMED OUT: partial)"
	}
	return ""
}

// runE2E is scenario 2 proper, with the CPU profile and the memory peak.
func runE2E(ctx context.Context, r *report) error {
	o := r.o
	progress("end to end: %d jobs by bulk of 100 (%d clients), then %d workers claiming 100 and completing each", o.jobs, o.inserters, r.workers)
	s, err := startServer(ctx, o, "bench_e2e")
	if err != nil {
		return err
	}
	defer s.close()
	settle(ctx, s.sql)
	a := newAPI(s.base, s.key, r.workers+o.inserters)
	defer a.close()
	if err := os.MkdirAll(filepath.Dir(o.profile), 0o755); err != nil {
		return err
	}
	pf, err := os.Create(o.profile)
	if err != nil {
		return err
	}
	defer pf.Close()
	if err := clearPeakRSS(); err != nil {
		r.notes = append(r.notes, "could not reset VmHWM ("+err.Error()+"): the peak RSS covers the whole bench process lifetime")
	}
	mem := startMemSampler(50 * time.Millisecond)
	if err := pprof.StartCPUProfile(pf); err != nil {
		return err
	}
	wal0, _ := readWAL(ctx, s.sql)
	cpu0, t0 := readCPU(), time.Now()
	r.e2eInsert, err = insertBulk(ctx, a, "e2e", o.jobs, o.inserters)
	if err != nil {
		pprof.StopCPUProfile()
		mem.finish()
		return fmt.Errorf("e2e insert: %w", err)
	}
	wal1, _ := readWAL(ctx, s.sql)
	cpu1 := readCPU()
	act := startActivitySampler(s.sql, 100*time.Millisecond)
	// The work-off gets what the budget leaves after the batch probe, the
	// batch-complete run and the sustained run (about two minutes), at
	// most eight minutes.
	r.e2e = workOff(ctx, a, "e2e", int64(o.jobs), r.workers, 250, min(8*time.Minute, max(remainingRaw(ctx)-2*time.Minute, 20*time.Second)), false)
	r.pgActivity = act.finish(12)
	cpu2 := readCPU()
	wal2, _ := readWAL(ctx, s.sql)
	r.e2eCPUInsert, r.e2eCPU, r.e2eWall = cpu1.sub(cpu0), cpu2.sub(cpu1), time.Since(t0)
	r.walInsert, r.walWork = wal1.sub(wal0), wal2.sub(wal1)
	pprof.StopCPUProfile()
	r.goTotal, r.goHeap = mem.finish()
	r.hwmKB, _ = procStatusKB("self", "VmHWM")
	progress("  insert %s jobs/s; work-off %s jobs/s; overall %s jobs/s; %d errors %s%s",
		num(float64(o.jobs)/r.e2eInsert.Seconds()), num(r.e2e.rate()), num(float64(r.e2e.Done)/(r.e2eInsert+r.e2e.Elapsed).Seconds()),
		r.e2e.Errors, r.e2e.FirstErr, timedOut(r.e2e.TimedOut))

	r.e2eCheck = readModelCheck(ctx, s)
	r.pprofAll = pprofTop(o.profile)
	r.pprofSrv = pprofTop(o.profile, "-tagfocus=side=server")
	r.pprofSrvCum = pprofTop(o.profile, "-tagfocus=side=server", "-cum")
	return nil
}

// readModelCheck says how many of the end-to-end queue's jobs the read
// model shows completed: after a work-off it must be all of them.
func readModelCheck(ctx context.Context, s *server) string {
	var completed, all int64
	if err := s.sql.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'completed'), count(*) FROM jobs WHERE queue_name = 'e2e'`).Scan(&completed, &all); err != nil {
		return "check failed: " + err.Error()
	}
	return fmt.Sprintf("%d of %d jobs in the read model are completed", completed, all)
}

// batchRun is scenario 2 again with the batch-complete extension route.
type batchRun struct {
	Insert         time.Duration
	Work           workOffResult
	CPU, CPUInsert cpuTimes
	WAL            walStats
	Check          string
	Activity       string
}

func (b batchRun) overall() float64 {
	return float64(b.Work.Done) / (b.Insert + b.Work.Elapsed).Seconds()
}

// runE2EBatch is the end-to-end run with workers that complete each claimed
// batch with one POST /api/v1/jobs/complete: the same jobs, workers and
// claims as runE2E, on a fresh schema, with a CPU profile next to the
// end-to-end one.
func runE2EBatch(ctx context.Context, r *report) error {
	return batchEndToEnd(ctx, r.o, r.batchWorkers, strings.TrimSuffix(r.o.profile, ".pprof")+"-batch.pprof", &r.batch)
}

// batchEndToEnd runs the batch-complete end to end into b, under a CPU
// profile written to profile unless it is "".
func batchEndToEnd(ctx context.Context, o options, workers int, profile string, b *batchRun) error {
	progress("end to end, batch completes: %d jobs by bulk of 100 (%d clients), then %d workers claiming 100 and completing them in one call", o.jobs, o.inserters, workers)
	s, err := startServer(ctx, o, "bench_e2e_batch")
	if err != nil {
		return err
	}
	defer s.close()
	settle(ctx, s.sql)
	a := newAPI(s.base, s.key, workers+o.inserters)
	defer a.close()
	if profile != "" {
		if pf, err := os.Create(profile); err == nil {
			defer pf.Close()
			if err := pprof.StartCPUProfile(pf); err == nil {
				defer pprof.StopCPUProfile()
			}
		}
	}
	cpu0 := readCPU()
	if b.Insert, err = insertBulk(ctx, a, "e2e", o.jobs, o.inserters); err != nil {
		return fmt.Errorf("e2e batch insert: %w", err)
	}
	wal1, _ := readWAL(ctx, s.sql)
	cpu1 := readCPU()
	act := startActivitySampler(s.sql, 100*time.Millisecond)
	b.Work = workOff(ctx, a, "e2e", int64(o.jobs), workers, 250, min(4*time.Minute, max(remainingRaw(ctx)-time.Minute, 20*time.Second)), true)
	b.Activity = act.finish(8)
	cpu2 := readCPU()
	wal2, _ := readWAL(ctx, s.sql)
	b.CPUInsert, b.CPU, b.WAL = cpu1.sub(cpu0), cpu2.sub(cpu1), wal2.sub(wal1)
	if profile != "" {
		// What allocated, for the collector's share of the CPU profile: the
		// process's allocations since it started (in -e2e-only runs, this
		// run and the server's start).
		if af, err := os.Create(strings.TrimSuffix(profile, ".pprof") + "-allocs.pprof"); err == nil {
			_ = pprof.Lookup("allocs").WriteTo(af, 0)
			af.Close()
		}
	}
	b.Check = readModelCheck(ctx, s)
	progress("  insert %s jobs/s; work-off %s jobs/s; overall %s jobs/s; %d errors %s%s",
		num(float64(o.jobs)/b.Insert.Seconds()), num(b.Work.rate()), num(b.overall()), b.Work.Errors, b.Work.FirstErr, timedOut(b.Work.TimedOut))
	return nil
}

func pprofTop(profile string, extra ...string) string {
	args := append([]string{"tool", "pprof", "-top", "-nodecount=15"}, extra...)
	out, err := exec.Command("go", append(args, profile)...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("go tool pprof failed: %v\n%s", err, out)
	}
	return strings.TrimRight(string(out), "\n")
}

func (r *report) markdown() string {
	o := r.o
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	e2eOverall := float64(r.e2e.Done) / (r.e2eInsert + r.e2e.Elapsed).Seconds()
	e2eInsert := float64(o.jobs) / r.e2eInsert.Seconds()
	ncpu := float64(atoiOr(r.m.NProc, 1))
	sustRate := float64(r.sustained.Completed) / r.sustained.Window.Seconds()

	w("# Benchmarks")
	w("")
	w("Written by `make bench` (bench/, a separate Go module); overwritten at every run.")
	if o.quick {
		w("")
		w("**A smoke run (`-quick`): small sizes and short windows, not the benchmark.**")
	}
	w("")
	w("- **Date**: %s", r.started.UTC().Format("2006-01-02 15:04 MST"))
	w("- **Commit**: %s", r.m.Commit)
	w("- **Machine**: nproc %s, %s, %s RAM, Linux %s, %s", r.m.NProc, r.m.CPU, r.m.MemTotal, r.m.Kernel, r.m.Go)
	w("- **Postgres**: %s (shared_buffers %s, synchronous_commit %s, fsync %s, max_connections %s), on the same machine",
		r.pg.Version, r.pg.SharedBuffers, r.pg.SynchronousCommit, r.pg.Fsync, r.pg.MaxConnections)
	w("- **Server**: ran **in-process** (app.New/Start from github.com/spooled-go/spooled via `replace => ../`), " +
		"default config but `PORT=0`, `METRICS_PORT=0`, `ADMIN_API_KEY` set, `RATE_LIMIT_REQUESTS_PER_SECOND=0`; " +
		"DATABASE_MAX_CONNECTIONS 20, DATABASE_JOB_CONNECTIONS " + r.o.serverJobConns() + ", embedded NATS; the Go collector at GOGC " + strconv.Itoa(r.o.gogc) +
		" (the server binary's runtime default, applied by the harness as the binary does; it is the process's, so River's runs have it too). Clients are real HTTP clients (net/http, keep-alive, JSON) on 127.0.0.1 in the same process, " +
		"so server and clients share the 2 cores (as do Postgres and River)")
	w("- **Tenant**: an enterprise organization made with `POST /api/v1/admin/organizations`, `custom_limits` " +
		"`{\"rate_limit_requests_per_second\": 1000000, \"rate_limit_burst\": 1000000}` set in SQL before its key was first used")
	w("- **River**: github.com/riverqueue/river %s with riverpgxv5, migrated with rivermigrate into its own schema", r.river)
	w("- Every scenario ran on a freshly created and migrated schema of the `bench` database (dropped afterwards); each end-to-end run, ours and River's, starts right after a `CHECKPOINT`, so that none pays for the WAL of the scenarios before it")
	w("")
	w("## Results")
	w("")
	w("| # | scenario | system | setup | throughput | p50 | p95 | p99 | errors |")
	w("|---|---|---|---|---:|---:|---:|---:|---:|")
	w("| 1a | single enqueue `POST /api/v1/jobs` | spooled | %d clients, %s (after %s warm-up) | **%s jobs/s** | %s | %s | %s | %d |",
		r.single.Clients, o.enqueueDur, o.warm, num(r.single.rate()), ms(r.single.Lat.P50), ms(r.single.Lat.P95), ms(r.single.Lat.P99), r.single.Errors)
	w("| 1b | bulk enqueue `POST /api/v1/jobs/bulk` × 100 | spooled | %d clients, %s; latency per call | **%s jobs/s** | %s | %s | %s | %d |",
		r.bulk.Clients, o.bulkDur, num(r.bulk.rate()), ms(r.bulk.Lat.P50), ms(r.bulk.Lat.P95), ms(r.bulk.Lat.P99), r.bulk.Errors)
	w("| 1c | HTTP floor: 1a's requests without credentials, refused (401) before any database work | spooled | %d clients, %s | **%s requests/s** | %s | %s | %s | %d |",
		r.httpFloor.Clients, o.floorDur, num(r.httpFloor.rate()), ms(r.httpFloor.Lat.P50), ms(r.httpFloor.Lat.P95), ms(r.httpFloor.Lat.P99), r.httpFloor.Errors)
	w("| 1d | single enqueue `POST /api/v1/jobs`, many tenants | spooled | 1a's %d clients, each with its own organization and key, %s | **%s jobs/s** | %s | %s | %s | %d |",
		r.tenants.Clients, o.enqueueDur, num(r.tenants.rate()), ms(r.tenants.Lat.P50), ms(r.tenants.Lat.P95), ms(r.tenants.Lat.P99), r.tenants.Errors)
	w("| 2a | end to end: insert %s jobs | spooled | bulk × 100, %d clients | %s jobs/s | | | | |", num(float64(o.jobs)), o.inserters, num(e2eInsert))
	w("| 2b | end to end: work-off | spooled | %d workers; claim `limit 100`, `complete` each (worker_id + lease_id) | **%s jobs/s** | | | | %d%s |",
		r.workers, num(r.e2e.rate()), r.e2e.Errors, timedOut(r.e2e.TimedOut))
	w("| 2c | end to end: overall | spooled | insert + work-off, %s | **%s jobs/s** | | | | |", (r.e2eInsert + r.e2e.Elapsed).Round(10*time.Millisecond), num(e2eOverall))
	w("| 2d | end to end, batch completes: insert %s jobs | spooled | bulk × 100, %d clients | %s jobs/s | | | | |", num(float64(o.jobs)), o.inserters, num(float64(o.jobs)/r.batch.Insert.Seconds()))
	w("| 2e | end to end, batch completes: work-off | spooled | %d workers; claim `limit 100`, then one `POST /api/v1/jobs/complete` for the batch | **%s jobs/s** | | | | %d%s |",
		r.batchWorkers, num(r.batch.Work.rate()), r.batch.Work.Errors, timedOut(r.batch.Work.TimedOut))
	w("| 2f | end to end, batch completes: overall | spooled | insert + work-off, %s | **%s jobs/s** | | | | |", (r.batch.Insert + r.batch.Work.Elapsed).Round(10*time.Millisecond), num(r.batch.overall()))
	moderateP50 := "**" + ms(r.sustained.Lat.P50) + "**"
	if len(r.moderateP50s) > 1 {
		moderateP50 += fmt.Sprintf(" (median of %d runs: **%s**)", len(r.moderateP50s), ms(median(r.moderateP50s)))
	}
	w("| 3a | sustained, moderate load: enqueue-to-start | spooled | %d producers offering %s jobs/s, %d workers long-polling (`wait_ms` %d, limit 100), %s | **%s jobs/s** completed | %s | %s | %s | %d |",
		r.sustained.Producers, num(r.sustained.TargetRate), r.sustained.Workers, r.sustained.WaitMS, r.sustained.Window, num(sustRate),
		moderateP50, ms(r.sustained.Lat.P95), ms(r.sustained.Lat.P99), r.sustained.Errors)
	hi := r.sustainedHigh
	w("| 3b | sustained, a quarter of capacity: enqueue-to-start | spooled | %d producers offering %s jobs/s, %d workers long-polling (`wait_ms` %d, limit 100), %s | **%s jobs/s** completed | %s | %s | %s | %d |",
		hi.Producers, num(hi.TargetRate), hi.Workers, hi.WaitMS, hi.Window, num(float64(hi.Completed)/hi.Window.Seconds()),
		ms(hi.Lat.P50), ms(hi.Lat.P95), ms(hi.Lat.P99), hi.Errors)
	w("| 4a | end to end: insert %s jobs | River | InsertMany, batches of %d, %d goroutines | %s jobs/s | | | | |", num(float64(r.riv.Jobs)), r.riv.Settings.Batch, r.riv.Settings.Inserters, num(r.riv.insertRate()))
	w("| 4b | end to end: work-off | River | no-op worker; %s | **%s jobs/s** | | | | %s |", r.riv.Settings, num(r.riv.workRate()), strings.TrimSpace(timedOut(r.riv.TimedOut)))
	w("| 4c | end to end: overall | River | insert + work-off, %s | **%s jobs/s** | | | | |", (r.riv.Insert + r.riv.Work).Round(10*time.Millisecond), num(r.riv.overallRate()))
	w("| 5 | Postgres commit ceiling | Postgres | %d connections, autocommit single-row `INSERT` into a tiny table, %s | **%s commits/s** | %s | %s | %s | %d |",
		r.ceiling.Clients, o.ceilingDur, num(r.ceiling.rate()), ms(r.ceiling.Lat.P50), ms(r.ceiling.Lat.P95), ms(r.ceiling.Lat.P99), r.ceiling.Errors)
	w("")
	w("### 6. Ratios")
	w("")
	w("| ratio | value |")
	w("|---|---:|")
	w("| ours ÷ River, end to end overall, a complete call per job (2c ÷ 4c) | **%.2f×** |", e2eOverall/r.riv.overallRate())
	if b, ok := r.completeCallBound(ncpu); ok {
		w("| the most 2c ÷ 4c could be on these cores: a job needs at least one request as costly as 1c's (%.0f µs of CPU, its warm-up prorated), "+
			"the claim and complete statements at a hundred jobs each (%.0f µs, section 7) and 2a's insert (%.0f µs); the cores ÷ their sum = %s jobs/s | ≤ %.2f× |",
			b.request, b.statements, b.insert, num(b.rate), b.rate/r.riv.overallRate())
	}
	w("| ours ÷ River, work-off, a complete call per job (2b ÷ 4b) | %.2f× |", r.e2e.rate()/r.riv.workRate())
	w("| ours ÷ River, end to end overall, batch completes (2f ÷ 4c) | **%.2f×** |", r.batch.overall()/r.riv.overallRate())
	if len(r.rounds) > 1 {
		w("| ours ÷ River, end to end overall, batch completes: the median of %d alternated rounds (below) | **%.2f×** |", len(r.rounds), medianRatio(r.rounds))
	}
	w("| ours ÷ River, work-off, batch completes (2e ÷ 4b) | %.2f× |", r.batch.Work.rate()/r.riv.workRate())
	w("| ours ÷ River, insert (2a ÷ 4a) | %.2f× |", e2eInsert/r.riv.insertRate())
	w("| single enqueues ÷ Postgres commit ceiling (1a ÷ 5) | **%.2f** |", r.single.rate()/r.ceiling.rate())
	if len(r.singleRounds) > 1 {
		w("| single enqueues ÷ Postgres commit ceiling: the median of %d alternated rounds (below) | **%.2f** |", len(r.singleRounds), medianRatio(r.singleRounds))
	}
	w("| HTTP floor ÷ Postgres commit ceiling (1c ÷ 5; 1a ÷ 5 stays below it) | %.2f |", r.httpFloor.rate()/r.ceiling.rate())
	w("| single enqueues ÷ HTTP floor (1a ÷ 1c) | %.2f |", r.single.rate()/r.httpFloor.rate())
	w("| many tenants ÷ one tenant, single enqueues (1d ÷ 1a) | %.2f |", r.tenants.rate()/r.single.rate())
	w("")
	w("### 7. Postgres CPU per statement")
	w("")
	w("Each statement of a job's life on a connection of its own, backend CPU (utime + stime of its process) per job, in µs; the kernel's part in parentheses. " +
		"One job per statement is what a moderate load runs (3a: group commit and claims serve one job at a time); a hundred is what the end-to-end runs do. " +
		"Back to back they move by under a tenth, where throughput moves by a third, though the machine's speed drifts over hours (the same statements cost a quarter less in one spell than in another): " +
		"judge a statement change by alternated `bin/spooled-bench -statements-only` runs.")
	w("")
	w("| jobs per statement | cycles | enqueue | probe | claim | complete | total |")
	w("|---:|---:|---:|---:|---:|---:|---:|")
	for _, c := range r.statements {
		row := fmt.Sprintf("| %d | %d |", c.Jobs, c.Cycles)
		for _, kind := range statementKinds {
			row += fmt.Sprintf(" %.0f (%.0f) |", c.PerJob[kind], c.Kernel[kind])
		}
		w("%s **%.0f** |", row, c.total())
	}
	w("")
	w("### 8. CPU per job")
	w("")
	w("The CPU of each phase of the first round per job, in µs, read from `/proc`: the bench process (this server and its HTTP clients, or River and its workers) and every Postgres process. "+
		"All of them share the machine's %.0f cores, so a phase cannot run faster than the cores divided by its CPU per job (the last column), whatever it waits on. Our end-to-end phases ran under the CPU profile shown below, which adds a few per cent to the bench process.", ncpu)
	w("")
	w("| phase | system | throughput | bench process | Postgres | total | the cores ÷ total |")
	w("|---|---|---:|---:|---:|---:|---:|")
	cpuRow := func(phase, system string, rate float64, c cpuTimes, jobs int) float64 {
		n := float64(max(jobs, 1))
		total := (c.self + c.postgres) / n * 1e6
		w("| %s | %s | %s jobs/s | %.0f | %.0f | **%.0f** | %s jobs/s |", phase, system, num(rate), c.self/n*1e6, c.postgres/n*1e6, total, num(ncpu/total*1e6))
		return total
	}
	cpuRow("insert (2a)", "spooled, bulk × 100 over HTTP", e2eInsert, r.e2eCPUInsert, o.jobs)
	cpuRow("insert (2d)", "spooled, the batch-complete run", float64(o.jobs)/r.batch.Insert.Seconds(), r.batch.CPUInsert, o.jobs)
	cpuRow("insert (4a)", "River, InsertMany", r.riv.insertRate(), r.riv.CPUInsert, r.riv.Jobs)
	cpuRow("work-off (2b)", "spooled, a complete call per job", r.e2e.rate(), r.e2eCPU, int(r.e2e.Done))
	cpuRow("work-off (2e)", "spooled, batch completes", r.batch.Work.rate(), r.batch.CPU, int(r.batch.Work.Done))
	cpuRow("work-off (4b)", "River", r.riv.workRate(), r.riv.CPUWork, r.riv.Done)
	ours := cpuRow("whole run (2d + 2e)", "spooled, batch completes", r.batch.overall(), r.batch.CPUInsert.add(r.batch.CPU), int(r.batch.Work.Done))
	peer := cpuRow("whole run (4a + 4b)", "River", r.riv.overallRate(), r.riv.CPUInsert.add(r.riv.CPUWork), r.riv.Done)
	w("")
	floor := ""
	for _, c := range r.statements {
		if c.Jobs == 100 {
			floor = fmt.Sprintf(" Section 7's statements alone, at a hundred jobs per statement and one at a time, cost Postgres %.0f µs per job, against %.0f µs for River's whole run.",
				c.total(), r.riv.CPUInsert.add(r.riv.CPUWork).postgres/float64(max(r.riv.Done, 1))*1e6)
		}
	}
	w("A job of the batch end to end costs **%.2f×** River's CPU here; the ratio of throughputs (2f ÷ 4c) is %.2f×.%s",
		ours/peer, r.batch.overall()/r.riv.overallRate(), floor)
	w("")
	w("### Details")
	w("")
	if len(r.rounds) > 1 {
		var parts []string
		for i, rd := range r.rounds {
			parts = append(parts, fmt.Sprintf("%d: %s ÷ %s = %.2f×", i+1, num(rd.ours), num(rd.peer), rd.ours/rd.peer))
		}
		w("Rounds of the batch end to end and River's (jobs/s overall; the first is 2f and 4c above, the others ran back to back, River first, on fresh schemas): %s. "+
			"The two systems' figures drift together and apart with the machine within minutes, so the median ratio is the steadier one.", strings.Join(parts, "; "))
		w("")
	}
	if len(r.singleRounds) > 1 {
		var parts []string
		for i, rd := range r.singleRounds {
			parts = append(parts, fmt.Sprintf("%d: %s ÷ %s = %.2f", i+1, num(rd.ours), num(rd.peer), rd.ours/rd.peer))
		}
		w("Rounds of single enqueues and the commit ceiling (jobs/s ÷ commits/s; the first is 1a and 5 above, the others ran back to back, the ceiling first, on fresh schemas): %s.", strings.Join(parts, "; "))
		w("")
	}
	if len(r.moderateP50s) > 1 {
		var parts []string
		for _, d := range r.moderateP50s {
			parts = append(parts, ms(d))
		}
		w("Runs of the moderate load (3a; enqueue-to-start p50 of each, the first is the table's, each on a fresh schema): %s; the median **%s**.",
			strings.Join(parts, ", "), ms(median(r.moderateP50s)))
		w("")
	}
	if len(r.probe) > 0 {
		w("Worker-count probes (each count gets two fresh backlogs bulk-inserted on queues of their own and works each off for up to %s, so each meets a deep backlog; the counts run forth, then back, and a count's rate is the mean of its two, so that the machine's drift favours none; each work-off has its own probe, since a worker that completes each job with its own call holds its claim far longer than one that completes the batch in one call):", o.probeWindow/2)
		w("")
		w("- a complete call per job, a backlog of %s: %s → **%d workers** used for 2a-2c and 3.", num(float64(o.probeJobs)), probeLine(r.probe), r.workers)
		w("- batch completes, a backlog of %s: %s → **%d workers** used for 2d-2f and its rounds.", num(float64(o.probeBatchJobs)), probeLine(r.batchProbe), r.batchWorkers)
	} else {
		w("Worker count %d was given with -workers (no probe), for both work-offs.", r.workers)
	}
	w("")
	w("- CPU per operation over each window (warm-up included, so a little high): a commit of the ceiling (5) %s; a single enqueue (1a) %s; a refused request (1c) %s. "+
		"Server, clients and Postgres share the two cores, so 1a can pass 5 only if a whole enqueue (1c's request, its JSON, the group commit, its share of a statement) costs less CPU than one of the ceiling's commits.",
		cpuPerOp(r.ceilingCPU, r.ceiling), cpuPerOp(r.singleCPU, r.single), cpuPerOp(r.httpFloorCPU, r.httpFloor))
	w("- Single enqueues (1a), whole run with the warm-up: %s (the server's `spooled_group_commit_requests`).", groupCommitLine(r.singleStatements, r.singleRequests))
	w("- Single enqueues of %d organizations (1d), whole run with the warm-up: %s; CPU per job %s. A flush of many tenants' requests is one statement and one commit, as for one tenant.",
		r.tenants.Clients, groupCommitLine(r.tenants.Statements, r.tenants.Requests), cpuPerOp(r.tenants.CPU, r.tenants.loopResult))
	w("- End to end: %s; %d claim calls (%.1f jobs per claim)%s.", r.e2eCheck, r.e2e.Claims, float64(r.e2e.Done)/max(float64(r.e2e.Claims), 1), errNote(r.e2e.FirstErr))
	w("- CPU, spooled insert (%s wall, %.1f core-seconds available): bench process (server + HTTP clients) %.1f s, all postgres processes %.1f s.",
		r.e2eInsert.Round(100*time.Millisecond), r.e2eInsert.Seconds()*ncpu, r.e2eCPUInsert.self, r.e2eCPUInsert.postgres)
	w("- CPU, spooled work-off (%s wall, %.1f core-seconds available): bench process %.1f s, postgres %.1f s.",
		r.e2e.Elapsed.Round(100*time.Millisecond), r.e2e.Elapsed.Seconds()*ncpu, r.e2eCPU.self, r.e2eCPU.postgres)
	w("- CPU, River work-off (%s wall, %.1f core-seconds available): bench process (River) %.1f s, postgres %.1f s.",
		r.riv.Work.Round(100*time.Millisecond), r.riv.Work.Seconds()*ncpu, r.riv.CPUWork.self, r.riv.CPUWork.postgres)
	w("- WAL (pg_stat_wal deltas), spooled insert: %s.", r.walInsert.perJob(o.jobs))
	w("- WAL, spooled work-off: %s.", r.walWork.perJob(int(r.e2e.Done)))
	w("- End to end with batch completes: %s; %d claim calls%s. CPU of the work-off (%s wall): bench process %.1f s, postgres %.1f s. WAL: %s.",
		r.batch.Check, r.batch.Work.Claims, errNote(r.batch.Work.FirstErr), r.batch.Work.Elapsed.Round(100*time.Millisecond),
		r.batch.CPU.self, r.batch.CPU.postgres, r.batch.WAL.perJob(int(r.batch.Work.Done)))
	w("- WAL, River insert: %s.", r.riv.WALInsert.perJob(r.riv.Jobs))
	w("- WAL, River work-off: %s.", r.riv.WALWork.perJob(r.riv.Done))
	w("- River settings: the defaults (MaxWorkers 100, FetchCooldown 100 ms) cap River at 1,000 jobs/s by construction (at most MaxWorkers jobs per fetch, one fetch per cooldown); "+
		"%d workers with a %s cooldown lift that cap to %s jobs/s, far above what this Postgres allows, without spinning the fetch loop at the 1 ms minimum; FetchPollInterval only matters when the queue is idle. "+
		"Completions are counted from River's `EventKindJobCompleted` subscription (sent after the completer has written them) and checked against `river_job` afterwards.",
		r.riv.Settings.MaxWorkers, r.riv.Settings.FetchCooldown, num(float64(r.riv.Settings.MaxWorkers)/r.riv.Settings.FetchCooldown.Seconds()))
	w("- Sustained: latency = claim answer received − create sent (same process clock); the workers complete each job with its own call before they claim again, as the SDK workers do. "+
		"3a: %s creates answered and %s jobs started inside the window, backlog at the end %d, over %s jobs%s; of the latency, the create call itself (sent to answered) took p50 %s, p95 %s; %s. 3b: %s, %s, %d, %s%s; create call p50 %s, p95 %s; %s. "+
		"The moderate rate (-moderate-rate) is fixed so runs compare; 3b's is a quarter of the lower of 1a and 2b.",
		num(float64(r.sustained.Enqueued)), num(float64(r.sustained.Started)), r.sustained.Backlog, num(float64(r.sustained.Lat.N)), errNote(r.sustained.FirstErr),
		ms(r.sustained.EnqLat.P50), ms(r.sustained.EnqLat.P95), r.sustained.Claims.perJob(r.sustained.Started),
		num(float64(hi.Enqueued)), num(float64(hi.Started)), hi.Backlog, num(float64(hi.Lat.N)), errNote(hi.FirstErr),
		ms(hi.EnqLat.P50), ms(hi.EnqLat.P95), hi.Claims.perJob(hi.Started))
	if r.single.FirstErr != "" || r.bulk.FirstErr != "" || r.httpFloor.FirstErr != "" || r.tenants.FirstErr != "" {
		w("- First errors: single %q, bulk %q, HTTP floor %q, many tenants %q.", r.single.FirstErr, r.bulk.FirstErr, r.httpFloor.FirstErr, r.tenants.FirstErr)
	}
	for _, n := range r.notes {
		w("- %s", n)
	}
	w("")
	w("### Memory during the %s-job run", num(float64(o.jobs)))
	w("")
	w("The server ran in-process, so the figures are of the bench process (server **and** its HTTP clients):")
	w("")
	w("- peak RSS (`VmHWM` of /proc/self/status, reset through /proc/self/clear_refs just before the run): **%s**", mib(uint64(r.hwmKB)*1024))
	w("- peak memory mapped by the Go runtime (runtime/metrics `/memory/classes/total:bytes`, sampled every 50 ms; not all of it resident): %s; peak heap objects, live and not yet swept (`/memory/classes/heap/objects:bytes`): %s", mib(r.goTotal), mib(r.goHeap))
	w("")
	w("### What Postgres was doing during the work-off")
	w("")
	w("pg_stat_activity sampled every 100 ms (active backends of the bench database and autovacuum workers; \"CPU\" = no wait event):")
	w("")
	w("%s", r.pgActivity)
	w("")
	w("The same during the batch-complete work-off (2e):")
	w("")
	w("%s", r.batch.Activity)
	w("")
	w("### CPU profile of the end-to-end run")
	w("")
	w("`%s` (insert + work-off). Server goroutines carry the pprof label `side=server`, the bench's clients `side=bench`; GC workers carry none.", filepath.Join("bench", o.profile))
	w("")
	w("Whole process, `go tool pprof -top -nodecount=15 %s`:", filepath.Join("bench", o.profile))
	w("")
	w("```")
	w("%s", r.pprofAll)
	w("```")
	w("")
	w("Server goroutines only (`-tagfocus=side=server`):")
	w("")
	w("```")
	w("%s", r.pprofSrv)
	w("```")
	w("")
	w("Server goroutines only, by cumulative time (`-tagfocus=side=server -cum`):")
	w("")
	w("```")
	w("%s", r.pprofSrvCum)
	w("```")
	return b.String()
}

func errNote(s string) string {
	if s == "" {
		return ""
	}
	return "; first error: " + s
}

func atoiOr(s string, def int) int {
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	return def
}

// completeBound is a floor under the CPU a job costs end to end when
// every job is completed by a call of its own (2a-2c), from the run's own
// figures, in µs, and the most jobs per second the cores allow at it.
type completeBound struct {
	request, statements, insert float64
	rate                        float64
}

// completeCallBound adds what a job of 2c cannot do without: one HTTP
// request, costing at least what 1c's refused requests cost (their CPU
// includes the warm-up, prorated here as if it ran at the window's rate;
// a slower warm-up only lowers the floor), the claim and complete
// statements at a hundred jobs each (section 7: a coalesced complete
// carries fewer, and a smaller statement costs more per job), and the
// insert as 2a measured it. Claim calls, JSON, scheduling and group
// commit are left out, so the rate is an upper bound on 2c.
func (r *report) completeCallBound(ncpu float64) (completeBound, bool) {
	var hundred *statementCosts
	for i := range r.statements {
		if r.statements[i].Jobs == 100 {
			hundred = &r.statements[i]
		}
	}
	if hundred == nil || r.httpFloor.Units == 0 || r.o.jobs == 0 {
		return completeBound{}, false
	}
	window := r.httpFloor.Window.Seconds()
	share := window / (window + r.o.warm.Seconds())
	b := completeBound{
		request:    (r.httpFloorCPU.self + r.httpFloorCPU.postgres) * share / float64(r.httpFloor.Units) * 1e6,
		statements: hundred.PerJob["claim"] + hundred.PerJob["complete"],
		insert:     (r.e2eCPUInsert.self + r.e2eCPUInsert.postgres) / float64(r.o.jobs) * 1e6,
	}
	b.rate = ncpu / (b.request + b.statements + b.insert) * 1e6
	return b, true
}

// cpuPerOp is CPU per operation of a closed loop: the bench process (server
// and clients) and Postgres. Operations of the warm-up and the last
// unfinished ones are not counted, so it reads a little high.
func cpuPerOp(c cpuTimes, r loopResult) string {
	n := float64(max(r.Units, 1))
	return fmt.Sprintf("bench process %.0f µs, postgres %.0f µs", c.self/n*1e6, c.postgres/n*1e6)
}

// profiled runs fn under a CPU profile written to path and returns the
// CPU that this process and Postgres spent meanwhile.
func profiled(path string, fn func()) (cpuTimes, error) {
	pf, err := os.Create(path)
	if err != nil {
		return cpuTimes{}, err
	}
	defer pf.Close()
	cpu0 := readCPU()
	if err := pprof.StartCPUProfile(pf); err != nil {
		return cpuTimes{}, err
	}
	fn()
	pprof.StopCPUProfile()
	return readCPU().sub(cpu0), nil
}
