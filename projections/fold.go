// Package projections owns the definition of the job projections (jobs,
// pending_jobs, processing_jobs) as a fold of the job log, and the rebuild
// and verify that check invariant 3 of the design: rebuilding every
// projection from the log gives exactly the rows the live system holds.
//
// The live tables are written by the single-statement transitions in
// queries/jobs.sql. The fold here is their specification read backwards: for
// each event it writes what the statement that appended the event wrote, and
// nothing it could only have learnt from the tables. Whenever a transition
// changes what it writes, the fold changes with it, and Verify is the test
// that they agree.
package projections

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/spooled-go/spooled/events"
	"github.com/spooled-go/spooled/queries"
)

// JobEvent is one event of a job stream, as much of it as the fold may use.
// The actor is left out on purpose: no projection depends on who acted.
type JobEvent struct {
	OrganizationID string
	StreamID       string
	Seq            int32
	Type           string
	QueueName      *string
	Data           json.RawMessage
	OccurredAt     time.Time
}

// JobState is what the live tables hold for one job. Job is nil before the
// first event and after job.purged; Pending and Processing are nil when the
// job has no row there.
type JobState struct {
	Job        *queries.Job
	Pending    *queries.PendingJob
	Processing *queries.ProcessingJob

	// The fold refuses logs the live path could not have written, so it
	// remembers where the stream is.
	streamID string
	seq      int32
	lastType string
	purged   bool
	// headless: retention dropped the stream's first events; nothing can
	// be folded until the job.snapshot that carried the job forward.
	headless bool
}

// Headless reports a stream whose start retention dropped and whose
// snapshot has not been folded yet: its state is unknown.
func (s *JobState) Headless() bool { return s.headless }

// ErrHistoryDropped is a job history that starts after events retention
// dropped, before the job.snapshot that carried the job forward.
var ErrHistoryDropped = errors.New("history before this point was dropped by retention")

// FoldJob folds the events of one job stream, in sequence order.
// A stream whose start retention dropped, with no job.snapshot among evs,
// is ErrHistoryDropped.
func FoldJob(evs []JobEvent) (JobState, error) {
	var s JobState
	for _, e := range evs {
		if err := s.Apply(e); err != nil {
			return JobState{}, err
		}
	}
	if s.headless {
		return JobState{}, fmt.Errorf("job %s: %w", s.streamID, ErrHistoryDropped)
	}
	return s, nil
}

// Apply folds the next event of the stream into s. It fails on an event type
// it does not know, on a gap or repeat in the sequence, and on an event the
// job's state could not have produced: a rebuild that guessed would hide
// exactly the drift Verify exists to find.
func (s *JobState) Apply(e JobEvent) error {
	if err := s.apply(e); err != nil {
		return fmt.Errorf("job %s seq %d (%s): %w", e.StreamID, e.Seq, e.Type, err)
	}
	if s.Job != nil {
		s.Job.DeadStatus = deadStatus(s.Job.Status)
	}
	s.seq = e.Seq
	s.lastType = e.Type
	return nil
}

