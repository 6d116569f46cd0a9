// Package app wires the server together: database, migrations, commands,
// background loops and the REST API, with one start and one stop.
package app

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/httpapi"
	"github.com/spooled-go/spooled/internal/clock"
	"github.com/spooled-go/spooled/internal/config"
	"github.com/spooled-go/spooled/internal/metrics"
	"github.com/spooled-go/spooled/internal/migrate"
	"github.com/spooled-go/spooled/internal/natsbus"
	"github.com/spooled-go/spooled/internal/pgdb"
	"github.com/spooled-go/spooled/projections"
	"github.com/spooled-go/spooled/workers"
)

// App is one running server instance.
type App struct {
	cfg  config.Config
	log  *slog.Logger
	pool *pgxpool.Pool
	// jobPool runs the job path (nil: pool does); ownJobPool says Stop
	// closes it.
	jobPool    *pgxpool.Pool
	ownJobPool bool
	bus        *natsbus.Bus
	wakeups    *workers.Wakeups
	metrics    *metrics.Metrics
	cmd        *commands.Service
	api        *httpapi.Server
	loops      []*workers.Loop
	proj       *projections.Projector
	// presence counts the instances sharing NATS, to split rate limits.
	presence *workers.Presence
	ln       net.Listener
	serve    chan error
	served   chan struct{} // closed when the API server's Serve has returned
	msrv     *http.Server
	mln      net.Listener
}

// Options are for tests: a pinned clock, or pools the caller owns. With
// Pool set and JobPool not, the job path runs on Pool.
type Options struct {
	Clock   clock.Clock
	Pool    *pgxpool.Pool
	JobPool *pgxpool.Pool
}

// New connects, migrates and builds every part, but starts nothing.
func New(ctx context.Context, cfg config.Config, log *slog.Logger, o Options) (*App, error) {
	pool, jobPool := o.Pool, o.JobPool
	// closePools closes what New opened, when it fails part-way.
	closePools := func() {
		if jobPool != nil && o.JobPool == nil {
			jobPool.Close()
		}
		if o.Pool == nil {
			pool.Close()
		}
	}
	if pool == nil {
		var err error
		pool, err = pgdb.Open(ctx, cfg.DatabaseURL, cfg.DatabaseMaxConnections, "spooled")
		if err != nil {
			return nil, err
		}
		if jobPool == nil && cfg.DatabaseJobConnections > 0 {
			if jobPool, err = pgdb.Open(ctx, cfg.DatabaseURL, cfg.DatabaseJobConnections, "spooled-jobs"); err != nil {
				pool.Close()
				return nil, fmt.Errorf("job pool: %w", err)
			}
		}
	}
	if _, err := migrate.Up(ctx, pool, log); err != nil {
		closePools()
		return nil, err
	}
	bus, err := natsbus.Open(natsbus.Config{URL: cfg.NATSURL, EmbeddedPort: cfg.NATSEmbeddedPort, Namespace: cfg.NATSSubjectPrefix, Logger: log})
	if err != nil {
		closePools()
		return nil, err
	}
	m := metrics.New(pool, jobPool, log)
	m.NATSConnected(bus.Connected())
	bus.OnConnectionChange(m.NATSConnected)
	wakeups := workers.NewWakeups(bus)
	cmd := commands.New(pool, o.Clock, wakeups, commands.Defaults{
		MaxRetries: cfg.QueueDefaultMaxRetries, TimeoutSecs: cfg.QueueDefaultTimeoutSecs,
		LeaseSecs: cfg.WorkerLeaseDurationSecs, MaxPayload: cfg.MaxPayloadSize,
		KeyPrefix: cfg.KeyPrefix(), Registration: cfg.RegistrationMode, RetentionMonths: cfg.LogRetentionMonths,
	}, commands.WithWaiter(wakeups, cfg.WorkerFallbackPollInterval), commands.WithObserver(m),
		commands.WithGroupCommit(groupCommitFlushers), commands.WithJobPool(jobPool))
	heartbeat := time.Duration(cfg.WorkerHeartbeatIntervalSecs) * time.Second
	presence := workers.NewPresence(bus, time.Second, log)
	proj := projections.NewProjector(pool,
		[]projections.Projection{projections.NewQueueStats(), projections.NewFanout(wakeups)},
		projections.ProjectorOptions{OnLag: m.ProjectionLag})
	a := &App{
		cfg: cfg, log: log, pool: pool, jobPool: jobPool, ownJobPool: jobPool != nil && o.JobPool == nil, bus: bus, wakeups: wakeups, metrics: m, cmd: cmd, proj: proj,
		presence: presence,
		api: httpapi.New(cfg, cmd, httpapi.Options{Logger: log, BusHealthy: bus.Connected, Metrics: m, LogWaiter: wakeups,
			Instances: presence.Instances}),
		loops: []*workers.Loop{
			workers.NewLeaseReaper(cmd, cfg.LeaseReaperInterval, log),
			workers.NewPartitionUpkeep(cmd, 24*time.Hour, log),
			workers.NewWorkerHealth(cmd, heartbeat, cfg.WorkerHealthCheckInterval, log),
			workers.NewLoop("projector", 100*time.Millisecond, log, func(ctx context.Context) error {
				_, err := proj.CatchUp(ctx)
				return err
			}),
		},
	}
	if cfg.HotTableVacuumInterval > 0 {
		a.loops = append(a.loops, workers.NewHotTableVacuum(cmd, cfg.HotTableVacuumInterval, log))
	}
	return a, nil
}

