// Package httpapi is the REST API: Spooled's v1 wire contract on Fiber.
// Handlers are thin: they parse, call commands or a read, and map errors in
// one place (errors.go). Every error leaves as JSON {code, message}.
package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/gofiber/fiber/v2/middleware/recover"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/internal/clock"
	"github.com/spooled-go/spooled/internal/config"
	"github.com/spooled-go/spooled/internal/metrics"
	"github.com/spooled-go/spooled/queries"
)

// Server is the REST API over one commands.Service.
type Server struct {
	cfg  config.Config
	cmd  *commands.Service
	pool *pgxpool.Pool
	q    *queries.Queries
	auth *keyAuthenticator
	log  *slog.Logger
	app  *fiber.App
	// Health reports whether the wake-up bus is connected; nil means there
	// is none to report (the contract's "cache" field is then true).
	busHealthy func() bool
	started    time.Time
	clients    *limiter // per client (RATE_LIMIT_*)
	orgs       *limiter // per organization (plan rate)
	logWaiter  LogWaiter
	instances  func() int
	sockets    *streamCounter // open WebSockets
	// handshakeGrace is how long a WebSocket handshake's slot waits for
	// the socket's handler (socketHandshakeGrace).
	handshakeGrace time.Duration
	sse            *streamCounter // open Server-Sent Events streams
	// streamCtx ends every open stream when the server shuts down.
	streamCtx  context.Context
	stopStream context.CancelFunc
	// requests is every request's context (c.UserContext()): handlers'
	// database calls run on it. Shutdown cancels it when its drain runs
	// out of time, so that calls the database does not answer end, and
	// the pools can close.
	requests      context.Context
	abortRequests context.CancelFunc
}

// share is this instance's part of a request-rate limit held by all
// instances together (rate and burst divided by the live instances).
func (s *Server) share(rate float64, burst int) (float64, int) {
	n := 1
	if s.instances != nil {
		n = max(s.instances(), 1)
	}
	return rate / float64(n), max(burst/n, 1)
}

// Version is the server version /dashboard reports.
const Version = "0.1.0"

// Options are the optional parts of a Server.
type Options struct {
	Logger *slog.Logger
	// BusHealthy reports the NATS connection for /health's "cache" field.
	BusHealthy func() bool
	// Metrics, when set, times every request and serves /metrics.
	Metrics *metrics.Metrics
	// LogWaiter wakes log followers (streams); nil: they poll.
	LogWaiter LogWaiter
	// Instances counts the live server instances; request-rate limits are
	// divided among them. Nil: one.
	Instances func() int
	// LimiterClock is the request-rate limiters' clock. Nil, or a clock
	// that defers to the database: the wall clock. (Tests pin it, so that
	// no bucket refills while they count.)
	LimiterClock clock.Clock
}