func (s *JobState) apply(e JobEvent) error {
	if s.seq > 0 && e.StreamID != s.streamID {
		return fmt.Errorf("event of another stream (folding %s)", s.streamID)
	}
	if s.seq == 0 && e.Type == events.JobSnapshot {
		// The first event left after retention: the job carried forward.
		return s.snapshot(e)
	}
	if s.seq == 0 && e.Type != events.JobEnqueued {
		// Retention dropped the partition this stream began in; a
		// job.snapshot further on carries the job's state, or the stream
		// ends in job.purged (a purged job is not carried forward).
		s.headless, s.streamID = true, e.StreamID
		if e.Type == events.JobPurged {
			s.headless, s.purged = false, true
		}
		return nil
	}
	if e.Seq != s.seq+1 {
		return fmt.Errorf("sequence follows %d", s.seq)
	}
	if s.purged {
		return fmt.Errorf("event after job.purged")
	}
	if e.Type == events.JobEnqueued {
		return s.enqueued(e)
	}
	if e.Type == events.JobSnapshot {
		return s.snapshot(e)
	}
	if s.headless {
		// A purged job was not carried forward: its remaining events end
		// in job.purged, and it folds to nothing.
		if e.Type == events.JobPurged {
			s.headless, s.purged, s.Job = false, true, nil
		}
		return nil
	}
	if s.Job == nil {
		return fmt.Errorf("stream does not start with %s", events.JobEnqueued)
	}
	j := s.Job
	j.Version = e.Seq
	// Every transition but a refused attempt or a replay link stamps
	// updated_at with the statement's clock, which is the event's
	// occurred_at.
	if e.Type != events.JobAttemptRejected && e.Type != events.JobReplayed {
		j.UpdatedAt = e.OccurredAt
	}

	switch e.Type {
	case events.JobClaimed:
		var d events.Claimed
		if err := decode(e, &d); err != nil {
			return err
		}
		if s.Pending == nil || s.Processing != nil {
			return fmt.Errorf("claim of a job that is not waiting (status %s)", j.Status)
		}
		j.Status = "processing"
		j.AssignedWorkerID = ptr(d.WorkerID)
		j.LeaseID = ptr(d.LeaseID)
		j.LeaseExpiresAt = ptr(d.LeaseExpiresAt)
		j.StartedAt = ptr(e.OccurredAt)
		s.Pending = nil
		s.Processing = &queries.ProcessingJob{
			JobID: j.ID, OrganizationID: j.OrganizationID, QueueName: j.QueueName,
			WorkerID: d.WorkerID, LeaseID: d.LeaseID, LeaseExpiresAt: d.LeaseExpiresAt,
			ClaimedAt: e.OccurredAt,
		}

	case events.JobCompleted:
		var d events.Completed
		if err := decode(e, &d); err != nil {
			return err
		}
		if err := s.requireLease(); err != nil {
			return err
		}
		j.Status = "completed"
		j.Result = sqlJSON(d.Result)
		j.CompletedAt = ptr(e.OccurredAt)
		j.LeaseID, j.LeaseExpiresAt = nil, nil
		s.Processing = nil

	case events.JobFailed:
		var d events.Failed
		if err := decode(e, &d); err != nil {
			return err
		}
		if err := s.requireLease(); err != nil {
			return err
		}
		// Where the job goes next is the following event's to say; until
		// then it keeps its status, as the row does within the statement.
		j.LastError = ptr(d.Error)
		j.LeaseID, j.LeaseExpiresAt = nil, nil
		s.Processing = nil

	case events.JobLeaseExpired:
		var d events.LeaseExpired
		if err := decode(e, &d); err != nil {
			return err
		}
		if err := s.requireLease(); err != nil {
			return err
		}
		j.LeaseID, j.LeaseExpiresAt = nil, nil
		s.Processing = nil

	case events.JobReleased:
		var d events.Released
		if err := decode(e, &d); err != nil {
			return err
		}
		if err := s.requireLease(); err != nil {
			return err
		}
		// A deregistering worker hands the job back: waiting again at once,
		// no retry spent, scheduled_at untouched.
		j.Status = "pending"
		j.LeaseID, j.LeaseExpiresAt = nil, nil
		s.Processing = nil
		s.Pending = s.pendingRow(e.OccurredAt)

	case events.JobRetryScheduled:
		var d events.RetryScheduled
		if err := decode(e, &d); err != nil {
			return err
		}
		if err := s.requireRelease(); err != nil {
			return err
		}
		j.Status = "pending"
		j.RetryCount = d.RetryCount
		j.ScheduledAt = ptr(d.RunAt)
		if d.Error != nil {
			j.LastError = ptr(*d.Error)
		}
		s.Pending = s.pendingRow(d.RunAt)

	case events.JobDeadLettered:
		var d events.DeadLettered
		if err := decode(e, &d); err != nil {
			return err
		}
		if err := s.requireRelease(); err != nil {
			return err
		}
		j.Status = "deadletter"
		j.RetryCount = d.RetryCount
		if d.Error != nil {
			j.LastError = ptr(*d.Error)
		}

	case events.JobLeaseRenewed:
		var d events.LeaseRenewed
		if err := decode(e, &d); err != nil {
			return err
		}
		if err := s.requireLease(); err != nil {
			return err
		}
		j.LeaseExpiresAt = ptr(d.LeaseExpiresAt)
		s.Processing.LeaseExpiresAt = d.LeaseExpiresAt

	case events.JobAttemptRejected:
		// A refusal changes nothing but the stream position; its data is
		// history only, but it must still be well formed.
		var d events.AttemptRejected
		if err := decode(e, &d); err != nil {
			return err
		}

	case events.JobReplayed:
		// A link to the job that replays this one: history only.
		var d events.Replayed
		if err := decode(e, &d); err != nil {
			return err
		}

	case events.JobCancelled:
		if s.Pending == nil {
			return fmt.Errorf("cancel of a job that is not waiting (status %s)", j.Status)
		}
		j.Status = "cancelled"
		s.Pending = nil

	case events.JobPriorityChanged:
		var d events.PriorityChanged
		if err := decode(e, &d); err != nil {
			return err
		}
		if s.Pending == nil {
			return fmt.Errorf("priority change of a job that is not waiting (status %s)", j.Status)
		}
		j.Priority = d.NewPriority
		s.Pending.Priority = d.NewPriority

	case events.JobRetried:
		var d events.Retried
		if err := decode(e, &d); err != nil {
			return err
		}
		if j.Status != "failed" && j.Status != "deadletter" {
			return fmt.Errorf("retry of a job that is %s", j.Status)
		}
		j.Status = "pending"
		j.RetryCount = d.RetryCount
		j.LastError = nil
		s.Pending = s.pendingRow(e.OccurredAt)

	case events.JobPurged:
		if j.Status != "deadletter" {
			return fmt.Errorf("purge of a job that is %s", j.Status)
		}
		// The purge deletes only the jobs row: a dead-lettered job has no
		// pending or processing row to take.
		s.Job = nil
		s.purged = true

	default:
		return fmt.Errorf("unknown job event type")
	}
	return nil
}

