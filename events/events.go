// Package events owns the vocabulary of the log: event type names, the data
// each event carries, actors, and the reads and appends of the log outside
// the job transitions (which append in the same statement as their
// projection writes, in queries/jobs.sql).
package events

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/spooled-go/spooled/queries"
)

// Job event types. Names are dotted and lower-case; they never change once
// written, because the log keeps them forever.
const (
	JobEnqueued        = "job.enqueued"
	JobClaimed         = "job.claimed"
	JobCompleted       = "job.completed"
	JobFailed          = "job.failed"
	JobRetryScheduled  = "job.retry_scheduled"
	JobDeadLettered    = "job.deadlettered"
	JobCancelled       = "job.cancelled"
	JobLeaseExpired    = "job.lease_expired"
	JobLeaseRenewed    = "job.lease_renewed"
	JobAttemptRejected = "job.attempt_rejected"
	JobPriorityChanged = "job.priority_changed"
	JobRetried         = "job.retried"
	JobPurged          = "job.purged"
	JobReleased        = "job.released"
	JobReplayed        = "job.replayed"
	// JobSnapshot carries a job's whole state forward into the current
	// partition before retention drops the partition its history began in.
	JobSnapshot = "job.snapshot"
)

// Control-plane event types.
const (
	OrganizationCreated = "organization.created"
	// OrganizationPlanChanged records a plan tier change.
	OrganizationPlanChanged = "organization.plan_changed"
	APIKeyCreated           = "api_key.created"
	APIKeyUpdated           = "api_key.updated"
	APIKeyRevoked           = "api_key.revoked"
	WorkerRegistered        = "worker.registered"
	WorkerStatusChanged     = "worker.status_changed"
	WorkerDeregistered      = "worker.deregistered"
	QueueConfigured         = "queue.configured"
	QueuePaused             = "queue.paused"
	QueueResumed            = "queue.resumed"
	QueueDeleted            = "queue.deleted"
)

// Stream types: what stream_id names.
const (
	StreamJob          = "job"
	StreamOrganization = "organization"
	StreamAPIKey       = "api_key"
	StreamQueue        = "queue"
	StreamWorker       = "worker"
)

// Actors name who caused an event: "api_key:<id>", "worker:<id>" or
// "system:<part>".
func ActorAPIKey(id uuid.UUID) string { return "api_key:" + id.String() }

// ActorWorker names a worker by the id it claimed with.
func ActorWorker(workerID string) string { return "worker:" + workerID }

// ActorSystem names a part of the server acting on its own.
func ActorSystem(part string) string { return "system:" + part }

// Enqueued is the data of job.enqueued: everything the job was created with.
type Enqueued struct {
	Status            string          `json:"status"`
	Payload           json.RawMessage `json:"payload"`
	Priority          int32           `json:"priority"`
	MaxRetries        int32           `json:"max_retries"`
	TimeoutSeconds    int32           `json:"timeout_seconds"`
	ScheduledAt       *time.Time      `json:"scheduled_at"`
	ExpiresAt         *time.Time      `json:"expires_at"`
	Tags              json.RawMessage `json:"tags"`
	ParentJobID       *uuid.UUID      `json:"parent_job_id"`
	CompletionWebhook *string         `json:"completion_webhook"`
	IdempotencyKey    *string         `json:"idempotency_key"`
	// ReplayOf names the job this one replays (POST /jobs/{id}/replay).
	ReplayOf *uuid.UUID `json:"replay_of,omitempty"`
}

// Replayed is the data of job.replayed, in the original's history.
type Replayed struct {
	ReplayJobID uuid.UUID `json:"replay_job_id"`
}

// Claimed is the data of job.claimed.
type Claimed struct {
	WorkerID       string    `json:"worker_id"`
	LeaseID        uuid.UUID `json:"lease_id"`
	LeaseExpiresAt time.Time `json:"lease_expires_at"`
	Attempt        int32     `json:"attempt"`
	// DueAt is when the job became claimable: the enqueue-to-start latency
	// is the claim's occurred_at minus DueAt.
	DueAt *time.Time `json:"due_at,omitempty"`
}

