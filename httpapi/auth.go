package httpapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/singleflight"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/events"
	"github.com/spooled-go/spooled/queries"
)

// principal is who a request acts as.
type principal struct {
	OrgID  string
	KeyID  uuid.UUID
	Queues []string
	Limits commands.PlanLimits
}

func (p principal) actor() commands.Actor {
	limits := p.Limits
	return commands.Actor{OrgID: p.OrgID, Name: events.ActorAPIKey(p.KeyID), Limits: &limits}
}

// keyAuthenticator resolves API keys. A key is found by the SHA-256 of the
// raw key (one unique-index probe) and then cached by that hash, so a
// request costs a map lookup. Revocation through this server forgets the
// key at once; other instances forget it within the cache TTL.
type keyAuthenticator struct {
	db  queries.DBTX
	q   *queries.Queries
	ttl time.Duration
	now func() time.Time
	// loads lets concurrent misses of one key share a single load: when a
	// busy key's entry expires, every request in flight with it would
	// otherwise read the key and rewrite its last_used row at once.
	loads singleflight.Group

	mu    sync.RWMutex
	byKey map[string]cachedKey // key hash -> entry
	// gen counts forgets: a load that began before one does not cache
	// what it read, which may be the key as it was before a revoke.
	gen uint64
}

type cachedKey struct {
	p         principal
	keyExpiry *time.Time
	cachedAt  time.Time
}

// keyLoadTimeout bounds a shared key load, which runs apart from the
// context of the request that started it (that client may leave while
// others wait on the load).
const keyLoadTimeout = 10 * time.Second

func newKeyAuthenticator(db queries.DBTX, ttl time.Duration) *keyAuthenticator {
	return &keyAuthenticator{db: db, q: queries.New(), ttl: ttl, now: time.Now, byKey: map[string]cachedKey{}}
}

var (
	errMissingAuth = &apiError{Status: fiber.StatusUnauthorized, Code: "UNAUTHORIZED", Message: "Missing or invalid Authorization header"}
	errInvalidKey  = &apiError{Status: fiber.StatusUnauthorized, Code: "AUTHENTICATION_FAILED", Message: "Invalid API key"}
	errRevokedKey  = &apiError{Status: fiber.StatusUnauthorized, Code: "AUTHENTICATION_FAILED", Message: "API key has been revoked"}
	errExpiredKey  = &apiError{Status: fiber.StatusUnauthorized, Code: "AUTHENTICATION_FAILED", Message: "API key has expired"}
	errJWT         = &apiError{Status: fiber.StatusUnauthorized, Code: "AUTHENTICATION_FAILED", Message: "JWT access tokens are not accepted yet; use an API key"}
)

// authenticate resolves a raw bearer credential.
func (a *keyAuthenticator) authenticate(ctx context.Context, raw string) (principal, error) {
	if strings.HasPrefix(raw, "eyJ") {
		return principal{}, errJWT
	}
	hash := commands.HashKey(raw)
	now := a.now()
	a.mu.RLock()
	e, ok := a.byKey[hash]
	a.mu.RUnlock()
	if ok && now.Sub(e.cachedAt) < a.ttl {
		if e.keyExpiry != nil && !e.keyExpiry.After(now) {
			return principal{}, errExpiredKey
		}
		return e.p, nil
	}
	v, err, _ := a.loads.Do(hash, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), keyLoadTimeout)
		defer cancel()
		return a.load(ctx, hash)
	})
	if err != nil {
		return principal{}, err
	}
	return v.(principal), nil
}

// load reads a key by hash, caches it, and refreshes its last_used.
func (a *keyAuthenticator) load(ctx context.Context, hash string) (principal, error) {
	a.mu.RLock()
	gen := a.gen
	a.mu.RUnlock()
	now := a.now()
	row, err := a.q.APIKeyByHash(ctx, a.db, hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return principal{}, errInvalidKey
	}
	if err != nil {
		return principal{}, fmt.Errorf("read api key: %w", err)
	}
	if !row.IsActive {
		a.forget(hash)
		return principal{}, errRevokedKey
	}
	if row.ExpiresAt != nil && !row.ExpiresAt.After(now) {
		return principal{}, errExpiredKey
	}
	limits, err := commands.LimitsFor(row.PlanTier, row.CustomLimits)
	if err != nil {
		return principal{}, err
	}
	p := principal{OrgID: row.OrganizationID, KeyID: row.ID, Queues: row.Queues, Limits: limits}
	if a.ttl > 0 {
		a.mu.Lock()
		if a.gen == gen {
			a.byKey[hash] = cachedKey{p: p, keyExpiry: row.ExpiresAt, cachedAt: now}
		}
		a.mu.Unlock()
	}
	// last_used is refreshed when the key is (re)loaded, so at most once per
	// TTL per instance rather than on every request.
	if err := a.q.APIKeyTouch(ctx, a.db, []uuid.UUID{row.ID}); err != nil {
		return principal{}, fmt.Errorf("touch api key: %w", err)
	}
	return p, nil
}

func (a *keyAuthenticator) forget(hash string) {
	a.mu.Lock()
	delete(a.byKey, hash)
	a.gen++
	a.mu.Unlock()
}

// forgetKeyID drops a key from the cache by id (after a revoke or update).
func (a *keyAuthenticator) forgetKeyID(id uuid.UUID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.gen++
	for h, e := range a.byKey {
		if e.p.KeyID == id {
			delete(a.byKey, h)
		}
	}
}

const principalKey = "spooled.principal"

// requireKey is the middleware of every protected route.
func (s *Server) requireKey(c *fiber.Ctx) error {
	h := c.Get(fiber.HeaderAuthorization)
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return errMissingAuth
	}
	p, err := s.auth.authenticate(c.UserContext(), strings.TrimSpace(token))
	if err != nil {
		return err
	}
	// The plan's request rate, per organization (per server instance).
	if rate := p.Limits.RateLimitRequestsPerSecond; rate > 0 {
		r, b := s.share(float64(rate), int(max(p.Limits.RateLimitBurst, 1)))
		v := s.orgs.take(p.OrgID, r, b)
		if !v.allowed {
			return rateLimited(v, "organization")
		}
	}
	c.Locals(principalKey, p)
	return c.Next()
}

func caller(c *fiber.Ctx) principal {
	p, _ := c.Locals(principalKey).(principal)
	return p
}