// snapshot replaces the state with the rows job.snapshot carries. Only the
// stream position moves: a snapshot changes nothing about the job.
func (s *JobState) snapshot(e JobEvent) error {
	var d events.Snapshot
	if err := decode(e, &d); err != nil {
		return err
	}
	j := d.Job
	if j.ID.String() != e.StreamID {
		return fmt.Errorf("snapshot of job %s in stream %s", j.ID, e.StreamID)
	}
	s.streamID, s.headless = e.StreamID, false
	s.Job = &queries.Job{
		ID: j.ID, OrganizationID: j.OrganizationID, QueueName: j.QueueName, Status: j.Status,
		Payload: j.Payload, Result: sqlJSON(j.Result), RetryCount: j.RetryCount, MaxRetries: j.MaxRetries,
		LastError: j.LastError, CreatedAt: j.CreatedAt, ScheduledAt: j.ScheduledAt, StartedAt: j.StartedAt,
		CompletedAt: j.CompletedAt, ExpiresAt: j.ExpiresAt, Priority: j.Priority, Tags: sqlJSON(j.Tags),
		TimeoutSeconds: j.TimeoutSeconds, ParentJobID: j.ParentJobID, CompletionWebhook: j.CompletionWebhook,
		AssignedWorkerID: j.AssignedWorkerID, LeaseID: j.LeaseID, LeaseExpiresAt: j.LeaseExpiresAt,
		IdempotencyKey: j.IdempotencyKey, UpdatedAt: j.UpdatedAt, WorkflowID: j.WorkflowID,
		DependencyMode: j.DependencyMode, DependenciesMet: j.DependenciesMet, Version: e.Seq,
	}
	s.Pending, s.Processing = nil, nil
	if p := d.Pending; p != nil {
		s.Pending = &queries.PendingJob{JobID: j.ID, OrganizationID: j.OrganizationID, QueueName: j.QueueName,
			Priority: p.Priority, RunAt: p.RunAt, ExpiresAt: p.ExpiresAt, CreatedAt: p.CreatedAt}
	}
	if p := d.Processing; p != nil {
		s.Processing = &queries.ProcessingJob{JobID: j.ID, OrganizationID: j.OrganizationID, QueueName: j.QueueName,
			WorkerID: p.WorkerID, LeaseID: p.LeaseID, LeaseExpiresAt: p.LeaseExpiresAt, ClaimedAt: p.ClaimedAt}
	}
	return nil
}

