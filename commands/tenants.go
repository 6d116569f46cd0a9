package commands

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/mail"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/spooled-go/spooled/events"
	"github.com/spooled-go/spooled/internal/pgdb"
	"github.com/spooled-go/spooled/queries"
)

// Plan tiers an organization may have.
var planTiers = map[string]bool{"free": true, "starter": true, "pro": true, "enterprise": true}

var (
	slugRE    = regexp.MustCompile(`^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$`)
	keyNameRE = regexp.MustCompile(`^[A-Za-z0-9 \-_.()]{1,100}$`)
	reserved  = map[string]bool{}
)

func init() {
	for _, s := range strings.Fields(`admin api app auth dashboard docs help internal login logout metrics
		root settings signup status support system test www`) {
		reserved[s] = true
	}
}

// NewOrganization is a request to create a tenant.
type NewOrganization struct {
	Name         string
	Slug         string
	BillingEmail *string
	PlanTier     string // "" means free
	// ByAdmin marks the admin route: reserved slugs are allowed and the
	// registration mode does not apply.
	ByAdmin bool
}

// CreatedOrganization is a new tenant and its first key, shown only now.
type CreatedOrganization struct {
	Organization queries.Organization
	Key          CreatedKey
}

// CreatedKey is a new API key; Raw is never stored and never shown again.
type CreatedKey struct {
	Key queries.ApiKey
	Raw string
}

// CreateOrganization creates a tenant with an "Initial Admin Key" that may
// use every queue.
func (s *Service) CreateOrganization(ctx context.Context, r NewOrganization) (CreatedOrganization, error) {
	if !r.ByAdmin {
		switch s.defaults.Registration {
		case "closed", "invite":
			return CreatedOrganization{}, fmt.Errorf("%w: registration is %s", ErrForbidden, s.defaults.Registration)
		}
	}
	if n := utf8.RuneCountInString(strings.TrimSpace(r.Name)); n < 3 || n > 100 {
		return CreatedOrganization{}, invalid("name", "length", "must be 3 to 100 characters")
	}
	if len(r.Slug) < 3 || len(r.Slug) > 50 {
		return CreatedOrganization{}, invalid("slug", "length", "must be 3 to 50 characters")
	}
	if !slugRE.MatchString(r.Slug) {
		return CreatedOrganization{}, invalid("slug", "invalid_slug",
			"must be lower-case letters and digits in words joined by single hyphens, starting with a letter")
	}
	if !r.ByAdmin && reserved[r.Slug] {
		return CreatedOrganization{}, invalid("slug", "reserved_slug", "%q is reserved", r.Slug)
	}
	if r.BillingEmail != nil {
		if _, err := mail.ParseAddress(*r.BillingEmail); err != nil {
			return CreatedOrganization{}, invalid("billing_email", "email", "must be an email address")
		}
	}
	plan := strings.ToLower(r.PlanTier)
	if plan == "" {
		plan = "free"
	}
	if !planTiers[plan] {
		return CreatedOrganization{}, invalid("plan_tier", "plan_tier", "must be free, starter, pro or enterprise")
	}

	var out CreatedOrganization
	err := pgdb.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		org, err := s.q.OrganizationCreate(ctx, tx, queries.OrganizationCreateParams{
			ID: uuid.NewString(), Name: strings.TrimSpace(r.Name), Slug: r.Slug, PlanTier: plan,
			BillingEmail: r.BillingEmail,
		})
		if pgdb.IsUniqueViolation(err, "organizations_slug_key") {
			return fmt.Errorf("%w: Organization with this slug already exists", ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("create organization: %w", err)
		}
		actor := events.ActorSystem("registration")
		if r.ByAdmin {
			actor = events.ActorSystem("admin")
		}
		if err := events.Append(ctx, tx, events.New{
			OrganizationID: org.ID, StreamType: events.StreamOrganization, StreamID: org.ID,
			Type: events.OrganizationCreated, Actor: actor,
			Data: map[string]any{"name": org.Name, "slug": org.Slug, "plan_tier": org.PlanTier},
		}); err != nil {
			return err
		}
		key, err := s.createKey(ctx, tx, org.ID, actor, NewKey{Name: "Initial Admin Key", Queues: []string{"*"}})
		if err != nil {
			return err
		}
		out = CreatedOrganization{Organization: org, Key: key}
		return nil
	})
	return out, err
}

