package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/spooled-go/spooled/events"
	"github.com/spooled-go/spooled/internal/pgdb"
	"github.com/spooled-go/spooled/queries"
)

// Replayed links an original job to the new job replaying it.
type Replayed struct {
	OriginalID uuid.UUID
	JobID      uuid.UUID
}

// Replay enqueues a new job from the original's job.enqueued event: the
// same queue, payload, priority, retries, timeout, tags and completion
// webhook, ready at once, without the idempotency key. The new job's
// job.enqueued names the original (replay_of) and the original gets
// job.replayed naming the new job, in one transaction. A purged original
// can still be replayed; its history has ended, so only the new job links.
func (s *Service) Replay(ctx context.Context, actor Actor, jobID string) (Replayed, error) {
	id, err := parseJobID(jobID)
	if err != nil {
		return Replayed{}, err
	}
	out, err := s.replay(ctx, actor, []uuid.UUID{id})
	if err != nil {
		return Replayed{}, err
	}
	return out[0], nil
}

// ReplayDeadLetters replays dead-lettered jobs of a queue (or all queues)
// that were dead-lettered in [from, to), oldest first, at most limit. The
// originals stay in the dead-letter queue, each linked to its replay.
func (s *Service) ReplayDeadLetters(ctx context.Context, actor Actor, queue *string, from, to *time.Time, limit int) ([]Replayed, error) {
	if limit == 0 {
		limit = 100
	}
	if err := checkRange("limit", limit, 1, MaxBulkJobs); err != nil {
		return nil, err
	}
	if queue != nil {
		if err := ValidateQueueName("queue_name", *queue); err != nil {
			return nil, err
		}
	}
	ids, err := s.q.JobDeadLettersInWindow(ctx, s.pool, queries.JobDeadLettersInWindowParams{
		OrganizationID: actor.OrgID, QueueName: queue, FromTime: from, ToTime: to, MaxJobs: int32(limit),
	})
	if err != nil {
		return nil, fmt.Errorf("find dead letters: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	return s.replay(ctx, actor, ids)
}

func (s *Service) replay(ctx context.Context, actor Actor, ids []uuid.UUID) ([]Replayed, error) {
	jobs := make([]NewJob, len(ids))
	for i, id := range ids {
		row, err := s.q.JobEnqueuedEvent(ctx, s.pool, queries.JobEnqueuedEventParams{
			OrganizationID: actor.OrgID, StreamID: id.String(), Since: events.HistorySince(id),
		})
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, ErrNotFound
		}
		if err != nil {
			return nil, fmt.Errorf("read enqueue event: %w", err)
		}
		var e events.Enqueued
		if err := json.Unmarshal(row.Data, &e); err != nil {
			return nil, fmt.Errorf("decode enqueue event of %s: %w", id, err)
		}
		prio, retries, timeout := int(e.Priority), int(e.MaxRetries), int(e.TimeoutSeconds)
		jobs[i] = NewJob{
			QueueName: deref(row.QueueName, ""), Payload: e.Payload, Priority: &prio, MaxRetries: &retries,
			TimeoutSeconds: &timeout, Tags: e.Tags, CompletionWebhook: e.CompletionWebhook,
		}
	}
	if err := s.checkPlan(ctx, actor, jobs); err != nil {
		return nil, err
	}
	p, err := s.batchParams(sameActor(actor, len(jobs)), jobs)
	if err != nil {
		return nil, err
	}
	p.ReplayOf = ids
	out := make([]Replayed, len(ids))
	err = pgdb.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := s.q.JobEnqueueBatch(ctx, tx, p)
		if err != nil {
			return fmt.Errorf("enqueue replays: %w", err)
		}
		if len(rows) != len(ids) {
			return fmt.Errorf("enqueue replays: %d of %d inserted", len(rows), len(ids))
		}
		for i, id := range ids {
			out[i] = Replayed{OriginalID: id, JobID: p.Ids[i]}
			_, err := s.q.JobRecordReplay(ctx, tx, queries.JobRecordReplayParams{
				JobID: id, OrganizationID: actor.OrgID, Actor: actor.Name, ReplayJobID: p.Ids[i], Now: s.clock.Now(),
			})
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("link replay of %s: %w", id, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	queues := map[string]int{}
	for _, j := range jobs {
		queues[j.QueueName]++
		s.observer.JobsEnqueued(j.QueueName, 1)
	}
	s.hintQueues(actor.OrgID, queues)
	s.quota.add(actor.OrgID, int64(len(jobs)), int64(len(jobs)))
	return out, nil
}
