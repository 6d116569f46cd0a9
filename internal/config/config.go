// Package config is the server's configuration: one struct, every field
// documented, defaults and validation in one place. Only cmd/ reads the
// environment; everything else receives a Config.
package config

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spooled-go/spooled/internal/natsbus"
)

// Environment names, as Spooled's RUST_ENV knows them.
const (
	Development = "development"
	Staging     = "staging"
	Production  = "production"
)

// Config holds every setting the server reads. Field comments name the
// environment variable and its default.
type Config struct {
	// DatabaseURL (DATABASE_URL) is the Postgres connection string.
	// Default: postgres://postgres@127.0.0.1:5432/spooled?sslmode=disable.
	DatabaseURL string
	// DatabaseMaxConnections (DATABASE_MAX_CONNECTIONS, 20) caps the pool.
	DatabaseMaxConnections int32
	// DatabaseJobConnections (DATABASE_JOB_CONNECTIONS, the number of CPUs
	// and at least 2) caps a second pool that only the job path uses:
	// enqueues, claims, completes, fails and lease renewals. Past about one
	// statement per database core, each further statement in flight costs
	// more CPU per job than it adds, so the job path is held to one
	// connection per core while reads, admin calls and background loops use
	// the main pool and never wait behind it. On two cores, two connections
	// instead of four moved the batch end to end about a tenth faster (the
	// median of twelve alternated comparisons, eleven of them faster) at a
	// fifth less Postgres CPU per job (README, "Statements in flight"). Two at
	// least, so one slow statement (a bulk of large payloads) leaves the
	// path a connection; a database across a network, or with more cores
	// than this machine, wants more. 0 runs the job path on the main pool.
	DatabaseJobConnections int32
	// Host (HOST, 0.0.0.0) and Port (PORT, 8080) are where the REST API listens.
	Host string
	Port int
	// Environment (SPOOLED_ENV, alias RUST_ENV; development) selects key
	// prefixes (sk_live_ in production) and production safety checks.
	Environment string
	// AdminAPIKey (ADMIN_API_KEY, unset) guards /api/v1/admin/*; unset
	// disables those routes.
	AdminAPIKey string
	// RegistrationMode (REGISTRATION_MODE, open): open lets anyone create an
	// organization; closed requires X-Admin-Key; invite refuses all.
	RegistrationMode string
	// QueueDefaultMaxRetries (QUEUE_DEFAULT_MAX_RETRIES, 3) and
	// QueueDefaultTimeoutSecs (QUEUE_DEFAULT_TIMEOUT_SECS, 300) are a new
	// job's defaults.
	QueueDefaultMaxRetries  int
	QueueDefaultTimeoutSecs int
	// WorkerLeaseDurationSecs (WORKER_LEASE_DURATION_SECS, 30) is a claim's
	// lease when the request names none.
	WorkerLeaseDurationSecs int
	// WorkerHeartbeatIntervalSecs (WORKER_HEARTBEAT_INTERVAL_SECS, 10) is
	// what registered workers are told; it must be shorter than the lease.
	WorkerHeartbeatIntervalSecs int
	// LeaseReaperInterval (LEASE_REAPER_INTERVAL_SECS, 5) is how often expired
	// leases are swept back into the queue.
	LeaseReaperInterval time.Duration
	// APIKeyCacheTTL (API_KEY_CACHE_TTL_SECS, 10) bounds how long another
	// server instance may keep accepting a key revoked elsewhere; the
	// instance that revokes forgets it at once.
	APIKeyCacheTTL time.Duration
	// MaxContentLength (MAX_CONTENT_LENGTH, 5242880) caps a request body;
	// MaxPayloadSize (MAX_PAYLOAD_SIZE, 1048576) caps a job's payload.
	MaxContentLength int
	MaxPayloadSize   int
	// NATSURL (NATS_URL, unset) is the NATS that carries wake-up hints
	// between server instances. Unset starts an embedded NATS server in the
	// process, listening on NATSEmbeddedPort (NATS_EMBEDDED_PORT, 0: a free
	// loopback port).
	NATSURL          string
	NATSEmbeddedPort int
	// NATSSubjectPrefix (NATS_SUBJECT_PREFIX, spooled) begins every
	// subject the server publishes and reads, so deployments that share a
	// NATS cluster keep their hints apart: dot-separated tokens of letters,
	// digits, '-' and '_', at most 64 characters.
	NATSSubjectPrefix string
	// WorkerFallbackPollInterval (WORKER_FALLBACK_POLL_INTERVAL_SECS, 5) is
	// how often a waiting claim re-reads the database when no hint wakes it
	// (NATS down, or a hint lost).
	WorkerFallbackPollInterval time.Duration
	// WorkerHealthCheckInterval (WORKER_HEALTH_CHECK_INTERVAL_SECS, the
	// heartbeat interval) is how often worker health is re-evaluated.
	WorkerHealthCheckInterval time.Duration
	// MetricsPort (METRICS_PORT, 9090) serves /metrics on its own listener
	// (0 disables it; /metrics is also on the API port). MetricsToken
	// (METRICS_TOKEN, unset) requires "Authorization: Bearer <token>" there.
	MetricsPort  int
	MetricsToken string
	// RateLimitRequestsPerSecond (RATE_LIMIT_REQUESTS_PER_SECOND, 100) and
	// RateLimitBurstSize (RATE_LIMIT_BURST_SIZE, 200) limit each client
	// (API key, else X-Forwarded-For address, else User-Agent) per server
	// instance; 0 disables the limit.
	RateLimitRequestsPerSecond int
	RateLimitBurstSize         int
	// MaxWebhookPayloadSize (MAX_WEBHOOK_PAYLOAD_SIZE, 5242880) caps incoming
	// webhook bodies.
	MaxWebhookPayloadSize int
	// CORSAllowedOrigins (CORS_ALLOWED_ORIGINS, comma separated) are the
	// origins browsers may call from in production; development allows any.
	CORSAllowedOrigins []string
	// EnableHSTS (ENABLE_HSTS, false) sends Strict-Transport-Security.
	EnableHSTS bool
	// JWTSecret (JWT_SECRET) signs access tokens; production and staging
	// refuse a secret under 32 characters or the development default.
	JWTSecret          string
	JWTExpirationHours int
	// GitHubWebhookSecret (GITHUB_WEBHOOK_SECRET) and StripeWebhookSecret
	// (STRIPE_WEBHOOK_SECRET) verify incoming webhooks; production refuses
	// one under 16 characters.
	GitHubWebhookSecret string
	StripeWebhookSecret string
	// HotTableVacuumInterval (HOT_TABLE_VACUUM_INTERVAL_SECS, 2) is how often
	// the server vacuums and analyzes the queue tables claims scan; 0 leaves
	// it to autovacuum. Every claim walks the dead entries its predecessors
	// left at the head of the claim index until a vacuum removes them:
	// every 2 s rather than 10 s cut Postgres CPU of a 200,000-job work-off
	// by a tenth (1 s did no better).
	HotTableVacuumInterval time.Duration
	// LogRetentionMonths (LOG_RETENTION_MONTHS, 6) is how many months of the
	// log the daily upkeep keeps; older monthly partitions are dropped after
	// their live jobs are carried forward. 0 keeps everything.
	LogRetentionMonths int
	// JSONLogs (JSON_LOGS, false) switches logs to JSON.
	JSONLogs bool
	// DevBootstrap (SPOOLED_DEV_BOOTSTRAP, false) makes a development server
	// print a fresh API key for the default organization at start (make run
	// sets it). Refused in production.
	DevBootstrap bool
}

