package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/spooled-go/spooled/queries"
)

// ---- statement costs --------------------------------------------------------
//
// The Postgres CPU each statement of a job's life costs, read from its
// backend's /proc/<pid>/stat. Throughput and latency on this shared VM move
// by a third between runs; the CPU a backend spends on a statement moves by
// about a tenth, so a statement change is judged here first. Each kind of
// statement runs on a connection of its own, in cycles of one job (what a
// moderate load looks like: group commit and claims serve one job at a
// time) and of a hundred (the end-to-end runs), against a running server,
// whose hot-table vacuum keeps the queue tables as they are in the other
// scenarios.

// statementKinds are the kinds measured, in the order of a job's life.
var statementKinds = []string{"enqueue", "probe", "claim", "complete"}

// statementCosts is backend CPU per job, in µs, by kind; Kernel is the part
// of it spent in the kernel (sending results, writing and flushing WAL).
type statementCosts struct {
	Jobs, Cycles int
	PerJob       map[string]float64
	Kernel       map[string]float64
}

func (c statementCosts) total() float64 {
	t := 0.0
	for _, v := range c.PerJob {
		t += v
	}
	return t
}

// backendCPU is the CPU a connection's backend has used so far, and the
// part of it in the kernel.
func backendCPU(c *pgx.Conn) (total, kernel time.Duration, err error) {
	p, ok := readProcStat(strconv.Itoa(int(c.PgConn().PID())))
	if !ok {
		return 0, 0, fmt.Errorf("backend CPU: no /proc entry for backend %d (is Postgres on this machine?)", c.PgConn().PID())
	}
	sec := func(v float64) time.Duration { return time.Duration(v * float64(time.Second)) }
	return sec(p.user + p.kernel), sec(p.kernel), nil
}

// runStatementCosts runs cycles of enqueue (JobEnqueueBatch), probe
// (QueueClaimProbe), claim (the pipelined PlanPin, ClaimCapGate, ClaimLocksMulti and
// JobClaimOne, as one worker's claim runs) and complete (JobCompleteBatch) of jobs jobs each, on s's
// schema, and returns each kind's backend CPU per job.
func runStatementCosts(ctx context.Context, s *server, jobs, cycles int) (statementCosts, error) {
	res := statementCosts{Jobs: jobs, Cycles: cycles, PerJob: map[string]float64{}, Kernel: map[string]float64{}}
	surl, err := schemaURL(s.dbURL, s.schema)
	if err != nil {
		return res, err
	}
	conns := map[string]*pgx.Conn{}
	defer func() {
		for _, c := range conns {
			_ = c.Close(context.Background())
		}
	}()
	for _, kind := range statementKinds {
		c, err := pgx.Connect(ctx, surl)
		if err != nil {
			return res, err
		}
		conns[kind] = c
	}
	q := queries.New()
	const org, worker = "bench-statements", "statements-worker"
	queue := "statements-" + strconv.Itoa(jobs)
	cycle := func() error {
		p, err := enqueueParams(org, queue, jobs)
		if err != nil {
			return err
		}
		if _, err := q.JobEnqueueBatch(ctx, conns["enqueue"], p); err != nil {
			return fmt.Errorf("enqueue: %w", err)
		}
		pr, err := q.QueueClaimProbe(ctx, conns["probe"], queries.QueueClaimProbeParams{OrganizationID: org, QueueName: queue})
		if err != nil || !pr.Ready {
			return fmt.Errorf("probe: ready %v, %v", pr.Ready, err)
		}
		// One worker's claim: the server runs JobClaimOne for it.
		rows, err := q.ClaimOnePipelined(ctx, conns["claim"],
			queries.ClaimLocksMultiParams{OrganizationID: org, QueueName: queue, WorkerIds: []string{worker}},
			queries.JobClaimOneParams{WorkerID: worker, Lim: int32(jobs), LeaseSecs: 300,
				Actor: "worker:" + worker, OrganizationID: org, QueueName: queue})
		if err != nil || len(rows) != jobs {
			return fmt.Errorf("claim: %d of %d jobs, %v", len(rows), jobs, err)
		}
		cp := queries.JobCompleteBatchParams{}
		for _, r := range rows {
			cp.JobIds = append(cp.JobIds, r.ID)
			cp.OrganizationIds = append(cp.OrganizationIds, org)
			cp.WorkerIds = append(cp.WorkerIds, worker)
			cp.LeaseIds = append(cp.LeaseIds, *r.LeaseID)
			cp.Results = append(cp.Results, json.RawMessage(`{"ok":true}`))
		}
		done, err := q.JobCompleteBatch(ctx, conns["complete"], cp)
		if err != nil || len(done) != jobs {
			return fmt.Errorf("complete: %d of %d jobs, %v", len(done), jobs, err)
		}
		return nil
	}
	// Warm-up: statements prepared, plans cached, caches filled.
	for range max(cycles/10, 10) {
		if err := cycle(); err != nil {
			return res, err
		}
	}
	before, beforeKernel := map[string]time.Duration{}, map[string]time.Duration{}
	for kind, c := range conns {
		if before[kind], beforeKernel[kind], err = backendCPU(c); err != nil {
			return res, err
		}
	}
	for range cycles {
		if err := cycle(); err != nil {
			return res, err
		}
	}
	for kind, c := range conns {
		after, afterKernel, err := backendCPU(c)
		if err != nil {
			return res, err
		}
		n := float64(cycles * jobs)
		res.PerJob[kind] = float64((after - before[kind]).Microseconds()) / n
		res.Kernel[kind] = float64((afterKernel - beforeKernel[kind]).Microseconds()) / n
	}
	return res, nil
}

