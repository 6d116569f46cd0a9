package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// activitySampler polls pg_stat_activity: for every active backend of the
// bench database (and autovacuum workers), its wait event ("CPU" when none)
// and the statement's sqlc name. A sampling profile of the database side.
type activitySampler struct {
	stop    chan struct{}
	done    chan struct{}
	samples int
	counts  map[string]int
}

const activityQuery = `
SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') AS wait,
       CASE WHEN backend_type <> 'client backend' THEN backend_type
            ELSE coalesce(substring(query FROM '-- name: (\w+)'), left(regexp_replace(query, '\s+', ' ', 'g'), 40)) END AS what
FROM pg_stat_activity
WHERE pid <> pg_backend_pid()
  AND ((datname = current_database() AND state = 'active') OR backend_type = 'autovacuum worker')`

func startActivitySampler(pool *pgxpool.Pool, every time.Duration) *activitySampler {
	s := &activitySampler{stop: make(chan struct{}), done: make(chan struct{}), counts: map[string]int{}}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			rows, err := pool.Query(ctx, activityQuery)
			if err == nil {
				s.samples++
				for rows.Next() {
					var wait, what string
					if rows.Scan(&wait, &what) == nil {
						s.counts[what+" | "+wait]++
					}
				}
				rows.Close()
			}
			cancel()
		}
	}()
	return s
}

// finish stops sampling and renders the top entries as a markdown table:
// the average number of backends in each (statement, wait) state.
func (s *activitySampler) finish(top int) string {
	close(s.stop)
	<-s.done
	if s.samples == 0 {
		return "(no samples)"
	}
	type kv struct {
		k string
		n int
	}
	var all []kv
	total := 0
	for k, n := range s.counts {
		all = append(all, kv{k, n})
		total += n
	}
	slices.SortFunc(all, func(a, b kv) int { return b.n - a.n })
	var b strings.Builder
	fmt.Fprintf(&b, "%d samples; on average %.2f backends active.\n\n", s.samples, float64(total)/float64(s.samples))
	b.WriteString("| statement (sqlc name) or process | wait event | avg. backends | share |\n|---|---|---:|---:|\n")
	for i, e := range all {
		if i == top {
			break
		}
		what, wait, _ := strings.Cut(e.k, " | ")
		fmt.Fprintf(&b, "| %s | %s | %.2f | %.0f%% |\n", what, wait, float64(e.n)/float64(s.samples), 100*float64(e.n)/float64(total))
	}
	return strings.TrimRight(b.String(), "\n")
}

// walStats is a reading of pg_stat_wal (cluster-wide).
type walStats struct {
	Records, FPI, Bytes, BuffersFull, Writes, Syncs float64
}

func readWAL(ctx context.Context, pool *pgxpool.Pool) (walStats, error) {
	var w walStats
	err := pool.QueryRow(ctx, `SELECT wal_records::float8, wal_fpi::float8, wal_bytes::float8, wal_buffers_full::float8,
		wal_write::float8, wal_sync::float8 FROM pg_stat_wal`).Scan(&w.Records, &w.FPI, &w.Bytes, &w.BuffersFull, &w.Writes, &w.Syncs)
	return w, err
}

func (w walStats) sub(o walStats) walStats {
	return walStats{w.Records - o.Records, w.FPI - o.FPI, w.Bytes - o.Bytes, w.BuffersFull - o.BuffersFull, w.Writes - o.Writes, w.Syncs - o.Syncs}
}

// perJob renders the WAL a run wrote, per job.
func (w walStats) perJob(jobs int) string {
	if jobs == 0 {
		return "–"
	}
	n := float64(jobs)
	return fmt.Sprintf("%.1f records, %.2f full-page images, %.0f bytes, %.2f WAL flushes (fsync) per job; %.0f MiB in all",
		w.Records/n, w.FPI/n, w.Bytes/n, w.Syncs/n, w.Bytes/(1<<20))
}

// settle starts a timed end-to-end run, ours or River's, from the same
// state: a CHECKPOINT first writes out what earlier scenarios and dropped
// schemas left dirty, so a run pays for no other run's WAL and its
// full-page images come from its own writes alone. Without it, whether a
// checkpoint fell inside a run depended on the scenarios before it. A
// role that may not checkpoint runs on without, and says so.
func settle(ctx context.Context, pool *pgxpool.Pool) {
	if _, err := pool.Exec(ctx, "CHECKPOINT"); err != nil {
		progress("CHECKPOINT before the run failed (%v): the run starts from whatever earlier scenarios left", err)
	}
}