// NewKey is a request for another API key.
type NewKey struct {
	Name      string
	Queues    []string
	RateLimit *int
	ExpiresAt *time.Time
}

// validateKeyQueues checks a key's queue scope: at most 50 entries, each a
// queue name or "*".
func validateKeyQueues(queues []string) error {
	if len(queues) > 50 {
		return invalid("queues", "length", "must name at most 50 queues")
	}
	for _, q := range queues {
		if q != "*" {
			if err := ValidateQueueName("queues", q); err != nil {
				return err
			}
		}
	}
	return nil
}

// CreateAPIKey adds a key to the caller's organization.
func (s *Service) CreateAPIKey(ctx context.Context, actor Actor, r NewKey) (CreatedKey, error) {
	if !keyNameRE.MatchString(r.Name) {
		return CreatedKey{}, invalid("name", "invalid_name", "must be 1 to 100 characters of letters, digits, spaces and - _ . ( )")
	}
	if err := validateKeyQueues(r.Queues); err != nil {
		return CreatedKey{}, err
	}
	if r.RateLimit != nil {
		if err := checkRange("rate_limit", *r.RateLimit, 1, 10000); err != nil {
			return CreatedKey{}, err
		}
	}
	if r.ExpiresAt != nil && !r.ExpiresAt.After(s.Now()) {
		return CreatedKey{}, invalid("expires_at", "future", "must be in the future")
	}
	var out CreatedKey
	err := pgdb.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		out, err = s.createKey(ctx, tx, actor.OrgID, actor.Name, r)
		return err
	})
	return out, err
}

func (s *Service) createKey(ctx context.Context, tx pgx.Tx, orgID, actor string, r NewKey) (CreatedKey, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return CreatedKey{}, fmt.Errorf("generate key: %w", err)
	}
	raw := s.defaults.KeyPrefix + base64.RawURLEncoding.EncodeToString(secret)
	queues := r.Queues
	if queues == nil {
		queues = []string{}
	}
	var rate *int32
	if r.RateLimit != nil {
		v := int32(*r.RateLimit)
		rate = &v
	}
	key, err := s.q.APIKeyCreate(ctx, tx, queries.APIKeyCreateParams{
		ID: uuid.New(), OrganizationID: orgID, Name: r.Name, KeyHash: HashKey(raw),
		KeyPrefix: raw[:8], Queues: queues, RateLimit: rate, ExpiresAt: r.ExpiresAt,
	})
	if err != nil {
		return CreatedKey{}, fmt.Errorf("create api key: %w", err)
	}
	if err := events.Append(ctx, tx, events.New{
		OrganizationID: orgID, StreamType: events.StreamAPIKey, StreamID: key.ID.String(),
		Type: events.APIKeyCreated, Actor: actor,
		Data: map[string]any{"name": key.Name, "queues": key.Queues},
	}); err != nil {
		return CreatedKey{}, err
	}
	return CreatedKey{Key: key, Raw: raw}, nil
}

// HashKey is how a raw API key is stored and looked up.
func HashKey(raw string) string {
	sum := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(sum[:])
}

// KeyUpdate changes some of a key's fields; nil fields keep their value.
type KeyUpdate struct {
	Name      *string
	Queues    []string
	RateLimit *int
	IsActive  *bool
}

