package httpapi

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/spooled-go/spooled/internal/clock"
)

// limiter is a set of token buckets, one per key, held in memory by this
// server instance; the server divides each limit among the live instances
// (Server.share), so together they hold it. Idle buckets are swept as new
// keys arrive, so memory stays bounded without a goroutine.
type limiter struct {
	mu      sync.Mutex
	now     func() time.Time
	buckets map[string]*bucket
	inserts int
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(now func() time.Time) *limiter {
	return &limiter{now: now, buckets: map[string]*bucket{}}
}

// limiterNow reads clk, or the wall clock where clk has no time of its own.
func limiterNow(clk clock.Clock) func() time.Time {
	if clk == nil {
		return time.Now
	}
	return func() time.Time {
		if t := clk.Now(); t != nil {
			return *t
		}
		return time.Now()
	}
}

// verdict is one request's outcome: allowed or not, and what the rate-limit
// headers say.
type verdict struct {
	allowed    bool
	limit      int
	remaining  int
	retryAfter time.Duration // until one token is back
	resetIn    time.Duration // until the bucket is full
}

// take spends one token from key's bucket of capacity burst refilled at
// rate per second.
func (l *limiter) take(key string, rate float64, burst int) verdict {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		l.sweep(now, rate, burst)
		b = &bucket{tokens: float64(burst), at: now}
		l.buckets[key] = b
	}
	b.tokens = math.Min(float64(burst), b.tokens+now.Sub(b.at).Seconds()*rate)
	b.at = now
	v := verdict{limit: int(rate)}
	if b.tokens >= 1 {
		b.tokens--
		v.allowed = true
	} else {
		v.retryAfter = time.Duration((1 - b.tokens) / rate * float64(time.Second))
	}
	v.remaining = int(b.tokens)
	v.resetIn = time.Duration((float64(burst) - b.tokens) / rate * float64(time.Second))
	return v
}

// sweep drops buckets that have been idle long enough to be full again:
// forgetting them changes nothing. It runs every 1024 new keys.
func (l *limiter) sweep(now time.Time, rate float64, burst int) {
	l.inserts++
	if l.inserts%1024 != 0 {
		return
	}
	full := time.Duration(float64(burst) / rate * float64(time.Second))
	for k, b := range l.buckets {
		if now.Sub(b.at) > full {
			delete(l.buckets, k)
		}
	}
}

// clientKey names the client of a request: its API key (hashed), else the
// first X-Forwarded-For address, else its User-Agent (with the peer
// address, so that unrelated clients of one tool do not share a bucket).
func clientKey(c *fiber.Ctx) string {
	if _, token, ok := strings.Cut(c.Get(fiber.HeaderAuthorization), " "); ok && token != "" {
		sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
		return "key:" + hex.EncodeToString(sum[:16])
	}
	if xff := c.Get(fiber.HeaderXForwardedFor); xff != "" {
		first, _, _ := strings.Cut(xff, ",")
		return "ip:" + strings.TrimSpace(first)
	}
	return "ua:" + c.Context().RemoteIP().String() + "|" + c.Get(fiber.HeaderUserAgent)
}

func setRateHeaders(c *fiber.Ctx, v verdict) {
	c.Set("X-RateLimit-Limit", strconv.Itoa(v.limit))
	c.Set("X-RateLimit-Remaining", strconv.Itoa(v.remaining))
	c.Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(v.resetIn).Unix(), 10))
}

// rateLimited is the 429 answer, with the headers the SDK reads.
func rateLimited(v verdict, scope string) *apiError {
	secs := int(math.Ceil(v.retryAfter.Seconds()))
	if secs < 1 {
		secs = 1
	}
	return &apiError{
		Status: fiber.StatusTooManyRequests, Code: "RATE_LIMIT_EXCEEDED",
		Message: "Too many requests, please retry after " + strconv.Itoa(secs) + " seconds",
		Details: map[string]any{"retry_after_seconds": secs, "scope": scope},
		Extra: map[string]any{
			"retry_after_secs": secs, "limit": v.limit, "remaining": 0,
			"reset_at": ts(time.Now().Add(v.resetIn)),
		},
		Headers: map[string]string{
			"Retry-After": strconv.Itoa(secs), "X-RateLimit-Limit": strconv.Itoa(v.limit),
			"X-RateLimit-Remaining": "0",
			"X-RateLimit-Reset":     strconv.FormatInt(time.Now().Add(v.resetIn).Unix(), 10),
		},
	}
}

// limitClients applies RATE_LIMIT_REQUESTS_PER_SECOND and
// RATE_LIMIT_BURST_SIZE to every /api/v1 request.
func (s *Server) limitClients(c *fiber.Ctx) error {
	if s.cfg.RateLimitRequestsPerSecond <= 0 {
		return c.Next()
	}
	rate, burst := s.share(float64(s.cfg.RateLimitRequestsPerSecond), s.cfg.RateLimitBurstSize)
	v := s.clients.take(clientKey(c), rate, burst)
	if !v.allowed {
		return rateLimited(v, "client")
	}
	setRateHeaders(c, v)
	return c.Next()
}