// New builds the Fiber app with every route.
func New(cfg config.Config, cmd *commands.Service, o Options) *Server {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{
		cfg: cfg, cmd: cmd, pool: cmd.Pool(), q: queries.New(),
		auth: newKeyAuthenticator(cmd.Pool(), cfg.APIKeyCacheTTL), log: log, busHealthy: o.BusHealthy,
		started: time.Now(), clients: newLimiter(limiterNow(o.LimiterClock)), orgs: newLimiter(limiterNow(o.LimiterClock)),
		logWaiter: o.LogWaiter, instances: o.Instances,
		sockets: newStreamCounter("WebSockets", maxSocketsPerOrg), handshakeGrace: socketHandshakeGrace,
		sse: newStreamCounter("event streams", maxSSEPerOrg),
	}
	s.streamCtx, s.stopStream = context.WithCancel(context.Background())
	s.requests, s.abortRequests = context.WithCancel(context.Background())
	app := fiber.New(fiber.Config{
		AppName:               "spooled",
		BodyLimit:             cfg.MaxContentLength,
		ErrorHandler:          errorHandler(log),
		DisableStartupMessage: true,
		ReadTimeout:           30 * time.Second,
		WriteTimeout:          60 * time.Second,
		IdleTimeout:           120 * time.Second,
	})
	app.Use(recover.New())
	app.Use(func(c *fiber.Ctx) error {
		c.SetUserContext(s.requests)
		return c.Next()
	})
	app.Use(securityHeaders(cfg.EnableHSTS))
	app.Use(corsPolicy(cfg))
	app.Use(requestID)
	if o.Metrics != nil {
		app.Use(observeRequests(o.Metrics))
		app.Get("/metrics", adaptor.HTTPHandler(promhttp.HandlerFor(o.Metrics.Registry, promhttp.HandlerOpts{})))
	}

	app.Get("/health", s.health)
	app.Get("/health/live", func(c *fiber.Ctx) error { return c.SendStatus(fiber.StatusOK) })
	app.Get("/health/ready", s.ready)

	v1 := app.Group("/api/v1", apiVersion, s.limitClients)
	v1.Post("/organizations", s.createOrganization)
	v1.Post("/admin/organizations", s.requireAdmin, s.adminCreateOrganization)

	v1.Use(queryCredential)
	k := v1.Group("", s.requireKey)
	k.Get("/organizations", s.listOrganizations)
	k.Get("/organizations/:id", s.getOrganization)

	k.Get("/api-keys", s.listAPIKeys)
	k.Post("/api-keys", s.createAPIKey)
	k.Get("/api-keys/:id", s.getAPIKey)
	k.Put("/api-keys/:id", s.updateAPIKey)
	k.Delete("/api-keys/:id", s.revokeAPIKey)

	// Static segments first: /jobs/stats is not a job id.
	k.Get("/jobs/stats", s.jobStats)
	k.Get("/jobs/status", s.jobStatuses)
	k.Get("/jobs/dlq", s.listDeadLetters)
	k.Post("/jobs/dlq/retry", s.retryDeadLetters)
	k.Post("/jobs/dlq/purge", s.purgeDeadLetters)
	k.Post("/jobs/dlq/replay", s.replayDeadLetters)
	k.Post("/jobs/bulk", s.bulkEnqueue)
	k.Post("/jobs/claim", s.claim)
	k.Post("/jobs/complete", s.completeBatch)
	k.Get("/jobs", s.listJobs)
	k.Post("/jobs", s.enqueue)
	k.Get("/jobs/:id", s.getJob)
	k.Delete("/jobs/:id", s.cancelJob)
	k.Get("/jobs/:id/history", s.jobHistory)
	k.Post("/jobs/:id/retry", s.retryJob)
	k.Post("/jobs/:id/replay", s.replayJob)
	k.Put("/jobs/:id/priority", s.setPriority)
	k.Post("/jobs/:id/complete", s.complete)
	k.Post("/jobs/:id/fail", s.fail)
	k.Post("/jobs/:id/heartbeat", s.heartbeat)

	k.Get("/queues", s.listQueues)
	k.Get("/queues/:name", s.getQueue)
	k.Put("/queues/:name", s.configureQueue)
	k.Put("/queues/:name/config", s.configureQueue)
	k.Get("/queues/:name/stats", s.queueStats)
	k.Post("/queues/:name/pause", s.pauseQueue)
	k.Post("/queues/:name/resume", s.resumeQueue)
	k.Delete("/queues/:name", s.deleteQueue)
	k.Get("/dashboard", s.dashboard)

	k.Get("/ws", s.wsUpgrade, websocket.New(s.serveSocket))
	k.Get("/events", s.realtimeEvents)
	k.Get("/events/jobs/:id", s.jobEvents)
	k.Get("/events/queues/:name", s.queueEvents)
	k.Get("/events/log", s.readLog(false))
	k.Get("/events/log/stream", s.streamLog)
	k.Get("/audit", s.readLog(true))

	k.Post("/workers/register", s.registerWorker)
	k.Get("/workers", s.listWorkers)
	k.Get("/workers/:id", s.getWorker)
	k.Post("/workers/:id/heartbeat", s.workerHeartbeat)
	k.Post("/workers/:id/deregister", s.deregisterWorker)
	k.Delete("/workers/:id", s.deregisterWorker)

	refuseUnknownMethods(app, cfg.EnableHSTS)
	s.app = app
	return s
}

// App is the Fiber app, for listening and for in-process tests.
func (s *Server) App() *fiber.App { return s.app }

// Listen serves until Shutdown.
func (s *Server) Listen(addr string) error { return s.app.Listen(addr) }

// Shutdown ends open streams, stops accepting connections and waits for
// in-flight requests until ctx ends. Requests still running then have
// their database calls cancelled (the database is not answering them):
// they answer with an error, or not at all, and free their connections.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopStream()
	err := s.app.ShutdownWithContext(ctx)
	s.abortRequests()
	// The streams' context is cancelled, so each socket's handler and
	// stream writer is ending; they are waited for here, as the HTTP server
	// counts neither a connection it handed over to a socket nor a stream
	// writer whose client has gone.
	return errors.Join(err, s.sockets.wait(ctx), s.sse.wait(ctx))
}

