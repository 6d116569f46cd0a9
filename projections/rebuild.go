package projections

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/spooled-go/spooled/queries"
)

const (
	// pageSize bounds the log rows held in memory at once.
	pageSize = 5000
	// batchSize bounds the rebuilt rows held before a COPY.
	batchSize = 1000
	// maxDiffRows bounds the ids a Report lists per table: past a few
	// hundred differing rows the cause is systemic and more ids do not help
	// find it.
	maxDiffRows = 1000
)

// TxBeginner starts a transaction with options; *pgxpool.Pool and *pgx.Conn
// are both one.
type TxBeginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// Stats describes one rebuild.
type Stats struct {
	Events     int64 // job events read from the log
	Jobs       int64 // rows written to jobs_rebuild
	Pending    int64 // rows written to pending_jobs_rebuild
	Processing int64 // rows written to processing_jobs_rebuild
	Duration   time.Duration
}

// Rebuild folds the whole job log into jobs_rebuild, pending_jobs_rebuild
// and processing_jobs_rebuild and commits them, so they can be inspected or
// swapped in. They stay until the next Rebuild replaces them; Verify, which
// rolls back, leaves them as they are.
//
// The log is read and the tables written in one REPEATABLE READ transaction:
// the rebuilt rows are the fold of the log as of one snapshot, however much
// is appended meanwhile.
func Rebuild(ctx context.Context, db TxBeginner) (Stats, error) {
	var st Stats
	err := inSnapshot(ctx, db, true, func(tx pgx.Tx) error {
		var err error
		st, err = rebuild(ctx, tx, nil)
		return err
	})
	if err != nil {
		return Stats{}, err
	}
	return st, nil
}

// Report is the outcome of Verify: the ids whose rows differ between each
// live table and its rebuild.
type Report struct {
	Stats      Stats
	Jobs       TableDiff
	Pending    TableDiff
	Processing TableDiff
}

// TableDiff lists the ids of one table's differing rows by where the row
// is. An id in Live only is a row the log does not account for; in Rebuilt
// only, a row the live table lacks; in both, a row whose columns differ.
type TableDiff struct {
	Live    []uuid.UUID
	Rebuilt []uuid.UUID
	// Truncated says the diff stopped at its row limit and more ids differ.
	Truncated bool
}

// Clean reports whether every live table equals its rebuild.
func (r Report) Clean() bool {
	return r.Jobs.empty() && r.Pending.empty() && r.Processing.empty()
}

func (d TableDiff) empty() bool { return len(d.Live) == 0 && len(d.Rebuilt) == 0 }

// String summarizes the report for an operator: the counts, then each
// differing id.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "rebuilt %d jobs (%d pending, %d processing) from %d events in %s: ",
		r.Stats.Jobs, r.Stats.Pending, r.Stats.Processing, r.Stats.Events, r.Stats.Duration.Round(time.Millisecond))
	if r.Clean() {
		b.WriteString("projections match the log")
		return b.String()
	}
	b.WriteString("projections differ from the log")
	for _, t := range []struct {
		name string
		d    TableDiff
	}{{"jobs", r.Jobs}, {"pending_jobs", r.Pending}, {"processing_jobs", r.Processing}} {
		for _, side := range []struct {
			name string
			ids  []uuid.UUID
		}{{"live", t.d.Live}, {"rebuilt", t.d.Rebuilt}} {
			for _, id := range side.ids {
				fmt.Fprintf(&b, "\n  %s %s: %s", t.name, side.name, id)
			}
		}
		if t.d.Truncated {
			fmt.Fprintf(&b, "\n  %s: more than %d differences, list cut short", t.name, maxDiffRows)
		}
	}
	return b.String()
}