// Lookup reads one variable; os.LookupEnv fits.
type Lookup func(string) (string, bool)

// Load builds a Config from lookup, applying defaults and validating.
func Load(lookup Lookup) (Config, error) {
	p := parser{lookup: lookup}
	c := Config{
		DatabaseURL:                 p.str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/spooled?sslmode=disable"),
		DatabaseMaxConnections:      int32(p.int("DATABASE_MAX_CONNECTIONS", 20)),
		DatabaseJobConnections:      int32(p.int("DATABASE_JOB_CONNECTIONS", max(2, runtime.NumCPU()))),
		Host:                        p.str("HOST", "0.0.0.0"),
		Port:                        p.int("PORT", 8080),
		Environment:                 p.str("SPOOLED_ENV", p.str("RUST_ENV", Development)),
		AdminAPIKey:                 p.str("ADMIN_API_KEY", ""),
		RegistrationMode:            p.str("REGISTRATION_MODE", "open"),
		QueueDefaultMaxRetries:      p.int("QUEUE_DEFAULT_MAX_RETRIES", 3),
		QueueDefaultTimeoutSecs:     p.int("QUEUE_DEFAULT_TIMEOUT_SECS", 300),
		WorkerLeaseDurationSecs:     p.int("WORKER_LEASE_DURATION_SECS", 30),
		WorkerHeartbeatIntervalSecs: p.int("WORKER_HEARTBEAT_INTERVAL_SECS", 10),
		LeaseReaperInterval:         time.Duration(p.int("LEASE_REAPER_INTERVAL_SECS", 5)) * time.Second,
		APIKeyCacheTTL:              time.Duration(p.int("API_KEY_CACHE_TTL_SECS", 10)) * time.Second,
		MaxContentLength:            p.int("MAX_CONTENT_LENGTH", 5*1024*1024),
		MaxPayloadSize:              p.int("MAX_PAYLOAD_SIZE", 1024*1024),
		NATSURL:                     p.str("NATS_URL", ""),
		NATSEmbeddedPort:            p.int("NATS_EMBEDDED_PORT", 0),
		NATSSubjectPrefix:           p.str("NATS_SUBJECT_PREFIX", natsbus.DefaultNamespace),
		WorkerFallbackPollInterval:  time.Duration(p.int("WORKER_FALLBACK_POLL_INTERVAL_SECS", 5)) * time.Second,
		MetricsPort:                 p.int("METRICS_PORT", 9090),
		MetricsToken:                p.str("METRICS_TOKEN", ""),
		RateLimitRequestsPerSecond:  p.int("RATE_LIMIT_REQUESTS_PER_SECOND", 100),
		RateLimitBurstSize:          p.int("RATE_LIMIT_BURST_SIZE", 200),
		MaxWebhookPayloadSize:       p.int("MAX_WEBHOOK_PAYLOAD_SIZE", 5*1024*1024),
		CORSAllowedOrigins:          splitList(p.str("CORS_ALLOWED_ORIGINS", "")),
		EnableHSTS:                  p.bool("ENABLE_HSTS", false),
		JWTSecret:                   p.str("JWT_SECRET", DevelopmentJWTSecret),
		JWTExpirationHours:          p.int("JWT_EXPIRATION_HOURS", 24),
		GitHubWebhookSecret:         p.str("GITHUB_WEBHOOK_SECRET", ""),
		StripeWebhookSecret:         p.str("STRIPE_WEBHOOK_SECRET", ""),
		LogRetentionMonths:          p.int("LOG_RETENTION_MONTHS", 6),
		HotTableVacuumInterval:      time.Duration(p.int("HOT_TABLE_VACUUM_INTERVAL_SECS", 2)) * time.Second,
		JSONLogs:                    p.bool("JSON_LOGS", false),
		DevBootstrap:                p.bool("SPOOLED_DEV_BOOTSTRAP", false),
	}
	c.WorkerHealthCheckInterval = time.Duration(p.int("WORKER_HEALTH_CHECK_INTERVAL_SECS", c.WorkerHeartbeatIntervalSecs)) * time.Second
	if p.err != nil {
		return Config{}, p.err
	}
	return c, c.Validate()
}

