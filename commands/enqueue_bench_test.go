package commands_test

import (
	"testing"

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