// queryCredential lets the streaming routes take the API key from ?api_key=
// or ?token= (browsers' EventSource and WebSocket cannot set headers) or
// from X-API-Key (what the SDK's SSE client sends).
func queryCredential(c *fiber.Ctx) error {
	p := c.Path()
	if c.Get(fiber.HeaderAuthorization) == "" && (strings.HasPrefix(p, "/api/v1/events") || p == "/api/v1/ws") {
		tok := c.Query("api_key", c.Query("token"))
		if tok == "" {
			tok = c.Get("X-API-Key")
		}
		if tok != "" {
			c.Request().Header.Set(fiber.HeaderAuthorization, "Bearer "+tok)
		}
	}
	return c.Next()
}

// observeRequests times each request by its declared route, so the label
// set stays bounded whatever paths clients send.
func observeRequests(m *metrics.Metrics) fiber.Handler {
	return func(c *fiber.Ctx) error {
		start := time.Now()
		err := c.Next()
		status := c.Response().StatusCode()
		if err != nil {
			// The error handler has not written the status yet.
			var fe *fiber.Error
			var ae *apiError
			switch {
			case errors.As(err, &ae):
				status = ae.Status
			case errors.As(err, &fe):
				status = fe.Code
			default:
				status = fiber.StatusInternalServerError
			}
		}
		route := c.Route().Path
		if status == fiber.StatusNotFound && route == "/" {
			route = "unmatched"
		}
		// Fiber's Method() aliases the connection's request buffer, which the
		// next request on it overwrites; the label outlives this request.
		m.Request(strings.Clone(c.Method()), route, strconv.Itoa(status), time.Since(start))
		return err
	}
}

// requestID echoes X-Request-ID, minting one when the client sent none.
func requestID(c *fiber.Ctx) error {
	id := c.Get("X-Request-ID")
	if id == "" || len(id) > 200 {
		id = uuid.NewString()
	}
	c.Set("X-Request-ID", id)
	return c.Next()
}

var versionRE = regexp.MustCompile(`^[A-Za-z0-9.]{1,16}$`)

// apiVersion implements X-API-Version: absent or malformed means 1; any
// other well-formed version is refused.
func apiVersion(c *fiber.Ctx) error {
	v := c.Get("X-API-Version")
	if !versionRE.MatchString(v) {
		v = "1"
	}
	c.Set("X-API-Version", v)
	if v != "1" && v != "1.0" {
		c.Set("X-API-Version", "1")
		return badRequest("Unsupported API version: " + v + ". Supported versions: 1")
	}
	return c.Next()
}

// requireAdmin checks X-Admin-Key against ADMIN_API_KEY in constant time.
func (s *Server) requireAdmin(c *fiber.Ctx) error {
	if s.cfg.AdminAPIKey == "" {
		return &apiError{Status: fiber.StatusUnauthorized, Code: "UNAUTHORIZED", Error_: "admin_not_configured",
			Message: "Admin API is not configured (ADMIN_API_KEY is unset)"}
	}
	got := c.Get("X-Admin-Key")
	if got == "" {
		return &apiError{Status: fiber.StatusUnauthorized, Code: "UNAUTHORIZED", Error_: "missing_admin_key",
			Message: "Missing X-Admin-Key header"}
	}
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(s.cfg.AdminAPIKey))
	if subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
		return &apiError{Status: fiber.StatusUnauthorized, Code: "UNAUTHORIZED", Error_: "invalid_admin_key",
			Message: "Invalid admin key"}
	}
	return c.Next()
}

func (s *Server) health(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), 2*time.Second)
	defer cancel()
	dbOK := s.pool.Ping(ctx) == nil
	busOK := s.busHealthy == nil || s.busHealthy()
	status := "healthy"
	if !dbOK || !busOK {
		status = "degraded"
	}
	return c.JSON(fiber.Map{"status": status, "database": dbOK, "cache": busOK})
}

func (s *Server) ready(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), 2*time.Second)
	defer cancel()
	if s.pool.Ping(ctx) != nil {
		return c.SendStatus(fiber.StatusServiceUnavailable)
	}
	return c.SendStatus(fiber.StatusOK)
}
