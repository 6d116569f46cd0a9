package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/spooled-go/spooled/events"
	"github.com/spooled-go/spooled/internal/pgdb"
	"github.com/spooled-go/spooled/queries"
)

// QueueSettings changes a queue's configuration. Nil fields keep their
// value; the Clear flags remove a limit.
type QueueSettings struct {
	MaxRetries         *int
	DefaultTimeout     *int
	RateLimitPerSecond *int
	ClearRateLimit     bool
	MaxConcurrentJobs  *int
	ClearMaxConcurrent bool
	Settings           json.RawMessage
}

func (r QueueSettings) validate() error {
	if r.MaxRetries != nil {
		if err := checkRange("max_retries", *r.MaxRetries, 0, 100); err != nil {
			return err
		}
	}
	if r.DefaultTimeout != nil {
		if err := checkRange("default_timeout", *r.DefaultTimeout, 1, 86400); err != nil {
			return err
		}
	}
	if r.RateLimitPerSecond != nil {
		if err := checkRange("rate_limit", *r.RateLimitPerSecond, 1, 100000); err != nil {
			return err
		}
	}
	if r.MaxConcurrentJobs != nil {
		if err := checkRange("max_concurrent_jobs", *r.MaxConcurrentJobs, 1, 100000); err != nil {
			return err
		}
	}
	if s := nullJSON(r.Settings); s != nil && (s[0] != '{' || len(s) > maxTagsBytes) {
		return invalid("settings", "object", "must be a JSON object of at most %d bytes", maxTagsBytes)
	}
	return nil
}

func opt32(v *int) *int32 {
	if v == nil {
		return nil
	}
	n := int32(*v)
	return &n
}

// ConfigureQueue creates or changes a queue's configuration. It never
// pauses or resumes the queue.
func (s *Service) ConfigureQueue(ctx context.Context, actor Actor, queue string, r QueueSettings) (queries.QueueConfig, error) {
	if err := ValidateQueueName("queue_name", queue); err != nil {
		return queries.QueueConfig{}, err
	}
	if err := r.validate(); err != nil {
		return queries.QueueConfig{}, err
	}
	var qc queries.QueueConfig
	capChange := r.MaxConcurrentJobs != nil || r.ClearMaxConcurrent
	inTx := func(fn func(pgx.Tx) error) error { return pgdb.WithTx(ctx, s.pool, fn) }
	if capChange {
		inTx = func(fn func(pgx.Tx) error) error { return s.inCapChange(ctx, actor.OrgID, queue, fn) }
	}
	err := inTx(func(tx pgx.Tx) error {
		var err error
		qc, err = s.q.QueueConfigUpsert(ctx, tx, queries.QueueConfigUpsertParams{
			ID: uuid.New(), OrganizationID: actor.OrgID, QueueName: queue,
			MaxRetries: opt32(r.MaxRetries), DefaultMaxRetries: int32(s.defaults.MaxRetries),
			DefaultTimeout: opt32(r.DefaultTimeout), DefaultTimeoutSecs: int32(s.defaults.TimeoutSecs),
			RateLimitPerSecond: opt32(r.RateLimitPerSecond), ClearRateLimit: r.ClearRateLimit,
			MaxConcurrentJobs: opt32(r.MaxConcurrentJobs), ClearMaxConcurrentJobs: r.ClearMaxConcurrent,
			Settings: nullJSON(r.Settings), Now: s.clock.Now(),
		})
		if err != nil {
			return fmt.Errorf("configure queue: %w", err)
		}
		if capChange {
			if err := s.stampCapped(ctx, tx, actor.OrgID, queue); err != nil {
				return err
			}
		}
		return events.Append(ctx, tx, events.New{
			OrganizationID: actor.OrgID, StreamType: events.StreamQueue, StreamID: qc.ID.String(),
			Type: events.QueueConfigured, QueueName: &queue, Actor: actor.Name,
			Data: map[string]any{
				"max_retries": qc.MaxRetries, "default_timeout": qc.DefaultTimeout,
				"rate_limit_per_second": qc.RateLimitPerSecond, "max_concurrent_jobs": qc.MaxConcurrentJobs,
			},
		})
	})
	if err == nil {
		// A raised limit may free work for waiting claims.
		s.hints.JobsAvailable(actor.OrgID, queue, 0)
	}
	return qc, err
}