// Default is the configuration with no variables set.
func Default() Config {
	c, err := Load(func(string) (string, bool) { return "", false })
	if err != nil {
		panic(err) // the defaults are valid by construction
	}
	return c
}

// Validate checks ranges and combinations, naming the variable at fault.
func (c Config) Validate() error {
	switch c.Environment {
	case Development, Staging, Production:
	default:
		return fmt.Errorf("SPOOLED_ENV/RUST_ENV: %q is not development, staging or production", c.Environment)
	}
	switch c.RegistrationMode {
	case "open", "closed", "invite":
	default:
		return fmt.Errorf("REGISTRATION_MODE: %q is not open, closed or invite", c.RegistrationMode)
	}
	checks := []struct {
		name     string
		v        int
		min, max int
	}{
		{"PORT", c.Port, 0, 65535},
		{"DATABASE_MAX_CONNECTIONS", int(c.DatabaseMaxConnections), 2, 10000},
		{"DATABASE_JOB_CONNECTIONS", int(c.DatabaseJobConnections), 0, 10000},
		{"QUEUE_DEFAULT_MAX_RETRIES", c.QueueDefaultMaxRetries, 0, 100},
		{"QUEUE_DEFAULT_TIMEOUT_SECS", c.QueueDefaultTimeoutSecs, 1, 86400},
		{"WORKER_LEASE_DURATION_SECS", c.WorkerLeaseDurationSecs, 5, 3600},
		{"WORKER_HEARTBEAT_INTERVAL_SECS", c.WorkerHeartbeatIntervalSecs, 1, 3600},
		{"LEASE_REAPER_INTERVAL_SECS", int(c.LeaseReaperInterval / time.Second), 1, 3600},
		{"API_KEY_CACHE_TTL_SECS", int(c.APIKeyCacheTTL / time.Second), 0, 3600},
		{"MAX_CONTENT_LENGTH", c.MaxContentLength, 1024, 1 << 30},
		{"NATS_EMBEDDED_PORT", c.NATSEmbeddedPort, 0, 65535},
		{"WORKER_FALLBACK_POLL_INTERVAL_SECS", int(c.WorkerFallbackPollInterval / time.Second), 1, 3600},
		{"WORKER_HEALTH_CHECK_INTERVAL_SECS", int(c.WorkerHealthCheckInterval / time.Second), 1, 3600},
		{"METRICS_PORT", c.MetricsPort, 0, 65535},
		{"RATE_LIMIT_REQUESTS_PER_SECOND", c.RateLimitRequestsPerSecond, 0, 1000000},
		{"RATE_LIMIT_BURST_SIZE", c.RateLimitBurstSize, 0, 1000000},
		{"MAX_WEBHOOK_PAYLOAD_SIZE", c.MaxWebhookPayloadSize, 1024, 1 << 30},
		{"JWT_EXPIRATION_HOURS", c.JWTExpirationHours, 1, 8760},
		{"LOG_RETENTION_MONTHS", c.LogRetentionMonths, 0, 1200},
		{"HOT_TABLE_VACUUM_INTERVAL_SECS", int(c.HotTableVacuumInterval / time.Second), 0, 86400},
		{"MAX_PAYLOAD_SIZE", c.MaxPayloadSize, 1, 1 << 30},
	}
	for _, ch := range checks {
		if ch.v < ch.min || ch.v > ch.max {
			return fmt.Errorf("%s: %d is outside %d..%d", ch.name, ch.v, ch.min, ch.max)
		}
	}
	if err := natsbus.ValidNamespace(c.NATSSubjectPrefix); err != nil {
		return fmt.Errorf("NATS_SUBJECT_PREFIX: %w", err)
	}
	if c.WorkerHeartbeatIntervalSecs >= c.WorkerLeaseDurationSecs {
		return fmt.Errorf("WORKER_HEARTBEAT_INTERVAL_SECS (%d) must be shorter than WORKER_LEASE_DURATION_SECS (%d)",
			c.WorkerHeartbeatIntervalSecs, c.WorkerLeaseDurationSecs)
	}
	if c.RateLimitRequestsPerSecond > 0 && c.RateLimitBurstSize < 1 {
		return fmt.Errorf("RATE_LIMIT_BURST_SIZE must be at least 1 when RATE_LIMIT_REQUESTS_PER_SECOND is set")
	}
	if c.Environment != Development {
		switch {
		case c.JWTSecret == DevelopmentJWTSecret:
			return fmt.Errorf("JWT_SECRET: the development default is refused in %s; set a random secret of at least 32 characters", c.Environment)
		case len(c.JWTSecret) < 32:
			return fmt.Errorf("JWT_SECRET: %d characters is too short for %s (at least 32): a short HS256 secret can be brute-forced and every token forged", len(c.JWTSecret), c.Environment)
		}
	}
	if c.Environment == Production {
		for _, w := range []struct{ name, v string }{
			{"GITHUB_WEBHOOK_SECRET", c.GitHubWebhookSecret}, {"STRIPE_WEBHOOK_SECRET", c.StripeWebhookSecret},
		} {
			if w.v != "" && len(w.v) < 16 {
				return fmt.Errorf("%s: %d characters is too short for production (at least 16): webhook signatures with a short secret can be forged", w.name, len(w.v))
			}
		}
	}
	if c.DevBootstrap && c.Environment == Production {
		return fmt.Errorf("SPOOLED_DEV_BOOTSTRAP: refused in production (it prints a live API key)")
	}
	return nil
}

// DevelopmentJWTSecret is JWT_SECRET's default, refused outside development.
const DevelopmentJWTSecret = "development-secret-change-in-production"

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// KeyPrefix is the prefix of API keys this server issues.
func (c Config) KeyPrefix() string {
	if c.Environment == Production {
		return "sk_live_"
	}
	return "sk_test_"
}

type parser struct {
	lookup Lookup
	err    error
}

func (p *parser) str(name, def string) string {
	if v, ok := p.lookup(name); ok && strings.TrimSpace(v) != "" {
		return strings.TrimSpace(v)
	}
	return def
}

func (p *parser) int(name string, def int) int {
	v := p.str(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil && p.err == nil {
		p.err = fmt.Errorf("%s: %q is not a whole number", name, v)
	}
	return n
}

func (p *parser) bool(name string, def bool) bool {
	v := p.str(name, "")
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil && p.err == nil {
		p.err = fmt.Errorf("%s: %q is not true or false", name, v)
	}
	return b
}
