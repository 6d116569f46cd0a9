package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/jackc/pgx/v5"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/queries"
)

// nullableInt tells a field left out (keep) from an explicit null (clear).
type nullableInt struct {
	Set, Null bool
	V         int
}

func (n *nullableInt) UnmarshalJSON(b []byte) error {
	n.Set = true
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		n.Null = true
		return nil
	}
	return json.Unmarshal(b, &n.V)
}

func (n nullableInt) ptr() *int {
	if !n.Set || n.Null {
		return nil
	}
	v := n.V
	return &v
}

// queuePath reads and checks the {name} path segment.
func queuePath(c *fiber.Ctx) (string, error) {
	name := c.Params("name")
	if err := commands.ValidateQueueName("queue_name", name); err != nil {
		return "", badRequest("Invalid queue name: 1 to 100 characters of letters, digits, '-', '_' and '.'")
	}
	// A copy: Params aliases the request's buffer, which Fiber hands to the
	// next request once the handler returns, and a stream's writer (the
	// queue's event stream) uses the name long after that.
	return strings.Clone(name), nil
}

func queueJSON(q queries.QueueConfig) fiber.Map {
	return fiber.Map{
		"id": q.ID, "organization_id": q.OrganizationID, "queue_name": q.QueueName,
		"max_retries": q.MaxRetries, "default_timeout": q.DefaultTimeout,
		"rate_limit": q.RateLimitPerSecond, "rate_limit_per_second": q.RateLimitPerSecond,
		"max_concurrent_jobs": q.MaxConcurrentJobs, "enabled": q.Enabled, "paused": !q.Enabled,
		"paused_at": tsp(q.PausedAt), "paused_reason": q.PausedReason, "settings": q.Settings,
		"created_at": ts(q.CreatedAt), "updated_at": ts(q.UpdatedAt),
	}
}

func (s *Server) listQueues(c *fiber.Ctx) error {
	rows, err := s.q.QueueConfigList(c.UserContext(), s.pool, caller(c).OrgID)
	if err != nil {
		return err
	}
	out := make([]fiber.Map, len(rows))
	for i, q := range rows {
		out[i] = fiber.Map{
			"queue_name": q.QueueName, "max_retries": q.MaxRetries, "default_timeout": q.DefaultTimeout,
			"rate_limit": q.RateLimitPerSecond, "max_concurrent_jobs": q.MaxConcurrentJobs,
			"enabled": q.Enabled, "paused": !q.Enabled,
		}
	}
	return c.JSON(out)
}

func (s *Server) getQueue(c *fiber.Ctx) error {
	name, err := queuePath(c)
	if err != nil {
		return err
	}
	q, err := s.q.QueueConfigGet(c.UserContext(), s.pool, queries.QueueConfigGetParams{OrganizationID: caller(c).OrgID, QueueName: name})
	if errors.Is(err, pgx.ErrNoRows) {
		return notFound("Queue not found")
	}
	if err != nil {
		return err
	}
	return c.JSON(queueJSON(q))
}

// configureQueue serves PUT /queues/{name}/config (Spooled) and PUT
// /queues/{name} (the SDK). Fields left out keep their values; an explicit
// null clears a limit; the path names the queue (a body queue_name is
// ignored). enabled, when given, pauses or resumes explicitly.
func (s *Server) configureQueue(c *fiber.Ctx) error {
	name, err := queuePath(c)
	if err != nil {
		return err
	}
	var r struct {
		MaxRetries         *int            `json:"max_retries"`
		DefaultTimeout     *int            `json:"default_timeout"`
		RateLimit          nullableInt     `json:"rate_limit"`
		RateLimitPerSecond nullableInt     `json:"rate_limit_per_second"`
		MaxConcurrentJobs  nullableInt     `json:"max_concurrent_jobs"`
		Enabled            *bool           `json:"enabled"`
		Settings           json.RawMessage `json:"settings"`
	}
	if err := decodeBody(c, &r); err != nil {
		return err
	}
	rate := r.RateLimit
	if r.RateLimitPerSecond.Set {
		rate = r.RateLimitPerSecond
	}
	actor := caller(c).actor()
	q, err := s.cmd.ConfigureQueue(c.UserContext(), actor, name, commands.QueueSettings{
		MaxRetries: r.MaxRetries, DefaultTimeout: r.DefaultTimeout,
		RateLimitPerSecond: rate.ptr(), ClearRateLimit: rate.Set && rate.Null,
		MaxConcurrentJobs: r.MaxConcurrentJobs.ptr(), ClearMaxConcurrent: r.MaxConcurrentJobs.Set && r.MaxConcurrentJobs.Null,
		Settings: r.Settings,
	})
	if err != nil {
		return err
	}
	if r.Enabled != nil && *r.Enabled != q.Enabled {
		var ch commands.QueuePauseChange
		if *r.Enabled {
			ch, err = s.cmd.ResumeQueue(c.UserContext(), actor, name)
		} else {
			ch, err = s.cmd.PauseQueue(c.UserContext(), actor, name, nil)
		}
		if err != nil {
			return err
		}
		q = ch.Config
	}
	return c.JSON(queueJSON(q))
}

func (s *Server) pauseQueue(c *fiber.Ctx) error {
	name, err := queuePath(c)
	if err != nil {
		return err
	}
	var r struct {
		Reason *string `json:"reason"`
	}
	if len(bytes.TrimSpace(c.Body())) > 0 {
		if err := decodeBody(c, &r); err != nil {
			return err
		}
	}
	ch, err := s.cmd.PauseQueue(c.UserContext(), caller(c).actor(), name, r.Reason)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"queue_name": name, "paused": true, "paused_at": tsp(ch.Config.PausedAt),
		"reason": ch.Config.PausedReason})
}

func (s *Server) resumeQueue(c *fiber.Ctx) error {
	name, err := queuePath(c)
	if err != nil {
		return err
	}
	ch, err := s.cmd.ResumeQueue(c.UserContext(), caller(c).actor(), name)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"queue_name": name, "resumed": true,
		"paused_duration_secs": int64(ch.PausedFor / time.Second)})
}

func (s *Server) deleteQueue(c *fiber.Ctx) error {
	name, err := queuePath(c)
	if err != nil {
		return err
	}
	if err := s.cmd.DeleteQueue(c.UserContext(), caller(c).actor(), name); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}