// UpdateAPIKey changes a key of the caller's organization. Setting IsActive
// to false revokes it.
func (s *Service) UpdateAPIKey(ctx context.Context, actor Actor, keyID string, r KeyUpdate) (queries.ApiKey, error) {
	id, err := uuid.Parse(keyID)
	if err != nil {
		return queries.ApiKey{}, ErrNotFound
	}
	if r.Name != nil && !keyNameRE.MatchString(*r.Name) {
		return queries.ApiKey{}, invalid("name", "invalid_name", "must be 1 to 100 characters of letters, digits, spaces and - _ . ( )")
	}
	// Spooled's update took the queues unchecked; they follow the same
	// rules as at creation, so a key never holds a scope no queue can match.
	if err := validateKeyQueues(r.Queues); err != nil {
		return queries.ApiKey{}, err
	}
	if r.RateLimit != nil {
		if err := checkRange("rate_limit", *r.RateLimit, 1, 10000); err != nil {
			return queries.ApiKey{}, err
		}
	}
	var rate *int32
	if r.RateLimit != nil {
		v := int32(*r.RateLimit)
		rate = &v
	}
	var key queries.ApiKey
	err = pgdb.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		key, err = s.q.APIKeyUpdate(ctx, tx, queries.APIKeyUpdateParams{
			ID: id, OrganizationID: actor.OrgID, Name: r.Name, Queues: r.Queues, RateLimit: rate, IsActive: r.IsActive,
		})
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("update api key: %w", err)
		}
		typ := events.APIKeyUpdated
		if r.IsActive != nil && !*r.IsActive {
			typ = events.APIKeyRevoked
		}
		return events.Append(ctx, tx, events.New{
			OrganizationID: actor.OrgID, StreamType: events.StreamAPIKey, StreamID: id.String(),
			Type: typ, Actor: actor.Name,
			Data: map[string]any{"name": key.Name, "queues": key.Queues, "is_active": key.IsActive},
		})
	})
	return key, err
}

// RevokeAPIKey deactivates a key; it stays listed.
func (s *Service) RevokeAPIKey(ctx context.Context, actor Actor, keyID string) error {
	inactive := false
	_, err := s.UpdateAPIKey(ctx, actor, keyID, KeyUpdate{IsActive: &inactive})
	return err
}

// DevKeyName names the key a development server prints at start.
const DevKeyName = "Development key (make run)"

// DevBootstrap gives the seeded default organization a fresh key for local
// development, revoking the one printed by the previous start. The default
// organization is raised to the enterprise plan so local use is not capped.
func (s *Service) DevBootstrap(ctx context.Context) (CreatedKey, error) {
	var out CreatedKey
	err := pgdb.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		const org = "default-org"
		if err := s.q.OrganizationSetPlan(ctx, tx, queries.OrganizationSetPlanParams{ID: org, PlanTier: "enterprise"}); err != nil {
			return fmt.Errorf("raise default organization plan: %w", err)
		}
		actor := events.ActorSystem("dev_bootstrap")
		if err := events.Append(ctx, tx, events.New{
			OrganizationID: org, StreamType: events.StreamOrganization, StreamID: org,
			Type: events.OrganizationPlanChanged, Actor: actor, Data: map[string]any{"plan_tier": "enterprise"},
		}); err != nil {
			return err
		}
		old, err := s.q.APIKeyRevokeByName(ctx, tx, queries.APIKeyRevokeByNameParams{OrganizationID: org, Name: DevKeyName})
		if err != nil {
			return fmt.Errorf("revoke previous development keys: %w", err)
		}
		for _, id := range old {
			if err := events.Append(ctx, tx, events.New{
				OrganizationID: org, StreamType: events.StreamAPIKey, StreamID: id.String(),
				Type: events.APIKeyRevoked, Actor: actor, Data: map[string]any{"reason": "replaced at server start"},
			}); err != nil {
				return err
			}
		}
		out, err = s.createKey(ctx, tx, org, actor, NewKey{Name: DevKeyName, Queues: []string{"*"}})
		return err
	})
	return out, err
}
