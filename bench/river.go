package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// riverVersion is the River module version linked into this binary.
func riverVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/riverqueue/river" {
				return d.Version
			}
		}
	}
	return "unknown"
}

type benchArgs struct {
	N int `json:"n"`
}

func (benchArgs) Kind() string { return "bench" }

type noopWorker struct {
	river.WorkerDefaults[benchArgs]
}

func (noopWorker) Work(context.Context, *river.Job[benchArgs]) error { return nil }

type riverSettings struct {
	MaxWorkers    int
	FetchCooldown time.Duration
	FetchPoll     time.Duration
	PoolConns     int32
	Batch         int
	Inserters     int
}

func (s riverSettings) String() string {
	return fmt.Sprintf("MaxWorkers %d, FetchCooldown %s, FetchPollInterval %s, pool %d conns",
		s.MaxWorkers, s.FetchCooldown, s.FetchPoll, s.PoolConns)
}

type riverResult struct {
	Settings           riverSettings
	Jobs               int
	Insert             time.Duration
	Work               time.Duration
	Done               int
	TimedOut           bool
	CPUInsert, CPUWork cpuTimes
	WALInsert, WALWork walStats
}

func (r riverResult) insertRate() float64 { return float64(r.Jobs) / r.Insert.Seconds() }
func (r riverResult) workRate() float64   { return float64(r.Done) / r.Work.Seconds() }
func (r riverResult) overallRate() float64 {
	return float64(r.Done) / (r.Insert + r.Work).Seconds()
}

// runRiver migrates River into a fresh schema of the bench database,
// inserts jobs with InsertMany in batches, then starts a client with a no-op
// worker and times until every job's completion has been reported.
func runRiver(ctx context.Context, dbURL, schema string, jobs int, st riverSettings, limit time.Duration) (riverResult, error) {
	res := riverResult{Settings: st, Jobs: jobs}
	if err := freshSchema(ctx, dbURL, schema); err != nil {
		return res, err
	}
	defer dropSchema(dbURL, schema)
	pcfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return res, err
	}
	pcfg.MaxConns = st.PoolConns
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return res, err
	}
	defer pool.Close()
	driver := riverpgxv5.New(pool)
	migrator, err := rivermigrate.New(driver, &rivermigrate.Config{Schema: schema})
	if err != nil {
		return res, err
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return res, fmt.Errorf("rivermigrate: %w", err)
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &noopWorker{})
	client, err := river.NewClient(driver, &river.Config{
		Schema:            schema,
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: st.MaxWorkers}},
		Workers:           workers,
		FetchCooldown:     st.FetchCooldown,
		FetchPollInterval: st.FetchPoll,
		Logger:            slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return res, err
	}

	// Insert: batches of st.Batch from st.Inserters goroutines.
	batches := make(chan int, jobs/st.Batch+1)
	for first := 0; first < jobs; first += st.Batch {
		batches <- first
	}
	close(batches)
	var (
		wg   sync.WaitGroup
		once sync.Once
		ierr error
	)
	settle(ctx, pool)
	ictx, icancel := context.WithTimeout(ctx, limit)
	defer icancel()
	wal0, _ := readWAL(ctx, pool)
	cpu0 := readCPU()
	t0 := time.Now()
	for range st.Inserters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			params := make([]river.InsertManyParams, 0, st.Batch)
			for first := range batches {
				params = params[:0]
				for i := first; i < min(first+st.Batch, jobs); i++ {
					params = append(params, river.InsertManyParams{Args: benchArgs{N: i}})
				}
				if _, err := client.InsertMany(ictx, params); err != nil {
					once.Do(func() { ierr = err; icancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	res.Insert = time.Since(t0)
	if ierr != nil {
		return res, fmt.Errorf("InsertMany: %w", ierr)
	}

	// Work: completions are counted from the client's event stream, which
	// reports a job after its completion is written.
	events, unsub := client.SubscribeConfig(&river.SubscribeConfig{Kinds: []river.EventKind{river.EventKindJobCompleted}, ChanSize: jobs + 1000})
	defer unsub()
	wctx, wcancel := context.WithTimeout(ctx, limit)
	defer wcancel()
	wal1, _ := readWAL(ctx, pool)
	cpu1 := readCPU()
	t1 := time.Now()
	if err := client.Start(wctx); err != nil {
		return res, fmt.Errorf("river start: %w", err)
	}
	for res.Done < jobs {
		select {
		case <-events:
			res.Done++
			continue
		case <-wctx.Done():
			res.TimedOut = true
		}
		break
	}
	res.Work = time.Since(t1)
	res.CPUInsert, res.CPUWork = cpu1.sub(cpu0), readCPU().sub(cpu1)
	wal2, _ := readWAL(ctx, pool)
	res.WALInsert, res.WALWork = wal1.sub(wal0), wal2.sub(wal1)
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	_ = client.Stop(sctx)
	if !res.TimedOut {
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{schema, "river_job"}.Sanitize()+" WHERE state = 'completed'").Scan(&n); err == nil && n != jobs {
			return res, fmt.Errorf("river: %d jobs completed in the table, %d reported", n, jobs)
		}
	}
	return res, nil
}
