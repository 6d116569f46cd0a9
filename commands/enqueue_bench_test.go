package commands_test

import (
	"testing"
	"time"

	"github.com/spooled-go/spooled/commands"
)

// BenchmarkEnqueueBulk enqueues 100 jobs per operation and reports, besides
// the time, the write-ahead log each job cost (the server's whole log
// position moves: run it on an otherwise idle database). The log is the
// steadier figure on a noisy machine: it follows the rows and index
// entries a job writes.
func BenchmarkEnqueueBulk(b *testing.B) {
	e := newEnv(b)
	walNow := func() (bytes int64) {
		if err := e.pool.QueryRow(e.ctx, "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").Scan(&bytes); err != nil {
			b.Fatal(err)
		}
		return bytes
	}
	batch := make([]commands.NewJob, commands.MaxBulkJobs)
	for i := range batch {
		batch[i] = commands.NewJob{QueueName: "bench", Payload: payload(i)}
	}
	w0 := walNow()
	for b.Loop() {
		if _, err := e.svc.EnqueueBulk(e.ctx, e.actor, batch); err != nil {
			b.Fatal(err)
		}
	}
	w1 := walNow()
	jobs := float64(b.N * len(batch))
	b.ReportMetric(float64(w1-w0)/jobs, "wal-bytes/job")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/jobs, "ns/job")
}

// BenchmarkClaimCompleteBatch claims 100 jobs and completes them with one
// batch call per operation, from a backlog bulk-inserted before the timer
// starts, on one connection at a time: the figure is the two statements'
// time per job, most of it the database's work.
func BenchmarkClaimCompleteBatch(b *testing.B) {
	e := newEnv(b)
	batch := make([]commands.NewJob, commands.MaxBulkJobs)
	for i := range batch {
		batch[i] = commands.NewJob{QueueName: "bench", Payload: payload(i)}
	}
	// The backlog is enqueued ahead in rounds of 100 until it covers b.N.
	enqueued := 0
	items := make([]commands.CompleteItem, 0, commands.MaxBulkJobs)
	var claiming, completing time.Duration
	for b.Loop() {
		if enqueued == 0 {
			b.StopTimer()
			for range 50 {
				if _, err := e.svc.EnqueueBulk(e.ctx, e.actor, batch); err != nil {
					b.Fatal(err)
				}
			}
			enqueued = 50
			b.StartTimer()
		}
		enqueued--
		t0 := time.Now()
		jobs := e.claim("bench", "w", commands.MaxBulkJobs)
		t1 := time.Now()
		if len(jobs) != commands.MaxBulkJobs {
			b.Fatalf("claimed %d jobs, want %d", len(jobs), commands.MaxBulkJobs)
		}
		items = items[:0]
		for _, j := range jobs {
			items = append(items, commands.CompleteItem{Ref: commands.LeaseRef{JobID: j.ID.String(), WorkerID: "w", LeaseID: j.LeaseID}})
		}
		refused, err := e.svc.CompleteBatch(e.ctx, e.actor.OrgID, items)
		if err != nil {
			b.Fatal(err)
		}
		claiming += t1.Sub(t0)
		completing += time.Since(t1)
		for _, r := range refused {
			if r != nil {
				b.Fatal(r)
			}
		}
	}
	jobs := float64(b.N * commands.MaxBulkJobs)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/jobs, "ns/job")
	b.ReportMetric(float64(claiming.Nanoseconds())/jobs, "claim-ns/job")
	b.ReportMetric(float64(completing.Nanoseconds())/jobs, "complete-ns/job")
}

// BenchmarkClaimEmptyQueue is a polling worker's claim of a queue with
// nothing ready (a job scheduled later waits in it), the most common claim
// of an idle deployment; by an unregistered worker and by a registered one,
// as SDK workers are (the claim statement locks a registered worker's row).
func BenchmarkClaimEmptyQueue(b *testing.B) {
	e := newEnv(b)
	later := e.clk.Now().Add(time.Hour)
	e.enqueue(e.actor, commands.NewJob{QueueName: "idle", ScheduledAt: &later})
	w, err := e.svc.RegisterWorker(e.ctx, e.actor, commands.NewWorker{QueueName: "idle", Hostname: "h", MaxConcurrency: ptr(10)})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, worker string }{{"unregistered", "w"}, {"registered", w.ID}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				jobs, err := e.svc.Claim(e.ctx, e.actor.OrgID, commands.ClaimRequest{QueueName: "idle", WorkerID: c.worker, Limit: 10})
				if err != nil || len(jobs) != 0 {
					b.Fatalf("claimed %d jobs, %v", len(jobs), err)
				}
			}
		})
	}
}

// BenchmarkValidateBulk validates a bulk call's 100 jobs, as EnqueueBulk
// does for every call before its statement: per-job work a profile of the
// insert shows, with no database behind it.
func BenchmarkValidateBulk(b *testing.B) {
	svc := commands.New(nil, nil, nil, commands.Defaults{MaxPayload: 1 << 20})
	batch := make([]commands.NewJob, commands.MaxBulkJobs)
	for i := range batch {
		batch[i] = commands.NewJob{QueueName: "bench-queue_1.a", Payload: payload(i)}
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := svc.ValidateBulk(batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/job")
}
