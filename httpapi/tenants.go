package httpapi

import (
	"errors"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/queries"
)

type createOrganizationRequest struct {
	Name         *string `json:"name"`
	Slug         *string `json:"slug"`
	BillingEmail *string `json:"billing_email"`
	PlanTier     *string `json:"plan_tier"`
}

func (s *Server) createOrganization(c *fiber.Ctx) error {
	byAdmin := false
	switch s.cfg.RegistrationMode {
	case "invite":
		return errorf(fiber.StatusForbidden, "ACCESS_DENIED", "Registration is by invitation only")
	case "closed":
		if s.cfg.AdminAPIKey == "" || c.Get("X-Admin-Key") != s.cfg.AdminAPIKey {
			return errorf(fiber.StatusForbidden, "ACCESS_DENIED", "Registration is closed; an X-Admin-Key is required")
		}
		byAdmin = true
	}
	return s.doCreateOrganization(c, byAdmin, false)
}

func (s *Server) adminCreateOrganization(c *fiber.Ctx) error {
	return s.doCreateOrganization(c, true, true)
}

func (s *Server) doCreateOrganization(c *fiber.Ctx, byAdmin, allowPlan bool) error {
	var r createOrganizationRequest
	if err := decodeBody(c, &r); err != nil {
		return err
	}
	if err := requireField(r.Name != nil, "name"); err != nil {
		return err
	}
	if err := requireField(r.Slug != nil, "slug"); err != nil {
		return err
	}
	req := commands.NewOrganization{Name: *r.Name, Slug: *r.Slug, BillingEmail: r.BillingEmail, ByAdmin: byAdmin}
	if allowPlan && r.PlanTier != nil {
		req.PlanTier = *r.PlanTier
	}
	out, err := s.cmd.CreateOrganization(c.UserContext(), req)
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusCreated).JSON(fiber.Map{
		"organization": toOrganizationJSON(out.Organization),
		"api_key": fiber.Map{
			"id": out.Key.Key.ID, "key": out.Key.Raw, "name": out.Key.Key.Name,
			"created_at": ts(out.Key.Key.CreatedAt),
		},
	})
}

func (s *Server) listOrganizations(c *fiber.Ctx) error {
	o, err := s.q.OrganizationGet(c.UserContext(), s.pool, caller(c).OrgID)
	if err != nil {
		return err
	}
	return c.JSON([]fiber.Map{{
		"id": o.ID, "name": o.Name, "slug": o.Slug, "plan_tier": o.PlanTier, "created_at": ts(o.CreatedAt),
	}})
}

func (s *Server) getOrganization(c *fiber.Ctx) error {
	if c.Params("id") != caller(c).OrgID {
		return notFound("Organization not found")
	}
	o, err := s.q.OrganizationGet(c.UserContext(), s.pool, caller(c).OrgID)
	if err != nil {
		return err
	}
	return c.JSON(toOrganizationJSON(o))
}

func (s *Server) listAPIKeys(c *fiber.Ctx) error {
	keys, err := s.q.APIKeyList(c.UserContext(), s.pool, caller(c).OrgID)
	if err != nil {
		return err
	}
	out := make([]apiKeyJSON, len(keys))
	for i, k := range keys {
		out[i] = toAPIKeyJSON(k)
	}
	return c.JSON(out)
}

func (s *Server) getAPIKey(c *fiber.Ctx) error {
	id, err := uuid.Parse(c.Params("id"))
	if err != nil {
		return notFound("API key not found")
	}
	k, err := s.q.APIKeyGet(c.UserContext(), s.pool, queries.APIKeyGetParams{ID: id, OrganizationID: caller(c).OrgID})
	if errors.Is(err, pgx.ErrNoRows) {
		return notFound("API key not found")
	}
	if err != nil {
		return err
	}
	return c.JSON(toAPIKeyJSON(k))
}

func (s *Server) createAPIKey(c *fiber.Ctx) error {
	var r struct {
		Name      *string    `json:"name"`
		Queues    []string   `json:"queues"`
		RateLimit *int       `json:"rate_limit"`
		ExpiresAt *timestamp `json:"expires_at"`
	}
	if err := decodeBody(c, &r); err != nil {
		return err
	}
	if err := requireField(r.Name != nil, "name"); err != nil {
		return err
	}
	k, err := s.cmd.CreateAPIKey(c.UserContext(), caller(c).actor(), commands.NewKey{
		Name: *r.Name, Queues: r.Queues, RateLimit: r.RateLimit, ExpiresAt: (*time.Time)(r.ExpiresAt),
	})
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusCreated).JSON(fiber.Map{
		"id": k.Key.ID, "key": k.Raw, "name": k.Key.Name, "created_at": ts(k.Key.CreatedAt),
		"expires_at": tsp(k.Key.ExpiresAt),
	})
}

func (s *Server) updateAPIKey(c *fiber.Ctx) error {
	var r struct {
		Name      *string  `json:"name"`
		Queues    []string `json:"queues"`
		RateLimit *int     `json:"rate_limit"`
		IsActive  *bool    `json:"is_active"`
	}
	if err := decodeBody(c, &r); err != nil {
		return err
	}
	k, err := s.cmd.UpdateAPIKey(c.UserContext(), caller(c).actor(), c.Params("id"), commands.KeyUpdate{
		Name: r.Name, Queues: r.Queues, RateLimit: r.RateLimit, IsActive: r.IsActive,
	})
	if err != nil {
		return err
	}
	s.auth.forgetKeyID(k.ID)
	return c.JSON(toAPIKeyJSON(k))
}

func (s *Server) revokeAPIKey(c *fiber.Ctx) error {
	if err := s.cmd.RevokeAPIKey(c.UserContext(), caller(c).actor(), c.Params("id")); err != nil {
		return err
	}
	if id, err := uuid.Parse(c.Params("id")); err == nil {
		s.auth.forgetKeyID(id)
	}
	return c.SendStatus(fiber.StatusNoContent)
}