// Verify rebuilds the projections and compares them with the live tables.
// Rebuild and comparison run in one REPEATABLE READ transaction, so the live
// tables are read at the snapshot the log was folded at: writers that commit
// meanwhile cannot show up as differences. The transaction is rolled back:
// a verify leaves the rebuild tables as it found them.
func Verify(ctx context.Context, db TxBeginner) (Report, error) {
	var r Report
	err := inSnapshot(ctx, db, false, func(tx pgx.Tx) error {
		var err error
		if r.Stats, err = rebuild(ctx, tx, nil); err != nil {
			return err
		}
		q := queries.New()
		jobs, err := q.RebuildDiffJobs(ctx, tx, maxDiffRows+1)
		if err != nil {
			return fmt.Errorf("diff jobs: %w", err)
		}
		for _, row := range jobs {
			r.Jobs.add(row.Side, row.ID)
		}
		pending, err := q.RebuildDiffPending(ctx, tx, maxDiffRows+1)
		if err != nil {
			return fmt.Errorf("diff pending_jobs: %w", err)
		}
		for _, row := range pending {
			r.Pending.add(row.Side, row.JobID)
		}
		processing, err := q.RebuildDiffProcessing(ctx, tx, maxDiffRows+1)
		if err != nil {
			return fmt.Errorf("diff processing_jobs: %w", err)
		}
		for _, row := range processing {
			r.Processing.add(row.Side, row.JobID)
		}
		return nil
	})
	if err != nil {
		return Report{}, err
	}
	return r, nil
}

func (d *TableDiff) add(side string, id uuid.UUID) {
	if len(d.Live)+len(d.Rebuilt) >= maxDiffRows {
		d.Truncated = true
		return
	}
	if side == "live" {
		d.Live = append(d.Live, id)
	} else {
		d.Rebuilt = append(d.Rebuilt, id)
	}
}

// inSnapshot runs fn in a REPEATABLE READ transaction and commits it when
// commit is set and fn succeeds, else rolls it back. pgdb.WithTx cannot set
// the isolation level, so this keeps its discipline: the rollback runs on a
// context that cannot be cancelled, so a caller that gives up never leaves a
// transaction open on a pooled connection.
func inSnapshot(ctx context.Context, db TxBeginner, commit bool, fn func(pgx.Tx) error) error {
	tx, err := db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		return fmt.Errorf("begin repeatable read transaction: %w", err)
	}
	if err := fn(tx); err != nil || !commit {
		if rbErr := tx.Rollback(context.WithoutCancel(ctx)); rbErr != nil && err == nil {
			return fmt.Errorf("roll back: %w", rbErr)
		}
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit rebuild: %w", err)
	}
	return nil
}

// rebuild replaces the rebuild tables' rows with the fold of the log as tx
// sees it. Memory stays bounded by one page of events, one job's state and
// one batch per table, whatever the size of the log. progress, when set,
// hears the running count of events read after each page.
func rebuild(ctx context.Context, tx pgx.Tx, progress func(events int64)) (Stats, error) {
	start := time.Now()
	q := queries.New()
	if err := q.RebuildTruncate(ctx, tx); err != nil {
		return Stats{}, fmt.Errorf("truncate rebuild tables: %w", err)
	}
	w := &writer{q: q}
	var cur JobState
	open := false
	after := queries.EventsJobStreamsAfterParams{AfterStream: "", AfterSeq: 0, MaxRows: pageSize}
	for {
		page, err := q.EventsJobStreamsAfterPinned(ctx, tx, after)
		if err != nil {
			return Stats{}, fmt.Errorf("read job events after %s/%d: %w", after.AfterStream, after.AfterSeq, err)
		}
		for _, row := range page {
			// A stream's events are contiguous in (stream, seq) order, so a
			// new stream id means the previous job is complete.
			if open && row.StreamID != cur.streamID {
				if err := w.add(ctx, tx, cur); err != nil {
					return Stats{}, err
				}
				cur = JobState{}
			}
			open = true
			if err := cur.Apply(JobEvent{
				OrganizationID: row.OrganizationID, StreamID: row.StreamID, Seq: row.StreamSeq,
				Type: row.EventType, QueueName: row.QueueName, Data: row.Data, OccurredAt: row.OccurredAt,
			}); err != nil {
				return Stats{}, fmt.Errorf("fold: %w", err)
			}
			w.stats.Events++
		}
		if progress != nil {
			progress(w.stats.Events)
		}
		if len(page) < pageSize {
			break
		}
		last := page[len(page)-1]
		after.AfterStream, after.AfterSeq = last.StreamID, last.StreamSeq
	}
	if open {
		if err := w.add(ctx, tx, cur); err != nil {
			return Stats{}, err
		}
	}
	if err := w.flush(ctx, tx); err != nil {
		return Stats{}, err
	}
	if err := q.RebuildStampCapped(ctx, tx); err != nil {
		return Stats{}, fmt.Errorf("mark rebuilt leases of capped queues: %w", err)
	}
	w.stats.Duration = time.Since(start)
	return w.stats, nil
}