// groupCommitFlushers is how many coalesced statements of one kind may run
// at once. One: while it commits, the next requests gather, so each
// statement carries all that arrived during the last one. A second flusher
// splits the same requests into statements half the size, and on two cores
// the per-statement work (executor start, commit, the round trip) is what
// runs out: 32 clients of single enqueues made 13,057-14,809 jobs/s with two
// and 17,025-17,856 with one (three alternated pairs of
// bin/spooled-bench -single-only), with Postgres CPU per job down a fifth;
// enqueue-to-start at 500 jobs/s was unchanged (p50 1.08-1.17 ms both).
// Measured again on two cores with the job pool (eleven alternated runs of
// -single-only, six with one flusher): 7,348 jobs/s median with one, 6,896
// with two, Postgres CPU per job 74 µs against 102 µs (statements of 14.9
// requests against 8.0).
const groupCommitFlushers = 1

// Commands is the app's command service.
func (a *App) Commands() *commands.Service { return a.cmd }

// MetricsRegistry is the registry /metrics serves (the bench reads its
// claim counters in-process).
func (a *App) MetricsRegistry() *prometheus.Registry { return a.metrics.Registry }

// Addr is where the API listens, once Start has returned.
func (a *App) Addr() string { return a.ln.Addr().String() }

// MetricsAddr is where the metrics listener is ("" when METRICS_PORT is 0).
func (a *App) MetricsAddr() string {
	if a.mln == nil {
		return ""
	}
	return a.mln.Addr().String()
}

// Projector runs the asynchronous projections (tests call CatchUp).
func (a *App) Projector() *projections.Projector { return a.proj }

// Instances is how many server instances this one sees on NATS.
func (a *App) Instances() int { return a.presence.Instances() }

// Bus is the NATS connection (tests stop and restart its embedded server).
func (a *App) Bus() *natsbus.Bus { return a.bus }

// Wakeups is the hint hub (tests count waiting claims).
func (a *App) Wakeups() *workers.Wakeups { return a.wakeups }

// Start listens on HOST:PORT (port 0 picks a free one) and starts the
// background loops.
func (a *App) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(a.cfg.Host, strconv.Itoa(a.cfg.Port)))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if err := a.wakeups.Start(ctx); err != nil {
		_ = ln.Close()
		return err
	}
	if err := a.presence.Start(ctx); err != nil {
		_ = ln.Close()
		return err
	}
	if a.cfg.MetricsPort != 0 {
		mln, err := net.Listen("tcp", net.JoinHostPort(a.cfg.Host, strconv.Itoa(a.cfg.MetricsPort)))
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("listen for metrics (METRICS_PORT): %w", err)
		}
		a.mln = mln
		a.msrv = &http.Server{Handler: metricsHandler(a.metrics, a.cfg.MetricsToken), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := a.msrv.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.log.Error("metrics listener stopped", "err", err)
			}
		}()
	}
	a.ln = ln
	a.serve = make(chan error, 1)
	a.served = make(chan struct{})
	go func() {
		defer close(a.served)
		a.serve <- a.api.App().Listener(ln)
	}()
	for _, l := range a.loops {
		l.Start(ctx)
	}
	jobConns := int32(0) // the job path shares the main pool
	if a.jobPool != nil {
		jobConns = a.jobPool.Config().MaxConns
	}
	a.log.Info("spooled listening", "addr", ln.Addr().String(), "environment", a.cfg.Environment,
		"db_connections", a.pool.Config().MaxConns, "db_job_connections", jobConns)
	return nil
}

