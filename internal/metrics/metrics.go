// Package metrics is the server's Prometheus registry. It is created once
// per server and passed to the parts that report; nothing registers with
// the global default registry. Labels are bounded: queue names (the first
// MaxQueueLabels seen; see queueLabels), routes as declared (never raw
// paths or ids), status codes.
package metrics

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/spooled-go/spooled/queries"
)

// Metrics holds every instrument.
type Metrics struct {
	Registry *prometheus.Registry

	enqueued     *prometheus.CounterVec
	claimed      *prometheus.CounterVec
	completed    *prometheus.CounterVec
	failed       *prometheus.CounterVec
	deadlettered *prometheus.CounterVec
	waitSeconds  *prometheus.HistogramVec
	runSeconds   *prometheus.HistogramVec
	requests     *prometheus.HistogramVec
	claimProbes  *prometheus.CounterVec
	claimCovered *prometheus.CounterVec
	claimStmts   *prometheus.CounterVec
	groupCommits *prometheus.HistogramVec
	natsUp       prometheus.Gauge
	projLag      *prometheus.GaugeVec

	queues queueLabels
}

// New builds the registry. pool feeds the scrape-time gauges (jobs pending,
// oldest job age, healthy workers, connections in use); jobPool, the job
// path's own pool when there is one (nil otherwise), adds its connections.
func New(pool, jobPool *pgxpool.Pool, log *slog.Logger) *Metrics {
	reg := prometheus.NewRegistry()
	byQueue := []string{"queue"}
	latency := []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}
	m := &Metrics{
		Registry: reg,
		enqueued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spooled_jobs_enqueued_total", Help: "Jobs enqueued (idempotent repeats excluded).",
		}, byQueue),
		claimed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spooled_jobs_claimed_total", Help: "Jobs leased to workers.",
		}, byQueue),
		completed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spooled_jobs_completed_total", Help: "Jobs completed.",
		}, byQueue),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spooled_jobs_failed_total", Help: "Failed attempts reported by workers (retried or dead-lettered).",
		}, byQueue),
		deadlettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spooled_jobs_deadlettered_total", Help: "Jobs moved to the dead-letter queue.",
		}, byQueue),
		waitSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "spooled_job_wait_seconds", Help: "Enqueue-to-start latency: from when a job became due to its claim.",
			Buckets: latency,
		}, byQueue),
		runSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "spooled_job_run_seconds", Help: "Run time: from claim to completion.",
			Buckets: latency,
		}, byQueue),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "spooled_api_request_duration_seconds", Help: "REST API request duration.",
			Buckets: prometheus.DefBuckets,
		}, []string{"method", "route", "status"}),
		claimProbes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spooled_claim_probes_total",
			Help: "Reads of whether a queue holds a job a claim could take now, by answer (ready, empty).",
		}, []string{"queue", "outcome"}),
		claimCovered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spooled_claim_waits_covered_total",
			Help: "Waiting claims that went to sleep without reading their queue: another claim waiting there had read it empty, and every job made ready since woke a claim of its own.",
		}, byQueue),
		claimStmts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spooled_claim_statements_total",
			Help: "Claim statements run, by outcome: leased (some job) or empty (lost the race for the jobs, or the queue was drained).",
		}, []string{"queue", "outcome"}),
		groupCommits: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "spooled_group_commit_requests",
			Help:    "Requests gathered by each group-commit flush (single enqueues or completes of any organizations, coalesced into one statement and one commit), by kind.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 100},
		}, []string{"kind"}),
		natsUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spooled_nats_connected", Help: "1 while the NATS connection for wake-up hints is up.",
		}),
		projLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spooled_projection_lag_seconds",
			Help: "How far an asynchronous projection trails the log (age of the newest event it applied when behind; 0 when caught up).",
		}, []string{"projection"}),
	}
	reg.MustRegister(m.enqueued, m.claimed, m.completed, m.failed, m.deadlettered, m.waitSeconds,
		m.runSeconds, m.requests, m.claimProbes, m.claimCovered, m.claimStmts, m.groupCommits, m.natsUp, m.projLag,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if pool != nil {
		reg.MustRegister(&dbCollector{pool: pool, jobPool: jobPool, q: queries.New(), log: log})
	}
	return m
}

// JobsEnqueued counts new jobs.
func (m *Metrics) JobsEnqueued(queue string, n int) {
	m.enqueued.WithLabelValues(m.queues.label(queue)).Add(float64(n))
}

// JobClaimed counts a claim and observes how long the job waited once due.
func (m *Metrics) JobClaimed(queue string, waited time.Duration) {
	queue = m.queues.label(queue)
	m.claimed.WithLabelValues(queue).Inc()
	m.waitSeconds.WithLabelValues(queue).Observe(max(waited.Seconds(), 0))
}

// JobCompleted counts a completion and observes its run time.
func (m *Metrics) JobCompleted(queue string, ran time.Duration) {
	queue = m.queues.label(queue)
	m.completed.WithLabelValues(queue).Inc()
	m.runSeconds.WithLabelValues(queue).Observe(max(ran.Seconds(), 0))
}

// JobFailed counts a failed attempt.
func (m *Metrics) JobFailed(queue string) { m.failed.WithLabelValues(m.queues.label(queue)).Inc() }

// JobsDeadLettered counts jobs entering the dead-letter queue.
func (m *Metrics) JobsDeadLettered(queue string, n int) {
	m.deadlettered.WithLabelValues(m.queues.label(queue)).Add(float64(n))
}

// ClaimProbed counts a claim's probe of its queue.
func (m *Metrics) ClaimProbed(queue string, ready bool) {
	outcome := "empty"
	if ready {
		outcome = "ready"
	}
	m.claimProbes.WithLabelValues(m.queues.label(queue), outcome).Inc()
}