func (s *JobState) enqueued(e JobEvent) error {
	if s.seq != 0 {
		return fmt.Errorf("job enqueued twice")
	}
	id, err := uuid.Parse(e.StreamID)
	if err != nil {
		return fmt.Errorf("stream id is not a job id: %w", err)
	}
	if e.QueueName == nil {
		return fmt.Errorf("enqueued without a queue name")
	}
	var d events.Enqueued
	if err := decode(e, &d); err != nil {
		return err
	}
	if d.Status != "pending" && d.Status != "scheduled" {
		return fmt.Errorf("enqueued with status %q", d.Status)
	}
	if len(d.Payload) == 0 {
		return fmt.Errorf("enqueued without a payload")
	}
	s.streamID = e.StreamID
	s.Job = &queries.Job{
		ID:                id,
		OrganizationID:    e.OrganizationID,
		QueueName:         *e.QueueName,
		Status:            d.Status,
		Payload:           d.Payload, // NOT NULL: a JSON null payload stays JSON null
		MaxRetries:        d.MaxRetries,
		CreatedAt:         e.OccurredAt,
		ScheduledAt:       d.ScheduledAt,
		ExpiresAt:         d.ExpiresAt,
		Priority:          d.Priority,
		Tags:              sqlJSON(d.Tags),
		TimeoutSeconds:    d.TimeoutSeconds,
		ParentJobID:       d.ParentJobID,
		CompletionWebhook: d.CompletionWebhook,
		IdempotencyKey:    d.IdempotencyKey,
		UpdatedAt:         e.OccurredAt,
		DependencyMode:    ptr("all"),
		DependenciesMet:   ptr(true),
		Version:           e.Seq,
	}
	// A job scheduled in the past is ready at once, not before it existed.
	runAt := e.OccurredAt
	if d.ScheduledAt != nil && d.ScheduledAt.After(runAt) {
		runAt = *d.ScheduledAt
	}
	s.Pending = s.pendingRow(runAt)
	return nil
}

// pendingRow is the pending_jobs row every transition that puts a job back
// in line inserts: the job's own fields and a run_at of its choosing.
func (s *JobState) pendingRow(runAt time.Time) *queries.PendingJob {
	j := s.Job
	return &queries.PendingJob{
		JobID: j.ID, OrganizationID: j.OrganizationID, QueueName: j.QueueName,
		Priority: j.Priority, RunAt: runAt, ExpiresAt: j.ExpiresAt, CreatedAt: j.CreatedAt,
	}
}

// requireLease refuses an event that releases or renews a lease the job does
// not hold: the statements that append them start from the processing row.
func (s *JobState) requireLease() error {
	if s.Processing == nil {
		return fmt.Errorf("job holds no lease (status %s)", s.Job.Status)
	}
	return nil
}

// requireRelease refuses a retry decision that does not directly follow the
// failure or expiry it decides on: both are appended by one statement.
func (s *JobState) requireRelease() error {
	if s.lastType != events.JobFailed && s.lastType != events.JobLeaseExpired {
		return fmt.Errorf("follows %s, not a failure or lease expiry", s.lastType)
	}
	return nil
}

func decode(e JobEvent, v any) error {
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("decode data: %w", err)
	}
	return nil
}

// sqlJSON maps the log's JSON null back to SQL NULL. The log cannot tell the
// two apart (json_build_object writes SQL NULL as JSON null), so the live
// path never stores a JSON null in a nullable jsonb column, and neither does
// the fold.
func sqlJSON(v json.RawMessage) json.RawMessage {
	if len(v) == 0 || string(v) == "null" {
		return nil
	}
	return v
}

func ptr[T any](v T) *T { return &v }

// deadStatus is jobs.dead_status, a column Postgres generates from status
// (sql/0010_jobs_hot_updates.sql): the status of failed, dead-lettered and
// cancelled jobs, NULL for the others.
func deadStatus(status string) *string {
	switch status {
	case "failed", "deadletter", "cancelled":
		return &status
	}
	return nil
}
