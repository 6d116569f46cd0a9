package projections

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spooled-go/spooled/internal/pgdb"
	"github.com/spooled-go/spooled/queries"
)

// SwapStats describes a rebuild swapped in.
type SwapStats struct {
	Rebuild Stats
	// Delta is how many jobs had events the rebuild's snapshot missed and
	// were folded again during the pause.
	Delta int
	// Pause is how long writers of the job projections waited: from the
	// moment the exclusive locks were held to the commit of the swap.
	Pause time.Duration
	// Attempts is how many tries taking the locks needed.
	Attempts int
}

// RebuildAndSwap rebuilds the job projections from the log while the
// server keeps serving, then swaps them in. The bulk of the work (folding
// the whole log into the *_rebuild tables) holds no lock on the live
// tables. Then, with writers paused (readers go on), the jobs whose
// streams gained events after the rebuild's snapshot are folded again from
// the log, and the rebuilt tables replace the live ones by renaming. The
// pause is that delta plus the renames. progress hears events read, out of
// total, during the bulk phase.
func RebuildAndSwap(ctx context.Context, pool *pgxpool.Pool, progress func(done, total int64)) (SwapStats, error) {
	q := queries.New()
	total, err := q.EventsJobCount(ctx, pool)
	if err != nil {
		return SwapStats{}, fmt.Errorf("count job events: %w", err)
	}
	var out SwapStats
	var snapshot string
	err = inSnapshot(ctx, pool, true, func(tx pgx.Tx) error {
		// The first statement fixes the transaction's snapshot; record it.
		if snapshot, err = q.RebuildSnapshot(ctx, tx); err != nil {
			return fmt.Errorf("read snapshot: %w", err)
		}
		var report func(int64)
		if progress != nil {
			report = func(done int64) { progress(done, total) }
		}
		out.Rebuild, err = rebuild(ctx, tx, report)
		return err
	})
	if err != nil {
		return SwapStats{}, err
	}

	// Catch up without locks: re-fold the jobs written since the last
	// snapshot, in a new snapshot, until few are left, so the pause below
	// has little to do.
	for round := 0; round < catchUpRounds; round++ {
		var delta int
		err = inSnapshot(ctx, pool, true, func(tx pgx.Tx) error {
			next, err := q.RebuildSnapshot(ctx, tx)
			if err != nil {
				return fmt.Errorf("read snapshot: %w", err)
			}
			streams, err := q.RebuildDeltaStreams(ctx, tx, snapshot)
			if err != nil {
				return fmt.Errorf("find jobs written during the rebuild: %w", err)
			}
			if err := refold(ctx, tx, q, streams); err != nil {
				return err
			}
			delta, snapshot = len(streams), next
			return nil
		})
		if err != nil {
			return SwapStats{}, err
		}
		if delta <= smallDelta {
			break
		}
	}

	// Writers take the three tables' locks in different orders, so waiting
	// for all of them could deadlock with a writer, and deadlock detection
	// might abort the writer. Instead the swap waits at most swapLockWait
	// for its locks (well under deadlock_timeout), gives up and tries
	// again: writers wait at most that long each time and never fail.
	err = pgdb.RetryOnLockTimeout(ctx, swapAttempts, func(attempt int) error {
		return pgdb.WithTx(ctx, pool, func(tx pgx.Tx) error {
			if err := q.TxLockTimeout(ctx, tx, swapLockWait.String()); err != nil {
				return fmt.Errorf("bound lock waits: %w", err)
			}
			if err := q.RebuildLockLive(ctx, tx); err != nil {
				return fmt.Errorf("pause writers: %w", err)
			}
			paused := time.Now()
			streams, err := q.RebuildDeltaStreams(ctx, tx, snapshot)
			if err != nil {
				return fmt.Errorf("find jobs written during the rebuild: %w", err)
			}
			if err := refold(ctx, tx, q, streams); err != nil {
				return err
			}
			if err := q.RebuildSwap(ctx, tx); err != nil {
				return fmt.Errorf("swap tables: %w", err)
			}
			out.Delta = len(streams)
			out.Pause = time.Since(paused)
			out.Attempts = attempt
			return nil
		})
	})
	if err != nil {
		return SwapStats{}, err
	}
	return out, nil
}

const (
	// swapLockWait bounds each wait for the live tables' locks: long enough
	// for writers' statements in flight to finish, far under Postgres's
	// deadlock_timeout (1 s), so a lock-order collision with a writer ends
	// with the swap retrying rather than the writer aborted.
	swapLockWait = 20 * time.Millisecond
	swapAttempts = 500
	// catchUpRounds and smallDelta bound the lock-free catch-up.
	catchUpRounds = 5
	smallDelta    = 200
)

// refold replaces the rebuilt rows of the given job streams with the fold
// of all their events.
func refold(ctx context.Context, tx pgx.Tx, q *queries.Queries, streams []string) error {
	if len(streams) == 0 {
		return nil
	}
	ids := make([]uuid.UUID, 0, len(streams))
	for _, s := range streams {
		id, err := uuid.Parse(s)
		if err != nil {
			return fmt.Errorf("job stream %q is not a job id: %w", s, err)
		}
		ids = append(ids, id)
	}
	if err := q.RebuildDeleteStreams(ctx, tx, ids); err != nil {
		return fmt.Errorf("clear re-folded jobs: %w", err)
	}
	rows, err := q.EventsJobStreamsIn(ctx, tx, streams)
	if err != nil {
		return fmt.Errorf("read re-folded jobs' events: %w", err)
	}
	w := &writer{q: q}
	var cur JobState
	open := false
	for _, row := range rows {
		if open && row.StreamID != cur.streamID {
			if err := w.add(ctx, tx, cur); err != nil {
				return err
			}
			cur = JobState{}
		}
		open = true
		if err := cur.Apply(JobEvent{
			OrganizationID: row.OrganizationID, StreamID: row.StreamID, Seq: row.StreamSeq,
			Type: row.EventType, QueueName: row.QueueName, Data: row.Data, OccurredAt: row.OccurredAt,
		}); err != nil {
			return fmt.Errorf("fold: %w", err)
		}
	}
	if open {
		if err := w.add(ctx, tx, cur); err != nil {
			return err
		}
	}
	if err := w.flush(ctx, tx); err != nil {
		return err
	}
	if err := q.RebuildStampCapped(ctx, tx); err != nil {
		return fmt.Errorf("mark re-folded leases of capped queues: %w", err)
	}
	return nil
}