// ClaimCovered counts a waiting claim that read nothing before it slept.
func (m *Metrics) ClaimCovered(queue string) {
	m.claimCovered.WithLabelValues(m.queues.label(queue)).Inc()
}

// ClaimStatementRan counts a claim statement.
func (m *Metrics) ClaimStatementRan(queue string, leased bool) {
	outcome := "empty"
	if leased {
		outcome = "leased"
	}
	m.claimStmts.WithLabelValues(m.queues.label(queue), outcome).Inc()
}

// GroupCommitted observes how many requests one group-commit flush gathered.
func (m *Metrics) GroupCommitted(kind string, requests int) {
	m.groupCommits.WithLabelValues(kind).Observe(float64(requests))
}

// Request observes one API request; route is the declared pattern.
func (m *Metrics) Request(method, route, status string, d time.Duration) {
	m.requests.WithLabelValues(method, route, status).Observe(d.Seconds())
}

// ProjectionLag sets a projection's lag gauge.
func (m *Metrics) ProjectionLag(name string, lag time.Duration) {
	m.projLag.WithLabelValues(name).Set(lag.Seconds())
}

// NATSConnected sets the connection gauge.
func (m *Metrics) NATSConnected(up bool) {
	if up {
		m.natsUp.Set(1)
	} else {
		m.natsUp.Set(0)
	}
}

// dbCollector reads the gauges that describe stored state at scrape time,
// so every instance reports the same truth and nothing drifts.
type dbCollector struct {
	pool    *pgxpool.Pool
	jobPool *pgxpool.Pool // nil: the job path shares pool
	q       *queries.Queries
	log     *slog.Logger
}

var (
	descPending    = prometheus.NewDesc("spooled_jobs_pending", "Jobs waiting in a queue (ready, scheduled or backing off).", []string{"queue"}, nil)
	descProcessing = prometheus.NewDesc("spooled_jobs_processing", "Jobs leased to workers.", []string{"queue"}, nil)
	descMaxAge     = prometheus.NewDesc("spooled_job_max_age_seconds", "Age of the oldest ready job of a queue since it became due.", []string{"queue"}, nil)
	descWorkers    = prometheus.NewDesc("spooled_workers_healthy", "Registered workers whose heartbeats are on time.", nil, nil)
	descWorkersBy  = prometheus.NewDesc("spooled_workers", "Registered workers by status.", []string{"status"}, nil)
	descConns      = prometheus.NewDesc("spooled_database_connections_active", "Database connections in use (both pools).", nil, nil)
	descConnsTotal = prometheus.NewDesc("spooled_database_connections_total", "Database connections open, idle and in use (both pools).", nil, nil)
	descJobConns   = prometheus.NewDesc("spooled_database_job_connections_active", "Connections of the job path's pool (DATABASE_JOB_CONNECTIONS) in use.", nil, nil)
	descJobWaits   = prometheus.NewDesc("spooled_database_job_connection_waits_total", "Job statements that waited for a connection of the job path's pool.", nil, nil)
	descJobWaited  = prometheus.NewDesc("spooled_database_job_connection_wait_seconds_total", "Time job statements spent waiting for a connection of the job path's pool.", nil, nil)
)

func (c *dbCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPending, descProcessing, descMaxAge, descWorkers, descWorkersBy, descConns, descConnsTotal, descJobConns, descJobWaits, descJobWaited} {
		ch <- d
	}
}

func (c *dbCollector) Collect(ch chan<- prometheus.Metric) {
	stat := c.pool.Stat()
	active, open := stat.AcquiredConns(), stat.TotalConns()
	if c.jobPool != nil {
		js := c.jobPool.Stat()
		active, open = active+js.AcquiredConns(), open+js.TotalConns()
		ch <- prometheus.MustNewConstMetric(descJobConns, prometheus.GaugeValue, float64(js.AcquiredConns()))
		ch <- prometheus.MustNewConstMetric(descJobWaits, prometheus.CounterValue, float64(js.EmptyAcquireCount()))
		ch <- prometheus.MustNewConstMetric(descJobWaited, prometheus.CounterValue, js.EmptyAcquireWaitTime().Seconds())
	}
	ch <- prometheus.MustNewConstMetric(descConns, prometheus.GaugeValue, float64(active))
	ch <- prometheus.MustNewConstMetric(descConnsTotal, prometheus.GaugeValue, float64(open))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pending, err := c.q.MetricsPendingByQueue(ctx, c.pool)
	if err != nil {
		c.log.Warn("metrics: read pending jobs", "err", err)
	}
	for _, p := range pending {
		ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(p.Pending), p.QueueName)
		ch <- prometheus.MustNewConstMetric(descMaxAge, prometheus.GaugeValue, p.MaxAgeSeconds, p.QueueName)
	}
	processing, err := c.q.MetricsProcessingByQueue(ctx, c.pool)
	if err != nil {
		c.log.Warn("metrics: read processing jobs", "err", err)
	}
	for _, p := range processing {
		ch <- prometheus.MustNewConstMetric(descProcessing, prometheus.GaugeValue, float64(p.Processing), p.QueueName)
	}
	workers, err := c.q.WorkerCountByStatus(ctx, c.pool)
	if err != nil {
		c.log.Warn("metrics: read workers", "err", err)
	}
	healthy := 0.0
	for _, w := range workers {
		ch <- prometheus.MustNewConstMetric(descWorkersBy, prometheus.GaugeValue, float64(w.Workers), w.Status)
		if w.Status == "healthy" {
			healthy = float64(w.Workers)
		}
	}
	ch <- prometheus.MustNewConstMetric(descWorkers, prometheus.GaugeValue, healthy)
}
