package httpapi

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/spooled-go/spooled/queries"
)

// timeLayout is how Spooled prints timestamps: RFC 3339, UTC, microseconds.
const timeLayout = "2006-01-02T15:04:05.000000Z07:00"

func ts(t time.Time) string { return t.UTC().Format(timeLayout) }

func tsp(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := ts(*t)
	return &s
}

// jobJSON is Spooled's Job object: every key always present.
type jobJSON struct {
	ID                uuid.UUID       `json:"id"`
	OrganizationID    string          `json:"organization_id"`
	QueueName         string          `json:"queue_name"`
	Status            string          `json:"status"`
	Payload           json.RawMessage `json:"payload"`
	Result            json.RawMessage `json:"result"`
	RetryCount        int32           `json:"retry_count"`
	MaxRetries        int32           `json:"max_retries"`
	LastError         *string         `json:"last_error"`
	CreatedAt         string          `json:"created_at"`
	ScheduledAt       *string         `json:"scheduled_at"`
	StartedAt         *string         `json:"started_at"`
	CompletedAt       *string         `json:"completed_at"`
	ExpiresAt         *string         `json:"expires_at"`
	Priority          int32           `json:"priority"`
	Tags              json.RawMessage `json:"tags"`
	TimeoutSeconds    int32           `json:"timeout_seconds"`
	ParentJobID       *uuid.UUID      `json:"parent_job_id"`
	CompletionWebhook *string         `json:"completion_webhook"`
	AssignedWorkerID  *string         `json:"assigned_worker_id"`
	LeaseID           *uuid.UUID      `json:"lease_id"`
	LeaseExpiresAt    *string         `json:"lease_expires_at"`
	IdempotencyKey    *string         `json:"idempotency_key"`
	UpdatedAt         string          `json:"updated_at"`
	WorkflowID        *string         `json:"workflow_id"`
	DependencyMode    *string         `json:"dependency_mode"`
	DependenciesMet   *bool           `json:"dependencies_met"`
}

func toJobJSON(j queries.Job) jobJSON {
	return jobJSON{
		ID: j.ID, OrganizationID: j.OrganizationID, QueueName: j.QueueName, Status: j.Status,
		Payload: j.Payload, Result: j.Result, RetryCount: j.RetryCount, MaxRetries: j.MaxRetries,
		LastError: j.LastError, CreatedAt: ts(j.CreatedAt), ScheduledAt: tsp(j.ScheduledAt),
		StartedAt: tsp(j.StartedAt), CompletedAt: tsp(j.CompletedAt), ExpiresAt: tsp(j.ExpiresAt),
		Priority: j.Priority, Tags: j.Tags, TimeoutSeconds: j.TimeoutSeconds, ParentJobID: j.ParentJobID,
		CompletionWebhook: j.CompletionWebhook, AssignedWorkerID: j.AssignedWorkerID, LeaseID: j.LeaseID,
		LeaseExpiresAt: tsp(j.LeaseExpiresAt), IdempotencyKey: j.IdempotencyKey, UpdatedAt: ts(j.UpdatedAt),
		WorkflowID: j.WorkflowID, DependencyMode: j.DependencyMode, DependenciesMet: j.DependenciesMet,
	}
}

// jobSummaryJSON is a row of the job lists. attempt and max_retries are
// the later upstream's additions; retry_count stays for older clients.
type jobSummaryJSON struct {
	ID          uuid.UUID `json:"id"`
	QueueName   string    `json:"queue_name"`
	Status      string    `json:"status"`
	Priority    int32     `json:"priority"`
	RetryCount  int32     `json:"retry_count"`
	Attempt     int32     `json:"attempt"`
	MaxRetries  int32     `json:"max_retries"`
	CreatedAt   string    `json:"created_at"`
	ScheduledAt *string   `json:"scheduled_at"`
	StartedAt   *string   `json:"started_at"`
	CompletedAt *string   `json:"completed_at"`
}

func toSummary(r queries.JobListRow) jobSummaryJSON {
	return jobSummaryJSON{
		ID: r.ID, QueueName: r.QueueName, Status: r.Status, Priority: r.Priority,
		RetryCount: r.RetryCount, Attempt: r.RetryCount, MaxRetries: r.MaxRetries,
		CreatedAt: ts(r.CreatedAt), ScheduledAt: tsp(r.ScheduledAt), StartedAt: tsp(r.StartedAt),
		CompletedAt: tsp(r.CompletedAt),
	}
}

// organizationJSON is Spooled's Organization object.
type organizationJSON struct {
	ID           string          `json:"id"`
	Name         string          `json:"name"`
	Slug         string          `json:"slug"`
	PlanTier     string          `json:"plan_tier"`
	BillingEmail *string         `json:"billing_email"`
	Settings     json.RawMessage `json:"settings"`
	CustomLimits json.RawMessage `json:"custom_limits"`
	CreatedAt    string          `json:"created_at"`
	UpdatedAt    string          `json:"updated_at"`
}

func toOrganizationJSON(o queries.Organization) organizationJSON {
	return organizationJSON{
		ID: o.ID, Name: o.Name, Slug: o.Slug, PlanTier: o.PlanTier, BillingEmail: o.BillingEmail,
		Settings: o.Settings, CustomLimits: o.CustomLimits, CreatedAt: ts(o.CreatedAt), UpdatedAt: ts(o.UpdatedAt),
	}
}

// apiKeyJSON is Spooled's ApiKeySummary.
type apiKeyJSON struct {
	ID        uuid.UUID `json:"id"`
	Name      string    `json:"name"`
	Queues    []string  `json:"queues"`
	RateLimit *int32    `json:"rate_limit"`
	IsActive  bool      `json:"is_active"`
	CreatedAt string    `json:"created_at"`
	LastUsed  *string   `json:"last_used"`
	ExpiresAt *string   `json:"expires_at"`
}

func toAPIKeyJSON(k queries.ApiKey) apiKeyJSON {
	q := k.Queues
	if q == nil {
		q = []string{}
	}
	return apiKeyJSON{
		ID: k.ID, Name: k.Name, Queues: q, RateLimit: k.RateLimit, IsActive: k.IsActive,
		CreatedAt: ts(k.CreatedAt), LastUsed: tsp(k.LastUsed), ExpiresAt: tsp(k.ExpiresAt),
	}
}