// Completed is the data of job.completed.
type Completed struct {
	WorkerID string          `json:"worker_id"`
	LeaseID  uuid.UUID       `json:"lease_id"`
	Result   json.RawMessage `json:"result"`
	// StartedAt is when the attempt was claimed: the run time is the
	// completion's occurred_at minus StartedAt.
	StartedAt *time.Time `json:"started_at,omitempty"`
}

// Failed is the data of job.failed; job.retry_scheduled or
// job.deadlettered always follows it.
type Failed struct {
	WorkerID string    `json:"worker_id"`
	LeaseID  uuid.UUID `json:"lease_id"`
	Error    string    `json:"error"`
}

// RetryScheduled is the data of job.retry_scheduled: the job waits until
// RunAt. Error is set when the retry has a cause of its own (lease expiry).
type RetryScheduled struct {
	RetryCount int32     `json:"retry_count"`
	RunAt      time.Time `json:"run_at"`
	Error      *string   `json:"error,omitempty"`
}

// DeadLettered is the data of job.deadlettered.
type DeadLettered struct {
	Reason     string  `json:"reason"`
	RetryCount int32   `json:"retry_count"`
	Error      *string `json:"error,omitempty"`
}

// LeaseExpired is the data of job.lease_expired.
type LeaseExpired struct {
	WorkerID string    `json:"worker_id"`
	LeaseID  uuid.UUID `json:"lease_id"`
}

// LeaseRenewed is the data of job.lease_renewed.
type LeaseRenewed struct {
	WorkerID       string    `json:"worker_id"`
	LeaseID        uuid.UUID `json:"lease_id"`
	LeaseExpiresAt time.Time `json:"lease_expires_at"`
}

// AttemptRejected is the data of job.attempt_rejected: a complete, fail or
// renewal refused because the caller no longer holds the lease.
type AttemptRejected struct {
	Action   string     `json:"action"`
	WorkerID string     `json:"worker_id"`
	LeaseID  *uuid.UUID `json:"lease_id"`
	Reason   string     `json:"reason"`
}

// PriorityChanged is the data of job.priority_changed.
type PriorityChanged struct {
	OldPriority int32 `json:"old_priority"`
	NewPriority int32 `json:"new_priority"`
}

// Retried is the data of job.retried (a manual or dead-letter retry).
type Retried struct {
	RetryCount int32  `json:"retry_count"`
	Source     string `json:"source"`
	FromStatus string `json:"from_status,omitempty"`
}

// Released is the data of job.released: a worker gave a lease back (it
// deregistered); the job waits again without spending a retry.
type Released struct {
	WorkerID string    `json:"worker_id"`
	LeaseID  uuid.UUID `json:"lease_id"`
	Reason   string    `json:"reason"`
}

// Snapshot is the data of job.snapshot: the job's rows as they stood, in
// the columns' own names (to_jsonb of the rows).
type Snapshot struct {
	Job        SnapshotJob         `json:"job"`
	Pending    *SnapshotPending    `json:"pending"`
	Processing *SnapshotProcessing `json:"processing"`
}

// SnapshotJob is a jobs row.
type SnapshotJob struct {
	ID                uuid.UUID       `json:"id"`
	OrganizationID    string          `json:"organization_id"`
	QueueName         string          `json:"queue_name"`
	Status            string          `json:"status"`
	Payload           json.RawMessage `json:"payload"`
	Result            json.RawMessage `json:"result"`
	RetryCount        int32           `json:"retry_count"`
	MaxRetries        int32           `json:"max_retries"`
	LastError         *string         `json:"last_error"`
	CreatedAt         time.Time       `json:"created_at"`
	ScheduledAt       *time.Time      `json:"scheduled_at"`
	StartedAt         *time.Time      `json:"started_at"`
	CompletedAt       *time.Time      `json:"completed_at"`
	ExpiresAt         *time.Time      `json:"expires_at"`
	Priority          int32           `json:"priority"`
	Tags              json.RawMessage `json:"tags"`
	TimeoutSeconds    int32           `json:"timeout_seconds"`
	ParentJobID       *uuid.UUID      `json:"parent_job_id"`
	CompletionWebhook *string         `json:"completion_webhook"`
	AssignedWorkerID  *string         `json:"assigned_worker_id"`
	LeaseID           *uuid.UUID      `json:"lease_id"`
	LeaseExpiresAt    *time.Time      `json:"lease_expires_at"`
	IdempotencyKey    *string         `json:"idempotency_key"`
	UpdatedAt         time.Time       `json:"updated_at"`
	WorkflowID        *string         `json:"workflow_id"`
	DependencyMode    *string         `json:"dependency_mode"`
	DependenciesMet   *bool           `json:"dependencies_met"`
}