// statementCostRuns measures statements of one job and of a hundred, on a
// server of its own.
func statementCostRuns(ctx context.Context, o options) ([]statementCosts, error) {
	s, err := startServer(ctx, o, "bench_statements")
	if err != nil {
		return nil, err
	}
	defer s.close()
	var out []statementCosts
	for _, run := range []struct{ jobs, cycles int }{{1, o.statementCycles}, {100, max(o.statementCycles/10, 1)}} {
		c, err := runStatementCosts(ctx, s, run.jobs, run.cycles)
		if err != nil {
			return nil, fmt.Errorf("statement costs, %d job(s) per statement: %w", run.jobs, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// statementCostsLine prints one run's figures.
func statementCostsLine(c statementCosts) string {
	var parts []string
	for _, kind := range statementKinds {
		parts = append(parts, fmt.Sprintf("%s %.0f (kernel %.0f)", kind, c.PerJob[kind], c.Kernel[kind]))
	}
	return fmt.Sprintf("%d job(s) per statement, %d cycles: Postgres CPU per job (µs): %s; total %.0f",
		c.Jobs, c.Cycles, strings.Join(parts, ", "), c.total())
}

// ---- paired schemas ----------------------------------------------------------
//
// A schema change (an index, a collation, a table's layout) is judged by
// running the same enqueue statement on two databases, one migrated before
// the change and one after, on a connection each, alternating statement by
// statement. The machine's speed drifts by a fifth within minutes here,
// and both backends see the same drift, so the ratio of their CPU per job
// holds to a few per cent where back-to-back runs do not.

// enqueueParams is one JobEnqueueBatch of jobs fresh jobs of org's queue.
func enqueueParams(org, queue string, jobs int) (queries.JobEnqueueBatchParams, error) {
	payload := json.RawMessage(`{"to":"someone@example.com","n":1}`)
	p := queries.JobEnqueueBatchParams{DefaultMaxRetries: 3, DefaultTimeoutSecs: 300}
	for range jobs {
		id, err := uuid.NewV7()
		if err != nil {
			return p, err
		}
		p.Ids = append(p.Ids, id)
		p.OrganizationIds = append(p.OrganizationIds, org)
		p.Actors = append(p.Actors, "bench")
		p.QueueNames = append(p.QueueNames, queue)
		p.Payloads = append(p.Payloads, payload)
	}
	// The optional columns stay nil (NULL), as the server sends them for a
	// batch whose jobs set none of them.
	return p, nil
}

// schemaPair enqueues rounds statements of a hundred jobs into each of the
// already migrated databases at urls, alternating, and prints each one's
// backend CPU per job. The organization id has the form the server mints
// (a UUID), since its width decides what index comparisons cost.
func schemaPair(ctx context.Context, urls []string, rounds int) error {
	const jobs = 100
	org, queue := uuid.NewString(), "paired"
	conns := make([]*pgx.Conn, len(urls))
	for i, u := range urls {
		c, err := pgx.Connect(ctx, u)
		if err != nil {
			return fmt.Errorf("connect %s: %w", u, err)
		}
		defer c.Close(context.Background())
		conns[i] = c
	}
	q := queries.New()
	enqueue := func(c *pgx.Conn) error {
		p, err := enqueueParams(org, queue, jobs)
		if err != nil {
			return err
		}
		if _, err := q.JobEnqueueBatch(ctx, c, p); err != nil {
			return fmt.Errorf("enqueue: %w", err)
		}
		return nil
	}
	run := func(n int) error {
		for r := range n {
			// Each round starts with a different database, so neither always
			// runs right after the other.
			for k := range conns {
				if err := enqueue(conns[(k+r)%len(conns)]); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := run(20); err != nil { // plans cached, caches filled
		return err
	}
	// A backend's CPU grows only while it runs its own statements, so the
	// difference over the whole run is what its statements cost.
	spent := make([]time.Duration, len(conns))
	for i, c := range conns {
		before, _, err := backendCPU(c)
		if err != nil {
			return err
		}
		spent[i] = -before
	}
	if err := run(rounds); err != nil {
		return err
	}
	for i, c := range conns {
		after, _, err := backendCPU(c)
		if err != nil {
			return err
		}
		spent[i] += after
	}
	for i, u := range urls {
		fmt.Printf("%s: enqueue %.2f µs of Postgres CPU per job (%d statements of %d)\n",
			u, float64(spent[i].Microseconds())/float64(rounds*jobs), rounds, jobs)
	}
	return nil
}