// writer batches folded rows into COPYs of the rebuild tables.
type writer struct {
	q          *queries.Queries
	jobs       []queries.RebuildInsertJobsParams
	pending    []queries.RebuildInsertPendingParams
	processing []queries.RebuildInsertProcessingParams
	stats      Stats
}

func (w *writer) add(ctx context.Context, tx pgx.Tx, s JobState) error {
	if s.headless {
		return fmt.Errorf("job %s: history starts after dropped events with no job.snapshot", s.streamID)
	}
	if s.Job != nil {
		w.jobs = append(w.jobs, insertParams(*s.Job))
	}
	if s.Pending != nil {
		w.pending = append(w.pending, queries.RebuildInsertPendingParams(*s.Pending))
	}
	if s.Processing != nil {
		// capped is not the fold's: RebuildStampCapped sets it from the
		// queues' configuration once the rows are in.
		p := s.Processing
		w.processing = append(w.processing, queries.RebuildInsertProcessingParams{
			JobID: p.JobID, OrganizationID: p.OrganizationID, QueueName: p.QueueName, WorkerID: p.WorkerID,
			LeaseID: p.LeaseID, LeaseExpiresAt: p.LeaseExpiresAt, ClaimedAt: p.ClaimedAt,
		})
	}
	if len(w.jobs) >= batchSize || len(w.pending) >= batchSize || len(w.processing) >= batchSize {
		return w.flush(ctx, tx)
	}
	return nil
}

func (w *writer) flush(ctx context.Context, tx pgx.Tx) error {
	if len(w.jobs) > 0 {
		n, err := w.q.RebuildInsertJobs(ctx, tx, w.jobs)
		if err != nil {
			return fmt.Errorf("copy into jobs_rebuild: %w", err)
		}
		w.stats.Jobs += n
		w.jobs = w.jobs[:0]
	}
	if len(w.pending) > 0 {
		n, err := w.q.RebuildInsertPending(ctx, tx, w.pending)
		if err != nil {
			return fmt.Errorf("copy into pending_jobs_rebuild: %w", err)
		}
		w.stats.Pending += n
		w.pending = w.pending[:0]
	}
	if len(w.processing) > 0 {
		n, err := w.q.RebuildInsertProcessing(ctx, tx, w.processing)
		if err != nil {
			return fmt.Errorf("copy into processing_jobs_rebuild: %w", err)
		}
		w.stats.Processing += n
		w.processing = w.processing[:0]
	}
	return nil
}

// insertParams is a folded job as the rebuild's insert takes it: every
// column but dead_status, which Postgres generates.
func insertParams(j queries.Job) queries.RebuildInsertJobsParams {
	return queries.RebuildInsertJobsParams{
		ID: j.ID, OrganizationID: j.OrganizationID, QueueName: j.QueueName, Status: j.Status,
		Payload: j.Payload, Result: j.Result, RetryCount: j.RetryCount, MaxRetries: j.MaxRetries,
		LastError: j.LastError, CreatedAt: j.CreatedAt, ScheduledAt: j.ScheduledAt, StartedAt: j.StartedAt,
		CompletedAt: j.CompletedAt, ExpiresAt: j.ExpiresAt, Priority: j.Priority, Tags: j.Tags,
		TimeoutSeconds: j.TimeoutSeconds, ParentJobID: j.ParentJobID, CompletionWebhook: j.CompletionWebhook,
		AssignedWorkerID: j.AssignedWorkerID, LeaseID: j.LeaseID, LeaseExpiresAt: j.LeaseExpiresAt,
		IdempotencyKey: j.IdempotencyKey, UpdatedAt: j.UpdatedAt, WorkflowID: j.WorkflowID,
		DependencyMode: j.DependencyMode, DependenciesMet: j.DependenciesMet, Version: j.Version,
	}
}