// SnapshotPending is a pending_jobs row.
type SnapshotPending struct {
	Priority  int32      `json:"priority"`
	RunAt     time.Time  `json:"run_at"`
	ExpiresAt *time.Time `json:"expires_at"`
	CreatedAt time.Time  `json:"created_at"`
}

// SnapshotProcessing is a processing_jobs row.
type SnapshotProcessing struct {
	WorkerID       string    `json:"worker_id"`
	LeaseID        uuid.UUID `json:"lease_id"`
	LeaseExpiresAt time.Time `json:"lease_expires_at"`
	ClaimedAt      time.Time `json:"claimed_at"`
}

// Event is one row of the log as readers see it.
type Event struct {
	Position   int64           `json:"position"`
	Sequence   int32           `json:"sequence"`
	Type       string          `json:"type"`
	OccurredAt time.Time       `json:"occurred_at"`
	Actor      string          `json:"actor"`
	Data       json.RawMessage `json:"data"`
}

// historyMargin covers clock skew between the server that minted a job id
// and the database clock that stamped its events.
const historyMargin = 24 * time.Hour

// HistorySince is the earliest time a job's events can carry: its UUIDv7
// time less a margin for clock skew. Reads of a job's events pass it so the
// planner skips older log partitions.
func HistorySince(jobID uuid.UUID) time.Time {
	if jobID.Version() == 7 {
		sec, nsec := jobID.Time().UnixTime()
		return time.Unix(sec, nsec).Add(-historyMargin)
	}
	return time.Unix(0, 0)
}

// JobHistory returns a job's events in order; an unknown job has none.
func JobHistory(ctx context.Context, db queries.DBTX, orgID string, jobID uuid.UUID) ([]Event, error) {
	rows, err := queries.New().JobHistory(ctx, db, queries.JobHistoryParams{
		OrganizationID: orgID, StreamID: jobID.String(), Since: HistorySince(jobID),
	})
	if err != nil {
		return nil, fmt.Errorf("read job history: %w", err)
	}
	out := make([]Event, len(rows))
	for i, r := range rows {
		out[i] = Event{Position: r.Position, Sequence: r.StreamSeq, Type: r.EventType,
			OccurredAt: r.OccurredAt, Actor: r.Actor, Data: r.Data}
	}
	return out, nil
}

// New is a control-plane event to append.
type New struct {
	OrganizationID string
	StreamType     string
	StreamID       string
	Type           string
	QueueName      *string
	Actor          string
	Data           any
}

// Append writes one control-plane event; run it in the transaction that
// makes the change it records.
func Append(ctx context.Context, db queries.DBTX, e New) error {
	data, err := json.Marshal(e.Data)
	if err != nil {
		return fmt.Errorf("encode %s data: %w", e.Type, err)
	}
	if e.Data == nil {
		data = []byte("{}")
	}
	if _, err := queries.New().EventAppend(ctx, db, queries.EventAppendParams{
		OrganizationID: e.OrganizationID, StreamType: e.StreamType, StreamID: e.StreamID,
		EventType: e.Type, QueueName: e.QueueName, Actor: e.Actor, Data: data,
	}); err != nil {
		return fmt.Errorf("append %s: %w", e.Type, err)
	}
	return nil
}
