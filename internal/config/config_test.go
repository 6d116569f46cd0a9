package config_test

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spooled-go/spooled/internal/config"
)

// load is config.Load over a map of variables.
func load(vars map[string]string) (config.Config, error) {
	return config.Load(func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
}

// with is vars plus more (more wins).
func with(vars map[string]string, more ...string) map[string]string {
	out := map[string]string{}
	for k, v := range vars {
		out[k] = v
	}
	for i := 0; i+1 < len(more); i += 2 {
		out[more[i]] = more[i+1]
	}
	return out
}

// refuses fails unless vars are refused with an error that names each of
// names.
func refuses(t *testing.T, vars map[string]string, names ...string) {
	t.Helper()
	_, err := load(vars)
	if err == nil {
		t.Fatalf("%v: accepted, want an error naming %v", vars, names)
	}
	for _, n := range names {
		if !strings.Contains(err.Error(), n) {
			t.Fatalf("%v: error %q does not name %s", vars, err, n)
		}
	}
}

func accepts(t *testing.T, vars map[string]string) config.Config {
	t.Helper()
	c, err := load(vars)
	if err != nil {
		t.Fatalf("%v: %v", vars, err)
	}
	return c
}

var (
	secret31 = strings.Repeat("a", 31)
	secret32 = strings.Repeat("b", 32)
)

func TestDefaults(t *testing.T) {
	c := accepts(t, nil)
	if c.Environment != config.Development || c.JWTSecret != config.DevelopmentJWTSecret {
		t.Fatalf("defaults: environment %q, JWT secret %q", c.Environment, c.JWTSecret)
	}
	if c.RateLimitRequestsPerSecond != 100 || c.RateLimitBurstSize != 200 || c.EnableHSTS || len(c.CORSAllowedOrigins) != 0 {
		t.Fatalf("defaults: rate %d burst %d hsts %v cors %v", c.RateLimitRequestsPerSecond, c.RateLimitBurstSize, c.EnableHSTS, c.CORSAllowedOrigins)
	}
	if c.MaxContentLength != 5*1024*1024 || c.MaxPayloadSize != 1024*1024 {
		t.Fatalf("defaults: content %d payload %d", c.MaxContentLength, c.MaxPayloadSize)
	}
	if c.KeyPrefix() != "sk_test_" {
		t.Fatalf("development key prefix %q", c.KeyPrefix())
	}
	if want := int32(max(2, runtime.NumCPU())); c.DatabaseMaxConnections != 20 || c.DatabaseJobConnections != want {
		t.Fatalf("defaults: pool %d, job pool %d (want 20 and %d)", c.DatabaseMaxConnections, c.DatabaseJobConnections, want)
	}
	if d := config.Default(); d.Environment != c.Environment || d.JWTSecret != c.JWTSecret || d.Port != c.Port {
		t.Fatalf("Default() differs from Load with nothing set")
	}
}

// TestJWTSecretOutsideDevelopment: staging and production refuse the
// development default and any secret under 32 characters; development
// takes the default.
func TestJWTSecretOutsideDevelopment(t *testing.T) {
	for _, env := range []string{config.Staging, config.Production} {
		t.Run(env, func(t *testing.T) {
			base := map[string]string{"SPOOLED_ENV": env}
			refuses(t, base, "JWT_SECRET", "development default")
			refuses(t, with(base, "JWT_SECRET", config.DevelopmentJWTSecret), "JWT_SECRET")
			refuses(t, with(base, "JWT_SECRET", secret31), "JWT_SECRET", "31", "32")
			refuses(t, with(base, "JWT_SECRET", "x"), "JWT_SECRET")
			// Surrounding white space is not part of the secret.
			refuses(t, with(base, "JWT_SECRET", "  "+secret31+"  "), "JWT_SECRET")
			c := accepts(t, with(base, "JWT_SECRET", secret32))
			if c.Environment != env || c.JWTSecret != secret32 {
				t.Fatalf("environment %q secret %q", c.Environment, c.JWTSecret)
			}
			if prefix := c.KeyPrefix(); (env == config.Production) != (prefix == "sk_live_") {
				t.Fatalf("%s key prefix %q", env, prefix)
			}
		})
	}
	c := accepts(t, map[string]string{"SPOOLED_ENV": config.Development})
	if c.JWTSecret != config.DevelopmentJWTSecret {
		t.Fatalf("development secret %q", c.JWTSecret)
	}
	accepts(t, map[string]string{"SPOOLED_ENV": config.Development, "JWT_SECRET": "short"})
}

// TestWebhookSecretsInProduction: production refuses a GitHub or Stripe
// webhook secret under 16 characters, naming it; unset ones are fine;
// other environments do not check them.
func TestWebhookSecretsInProduction(t *testing.T) {
	prod := map[string]string{"SPOOLED_ENV": "production", "JWT_SECRET": secret32}
	accepts(t, prod)
	for _, name := range []string{"GITHUB_WEBHOOK_SECRET", "STRIPE_WEBHOOK_SECRET"} {
		refuses(t, with(prod, name, strings.Repeat("w", 15)), name, "15", "16")
		c := accepts(t, with(prod, name, strings.Repeat("w", 16)))
		got := c.GitHubWebhookSecret
		if name == "STRIPE_WEBHOOK_SECRET" {
			got = c.StripeWebhookSecret
		}
		if got != strings.Repeat("w", 16) {
			t.Fatalf("%s read as %q", name, got)
		}
		accepts(t, with(prod, name, ""))
		accepts(t, map[string]string{"SPOOLED_ENV": "staging", "JWT_SECRET": secret32, name: "short"})
		accepts(t, map[string]string{name: "short"})
	}
	// Both weak: refused, and the error names one of them.
	_, err := load(with(prod, "GITHUB_WEBHOOK_SECRET", "x", "STRIPE_WEBHOOK_SECRET", "y"))
	if err == nil || !strings.Contains(err.Error(), "WEBHOOK_SECRET") {
		t.Fatalf("two weak webhook secrets: %v", err)
	}
}

// TestEnvironmentVariable: SPOOLED_ENV, with RUST_ENV (Spooled's name) as
// an alias that SPOOLED_ENV overrides; anything else is refused by name.
func TestEnvironmentVariable(t *testing.T) {
	refuses(t, map[string]string{"RUST_ENV": "production"}, "JWT_SECRET")
	c := accepts(t, map[string]string{"RUST_ENV": "production", "JWT_SECRET": secret32})
	if c.Environment != config.Production || c.KeyPrefix() != "sk_live_" {
		t.Fatalf("RUST_ENV=production: environment %q prefix %q", c.Environment, c.KeyPrefix())
	}
	c = accepts(t, map[string]string{"RUST_ENV": "staging", "JWT_SECRET": secret32})
	if c.Environment != config.Staging {
		t.Fatalf("RUST_ENV=staging: environment %q", c.Environment)
	}
	c = accepts(t, map[string]string{"RUST_ENV": "production", "SPOOLED_ENV": "development"})
	if c.Environment != config.Development {
		t.Fatalf("SPOOLED_ENV must win over RUST_ENV: %q", c.Environment)
	}
	refuses(t, map[string]string{"RUST_ENV": "development", "SPOOLED_ENV": "production"}, "JWT_SECRET")
	refuses(t, map[string]string{"SPOOLED_ENV": "prod"}, "SPOOLED_ENV", "prod")
	refuses(t, map[string]string{"RUST_ENV": "Production"}, "RUST_ENV")
	refuses(t, map[string]string{"SPOOLED_ENV": "production", "JWT_SECRET": secret32, "SPOOLED_DEV_BOOTSTRAP": "true"}, "SPOOLED_DEV_BOOTSTRAP")
}

// TestBadValuesNameTheirVariable: a value that is not a number (or a
// boolean) or is out of range is refused with the variable's name.
func TestBadValuesNameTheirVariable(t *testing.T) {
	for _, name := range []string{
		"PORT", "DATABASE_MAX_CONNECTIONS", "DATABASE_JOB_CONNECTIONS", "QUEUE_DEFAULT_MAX_RETRIES", "QUEUE_DEFAULT_TIMEOUT_SECS",
		"WORKER_LEASE_DURATION_SECS", "WORKER_HEARTBEAT_INTERVAL_SECS", "LEASE_REAPER_INTERVAL_SECS",
		"API_KEY_CACHE_TTL_SECS", "MAX_CONTENT_LENGTH", "MAX_PAYLOAD_SIZE", "NATS_EMBEDDED_PORT",
		"WORKER_FALLBACK_POLL_INTERVAL_SECS", "WORKER_HEALTH_CHECK_INTERVAL_SECS", "METRICS_PORT",
		"RATE_LIMIT_REQUESTS_PER_SECOND", "RATE_LIMIT_BURST_SIZE", "MAX_WEBHOOK_PAYLOAD_SIZE", "JWT_EXPIRATION_HOURS",
	} {
		for _, bad := range []string{"ten", "1.5", "12abc", "-"} {
			refuses(t, map[string]string{name: bad}, name, bad)
		}
	}
	for _, name := range []string{"ENABLE_HSTS", "JSON_LOGS", "SPOOLED_DEV_BOOTSTRAP"} {
		refuses(t, map[string]string{name: "maybe"}, name, "maybe")
	}
	for name, bad := range map[string]string{
		"PORT": "70000", "DATABASE_JOB_CONNECTIONS": "-1", "WORKER_LEASE_DURATION_SECS": "4", "QUEUE_DEFAULT_MAX_RETRIES": "101",
		"RATE_LIMIT_REQUESTS_PER_SECOND": "-1", "MAX_CONTENT_LENGTH": "100", "REGISTRATION_MODE": "sometimes",
	} {
		refuses(t, map[string]string{name: bad}, name)
	}
	refuses(t, map[string]string{"RATE_LIMIT_BURST_SIZE": "0"}, "RATE_LIMIT_BURST_SIZE")
	if c := accepts(t, map[string]string{"DATABASE_JOB_CONNECTIONS": "0"}); c.DatabaseJobConnections != 0 {
		t.Fatalf("DATABASE_JOB_CONNECTIONS=0 parsed as %d", c.DatabaseJobConnections)
	}
	for _, bad := range []string{"a..b", "staging.", "with space", "hints.>", "*"} {
		refuses(t, map[string]string{"NATS_SUBJECT_PREFIX": bad}, "NATS_SUBJECT_PREFIX")
	}
	if c := accepts(t, map[string]string{"NATS_SUBJECT_PREFIX": "staging.eu-1"}); c.NATSSubjectPrefix != "staging.eu-1" {
		t.Fatalf("NATS_SUBJECT_PREFIX parsed as %q", c.NATSSubjectPrefix)
	}
	if c := accepts(t, nil); c.NATSSubjectPrefix != "spooled" {
		t.Fatalf("default NATS_SUBJECT_PREFIX %q", c.NATSSubjectPrefix)
	}
	c := accepts(t, map[string]string{"RATE_LIMIT_REQUESTS_PER_SECOND": "0", "RATE_LIMIT_BURST_SIZE": "0"})
	if c.RateLimitRequestsPerSecond != 0 {
		t.Fatalf("rate %d", c.RateLimitRequestsPerSecond)
	}
	c = accepts(t, map[string]string{
		"PORT": " 9000 ", "ENABLE_HSTS": "true", "CORS_ALLOWED_ORIGINS": " https://a.example , ,https://b.example ",
		"RATE_LIMIT_REQUESTS_PER_SECOND": "7", "RATE_LIMIT_BURST_SIZE": "9",
	})
	if c.Port != 9000 || !c.EnableHSTS || c.RateLimitRequestsPerSecond != 7 || c.RateLimitBurstSize != 9 ||
		len(c.CORSAllowedOrigins) != 2 || c.CORSAllowedOrigins[0] != "https://a.example" || c.CORSAllowedOrigins[1] != "https://b.example" {
		t.Fatalf("parsed %+v", c)
	}
}

// TestHeartbeatShorterThanLease: WORKER_HEARTBEAT_INTERVAL_SECS must be
// under WORKER_LEASE_DURATION_SECS.
func TestHeartbeatShorterThanLease(t *testing.T) {
	refuses(t, map[string]string{"WORKER_HEARTBEAT_INTERVAL_SECS": "30"}, "WORKER_HEARTBEAT_INTERVAL_SECS", "WORKER_LEASE_DURATION_SECS")
	refuses(t, map[string]string{"WORKER_HEARTBEAT_INTERVAL_SECS": "31"}, "WORKER_HEARTBEAT_INTERVAL_SECS")
	refuses(t, map[string]string{"WORKER_LEASE_DURATION_SECS": "10"}, "WORKER_HEARTBEAT_INTERVAL_SECS", "WORKER_LEASE_DURATION_SECS")
	c := accepts(t, map[string]string{"WORKER_HEARTBEAT_INTERVAL_SECS": "29"})
	if c.WorkerHeartbeatIntervalSecs != 29 || c.WorkerHealthCheckInterval != 29*time.Second {
		t.Fatalf("heartbeat %d health check %s", c.WorkerHeartbeatIntervalSecs, c.WorkerHealthCheckInterval)
	}
	accepts(t, map[string]string{"WORKER_HEARTBEAT_INTERVAL_SECS": "10", "WORKER_LEASE_DURATION_SECS": "11"})
}