// Wait blocks until the HTTP server stops by itself (an error) or ctx ends.
func (a *App) Wait(ctx context.Context) error {
	select {
	case err := <-a.serve:
		return err
	case <-ctx.Done():
		return nil
	}
}

// Stop drains: waiting claims answer empty, no new connections, in-flight
// requests finish (until ctx ends), background loops stop, then the pool
// closes.
func (a *App) Stop(ctx context.Context, closePool bool) error {
	var errs []error
	// Waiting claims are released first: they answer empty at once, so the
	// drain below does not wait out their wait_ms (up to 30 s).
	if err := a.wakeups.Stop(ctx); err != nil {
		errs = append(errs, err)
	}
	if a.ln != nil {
		if err := a.api.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		}
		// Shutdown closes the listener only once Serve has taken it: a Stop
		// right after Start could come first, and Serve would then begin
		// on an open listener after Stop had returned. Closed here, it
		// returns at once whenever it starts; Stop waits for that.
		_ = a.ln.Close()
		select {
		case <-a.served:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("http shutdown: the server did not return: %w", ctx.Err()))
		}
	}
	if a.msrv != nil {
		if err := a.msrv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("metrics shutdown: %w", err))
		}
	}
	// In-flight requests are done, so the group commits hold nothing more,
	// unless the database stopped answering: then Close cancels what it
	// still runs once ctx ends, and the pools below can close.
	if err := a.cmd.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("stop commands: %w", err))
	}
	for _, l := range a.loops {
		if err := l.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop loop: %w", err))
		}
	}
	if err := a.presence.Stop(ctx); err != nil {
		errs = append(errs, fmt.Errorf("stop presence: %w", err))
	}
	a.bus.Close()
	if a.ownJobPool {
		a.jobPool.Close()
	}
	if closePool {
		a.pool.Close()
	}
	return errors.Join(errs...)
}

// metricsHandler serves /metrics (behind a bearer token when one is set)
// and /health on the metrics listener.
func metricsHandler(m *metrics.Metrics, token string) http.Handler {
	mux := http.NewServeMux()
	prom := promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		if token != "" {
			want := sha256.Sum256([]byte("Bearer " + token))
			got := sha256.Sum256([]byte(r.Header.Get("Authorization")))
			if subtle.ConstantTimeCompare(want[:], got[:]) != 1 {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = w.Write([]byte(`{"code":"UNAUTHORIZED","message":"metrics require Authorization: Bearer <METRICS_TOKEN>"}`))
				return
			}
		}
		prom.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("OK")) })
	return mux
}

// PrintDevBootstrap issues a fresh development key for the default
// organization and prints it with curl examples.
func (a *App) PrintDevBootstrap(ctx context.Context, w io.Writer) error {
	key, err := a.cmd.DevBootstrap(ctx)
	if err != nil {
		return err
	}
	host := a.cfg.Host
	if host == "0.0.0.0" || host == "" || host == "::" {
		host = "127.0.0.1"
	}
	_, port, _ := net.SplitHostPort(a.Addr())
	base := "http://" + net.JoinHostPort(host, port)
	_, err = fmt.Fprintf(w, `
Spooled is running at %[1]s (development).

Development API key (organization default-org, replaced at every start):

  export SPOOLED_API_KEY=%[2]s

Try it:

  curl -s -X POST %[1]s/api/v1/jobs -H "Authorization: Bearer $SPOOLED_API_KEY" \
       -H 'Content-Type: application/json' -d '{"queue_name":"emails","payload":{"to":"a@example.com"}}'
  curl -s -X POST %[1]s/api/v1/jobs/claim -H "Authorization: Bearer $SPOOLED_API_KEY" \
       -H 'Content-Type: application/json' -d '{"queue_name":"emails","worker_id":"worker-1"}'
  curl -s -X POST %[1]s/api/v1/jobs/JOB_ID/complete -H "Authorization: Bearer $SPOOLED_API_KEY" \
       -H 'Content-Type: application/json' -d '{"worker_id":"worker-1","result":{"sent":true}}'
  curl -s %[1]s/api/v1/jobs/JOB_ID/history -H "Authorization: Bearer $SPOOLED_API_KEY"

`, base, key.Raw)
	return err
}