// QueuePauseChange is the outcome of a pause or resume.
type QueuePauseChange struct {
	Config queries.QueueConfig
	// PausedFor is how long the queue had been paused (resume only).
	PausedFor time.Duration
	Changed   bool
}

// PauseQueue stops claims from the queue from the next claim on; jobs can
// still be enqueued. Pausing a paused queue changes nothing.
func (s *Service) PauseQueue(ctx context.Context, actor Actor, queue string, reason *string) (QueuePauseChange, error) {
	if reason != nil && utf8.RuneCountInString(*reason) > 500 {
		return QueuePauseChange{}, invalid("reason", "length", "must be at most 500 characters")
	}
	return s.setPaused(ctx, actor, queue, true, reason)
}

// ResumeQueue lets claims take the queue's jobs again. A queue with no
// configuration was never paused: ErrNotFound.
func (s *Service) ResumeQueue(ctx context.Context, actor Actor, queue string) (QueuePauseChange, error) {
	if err := ValidateQueueName("queue_name", queue); err != nil {
		return QueuePauseChange{}, err
	}
	if _, err := s.q.QueueConfigGet(ctx, s.pool, queries.QueueConfigGetParams{OrganizationID: actor.OrgID, QueueName: queue}); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return QueuePauseChange{}, ErrNotFound
		}
		return QueuePauseChange{}, fmt.Errorf("read queue: %w", err)
	}
	out, err := s.setPaused(ctx, actor, queue, false, nil)
	if err == nil {
		s.hints.JobsAvailable(actor.OrgID, queue, 0)
	}
	return out, err
}

func (s *Service) setPaused(ctx context.Context, actor Actor, queue string, paused bool, reason *string) (QueuePauseChange, error) {
	if err := ValidateQueueName("queue_name", queue); err != nil {
		return QueuePauseChange{}, err
	}
	var out QueuePauseChange
	err := pgdb.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		row, err := s.q.QueueSetPaused(ctx, tx, queries.QueueSetPausedParams{
			ID: uuid.New(), OrganizationID: actor.OrgID, QueueName: queue, Paused: paused, Reason: reason,
			DefaultMaxRetries: int32(s.defaults.MaxRetries), DefaultTimeoutSecs: int32(s.defaults.TimeoutSecs),
			Now: s.clock.Now(),
		})
		if err != nil {
			return fmt.Errorf("pause queue: %w", err)
		}
		out.Config = queries.QueueConfig{
			ID: row.ID, OrganizationID: row.OrganizationID, QueueName: row.QueueName, MaxRetries: row.MaxRetries,
			DefaultTimeout: row.DefaultTimeout, RateLimitPerSecond: row.RateLimitPerSecond,
			MaxConcurrentJobs: row.MaxConcurrentJobs, Enabled: row.Enabled, PausedAt: row.PausedAt,
			PausedReason: row.PausedReason, Settings: row.Settings, RateTokens: row.RateTokens,
			RateRefilledAt: row.RateRefilledAt, CreatedAt: row.CreatedAt, UpdatedAt: row.UpdatedAt,
		}
		wasEnabled := row.WasEnabled
		out.Changed = wasEnabled == paused
		if !paused && row.WasPausedAt != nil {
			out.PausedFor = s.Now().Sub(*row.WasPausedAt)
		}
		if !out.Changed {
			return nil
		}
		typ, data := events.QueuePaused, map[string]any{"reason": reason}
		if !paused {
			typ, data = events.QueueResumed, map[string]any{"paused_duration_secs": int64(out.PausedFor.Seconds())}
		}
		return events.Append(ctx, tx, events.New{
			OrganizationID: actor.OrgID, StreamType: events.StreamQueue, StreamID: row.ID.String(),
			Type: typ, QueueName: &queue, Actor: actor.Name, Data: data,
		})
	})
	return out, err
}

