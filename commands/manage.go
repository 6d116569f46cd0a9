package commands

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/spooled-go/spooled/queries"
)

// parseJobID turns a path id into a job id. Ids are opaque to clients: one
// that is not a UUID names no job.
func parseJobID(id string) (uuid.UUID, error) {
	u, err := uuid.Parse(id)
	if err != nil {
		return uuid.Nil, ErrNotFound
	}
	return u, nil
}

// exists tells ErrNotFound from ErrConflict after a transition matched no row.
func (s *Service) exists(ctx context.Context, orgID string, id uuid.UUID, conflict string) error {
	st, err := s.q.JobLeaseState(ctx, s.pool, queries.JobLeaseStateParams{ID: id, OrganizationID: orgID})
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("read job state: %w", err)
	}
	return fmt.Errorf("%w: %s (job is %s)", ErrConflict, conflict, st.Status)
}

// Cancel cancels a job that has not started.
func (s *Service) Cancel(ctx context.Context, actor Actor, jobID string) error {
	id, err := parseJobID(jobID)
	if err != nil {
		return err
	}
	_, err = s.q.JobCancel(ctx, s.pool, queries.JobCancelParams{
		Now: s.clock.Now(), JobID: id, OrganizationID: actor.OrgID, Actor: actor.Name,
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return s.exists(ctx, actor.OrgID, id, "Job cannot be cancelled (not in pending or scheduled state)")
	}
	if err != nil {
		return fmt.Errorf("cancel job: %w", err)
	}
	return nil
}

// Retry puts one failed or dead-lettered job back in line as one more attempt.
func (s *Service) Retry(ctx context.Context, actor Actor, jobID string) (queries.Job, error) {
	id, err := parseJobID(jobID)
	if err != nil {
		return queries.Job{}, err
	}
	rows, err := s.retry(ctx, actor, []uuid.UUID{id}, nil, 1, []string{"failed", "deadletter"}, false, "manual")
	if err != nil {
		return queries.Job{}, err
	}
	if len(rows) == 0 {
		return queries.Job{}, s.exists(ctx, actor.OrgID, id, "Job cannot be retried (not in failed/deadletter state)")
	}
	return rows[0], nil
}

// RetryDeadLetters puts dead-lettered jobs back in line with a fresh retry
// count: the listed ids when given, else the queue's, else all, oldest first.
func (s *Service) RetryDeadLetters(ctx context.Context, actor Actor, jobIDs []string, queueName *string, limit int) ([]queries.Job, error) {
	if limit == 0 {
		limit = 100
	}
	if err := checkRange("limit", limit, 1, 100); err != nil {
		return nil, err
	}
	ids := make([]uuid.UUID, 0, len(jobIDs))
	for _, j := range jobIDs {
		if u, err := uuid.Parse(j); err == nil {
			ids = append(ids, u)
		}
	}
	if len(jobIDs) > 0 {
		if len(ids) == 0 {
			return nil, nil // none of the ids can name a job
		}
		queueName = nil
	}
	return s.retry(ctx, actor, ids, queueName, limit, []string{"deadletter"}, true, "dlq")
}

func (s *Service) retry(ctx context.Context, actor Actor, ids []uuid.UUID, queueName *string, limit int,
	from []string, reset bool, source string) ([]queries.Job, error) {
	rows, err := s.q.JobRetry(ctx, s.pool, queries.JobRetryParams{
		Now: s.clock.Now(), OrganizationID: actor.OrgID, FromStatuses: from, JobIds: ids,
		QueueName: queueName, MaxJobs: int32(limit), ResetCount: reset, Source: source, Actor: actor.Name,
	})
	if err != nil {
		return nil, fmt.Errorf("retry jobs: %w", err)
	}
	out := make([]queries.Job, len(rows))
	queues := map[string]int{}
	for i, r := range rows {
		out[i] = queries.Job(r)
		queues[r.QueueName]++
	}
	s.hintQueues(actor.OrgID, queues)
	s.quota.add(actor.OrgID, int64(len(rows)), 0)
	return out, nil
}

// PurgeDeadLetters removes dead-lettered jobs from the read model; their
// history stays in the log.
func (s *Service) PurgeDeadLetters(ctx context.Context, actor Actor, queueName *string, olderThan *time.Time, limit int) (int64, error) {
	if limit == 0 {
		limit = 10000
	}
	if err := checkRange("limit", limit, 1, 10000); err != nil {
		return 0, err
	}
	n, err := s.q.JobPurgeDeadLetters(ctx, s.pool, queries.JobPurgeDeadLettersParams{
		Now: s.clock.Now(), OrganizationID: actor.OrgID, QueueName: queueName, OlderThan: olderThan,
		MaxJobs: int32(limit), Actor: actor.Name,
	})
	if err != nil {
		return 0, fmt.Errorf("purge dead letters: %w", err)
	}
	return n, nil
}

// PriorityChange is the outcome of SetPriority.
type PriorityChange struct {
	JobID       uuid.UUID
	OldPriority int
	NewPriority int
}

// SetPriority changes the priority of a job that has not started.
func (s *Service) SetPriority(ctx context.Context, actor Actor, jobID string, priority int) (PriorityChange, error) {
	if err := checkRange("priority", priority, -100, 100); err != nil {
		return PriorityChange{}, err
	}
	id, err := parseJobID(jobID)
	if err != nil {
		return PriorityChange{}, err
	}
	row, err := s.q.JobSetPriority(ctx, s.pool, queries.JobSetPriorityParams{
		Now: s.clock.Now(), JobID: id, OrganizationID: actor.OrgID, Priority: int32(priority), Actor: actor.Name,
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return PriorityChange{}, s.exists(ctx, actor.OrgID, id, "Job priority can only change while it waits (pending or scheduled)")
	}
	if err != nil {
		return PriorityChange{}, fmt.Errorf("set priority: %w", err)
	}
	return PriorityChange{JobID: row.ID, OldPriority: int(row.OldPriority), NewPriority: int(row.NewPriority)}, nil
}

// MaintainPartitions creates the log partitions from this month to three
// months ahead and enforces retention: partitions that ended RetentionMonths
// before this month are dropped once their live jobs are carried forward
// (CALL maintain_jobs_partitions(months); 0 keeps everything).
func (s *Service) MaintainPartitions(ctx context.Context) error {
	if err := s.q.PartitionsMaintain(ctx, s.pool, int32(s.defaults.RetentionMonths)); err != nil {
		return fmt.Errorf("maintain log partitions: %w", err)
	}
	return nil
}

// VacuumHotTables clears the dead rows claims would walk past in the queue
// tables and refreshes their statistics.
func (s *Service) VacuumHotTables(ctx context.Context) error {
	if err := s.q.VacuumHotTables(ctx, s.pool); err != nil {
		return fmt.Errorf("vacuum queue tables: %w", err)
	}
	return nil
}