// DeleteQueue removes a queue's configuration; its jobs stay. A queue with
// waiting or leased jobs cannot be deleted.
func (s *Service) DeleteQueue(ctx context.Context, actor Actor, queue string) error {
	if err := ValidateQueueName("queue_name", queue); err != nil {
		return err
	}
	// Deleting the configuration deletes any cap with it.
	return s.inCapChange(ctx, actor.OrgID, queue, func(tx pgx.Tx) error {
		n, err := s.q.QueueActiveJobs(ctx, tx, queries.QueueActiveJobsParams{OrganizationID: actor.OrgID, QueueName: queue})
		if err != nil {
			return fmt.Errorf("count queue jobs: %w", err)
		}
		id, err := s.q.QueueConfigDelete(ctx, tx, queries.QueueConfigDeleteParams{OrganizationID: actor.OrgID, QueueName: queue})
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("delete queue: %w", err)
		}
		if n > 0 {
			return fmt.Errorf("%w: Cannot delete queue %s with %d pending/processing jobs", ErrConflict, queue, n)
		}
		if err := s.stampCapped(ctx, tx, actor.OrgID, queue); err != nil {
			return err
		}
		return events.Append(ctx, tx, events.New{
			OrganizationID: actor.OrgID, StreamType: events.StreamQueue, StreamID: id.String(),
			Type: events.QueueDeleted, QueueName: &queue, Actor: actor.Name,
		})
	})
}

// inCapChange runs fn, a change of the queue's cap, in a transaction that
// first takes the queue's cap lock exclusively: it waits for the queue's
// claims in flight (each holds the lock shared) and holds new ones back
// until it ends. After that, each lock the change waits for (its
// configuration row, leases it marks) is waited for at most
// capChangeLockWait: marking leases locks them in the order the table is
// read, while a batch complete locks its leases in the order its plan
// reads them, and the two could each wait for the other. Such a change
// rolls back, freeing what it had marked, and runs again, so the other side
// goes on instead of one of them being aborted by deadlock detection.
func (s *Service) inCapChange(ctx context.Context, orgID, queue string, fn func(pgx.Tx) error) error {
	return pgdb.RetryOnLockTimeout(ctx, capChangeAttempts, func(int) error {
		return pgdb.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
			if err := s.q.QueueCapLock(ctx, tx, queries.QueueCapLockParams{OrganizationID: orgID, QueueName: queue}); err != nil {
				return fmt.Errorf("take the cap lock of queue %s: %w", queue, err)
			}
			if err := s.q.TxLockTimeout(ctx, tx, capChangeLockWait.String()); err != nil {
				return fmt.Errorf("bound lock waits: %w", err)
			}
			return fn(tx)
		})
	})
}

const (
	// capChangeLockWait bounds each lock wait of a cap change after its cap
	// lock: long enough for a complete or a renewal in flight to finish,
	// far under deadlock_timeout (1 s), so a lock cycle with one ends with
	// the cap change running again.
	capChangeLockWait = 50 * time.Millisecond
	capChangeAttempts = 100
)

// stampCapped marks the queue's leases with whether the queue has a cap now
// (the lease count of a cap reads marked leases alone), in inCapChange.
func (s *Service) stampCapped(ctx context.Context, tx pgx.Tx, orgID, queue string) error {
	if err := s.q.ProcessingStampCapped(ctx, tx, queries.ProcessingStampCappedParams{OrganizationID: orgID, QueueName: queue}); err != nil {
		return fmt.Errorf("mark the leases of queue %s: %w", queue, err)
	}
	return nil
}
