package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/spooled-go/spooled/events"
	"github.com/spooled-go/spooled/internal/pgdb"
	"github.com/spooled-go/spooled/queries"
)

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9._\-]{1,255}$`)

// NewWorker is a registration.
type NewWorker struct {
	QueueName      string
	QueueNames     []string
	Hostname       string
	WorkerType     *string
	MaxConcurrency *int
	Metadata       json.RawMessage
	Version        *string
	// KeyQueues are the queues the caller's API key may use ([] or ["*"]:
	// all).
	KeyQueues []string
}

func keyAllows(keyQueues []string, queue string) bool {
	return len(keyQueues) == 0 || slices.Contains(keyQueues, "*") || slices.Contains(keyQueues, queue)
}

// RegisterWorker adds a worker to the registry; the server mints its id.
func (s *Service) RegisterWorker(ctx context.Context, actor Actor, r NewWorker) (queries.Worker, error) {
	if err := ValidateQueueName("queue_name", r.QueueName); err != nil {
		return queries.Worker{}, err
	}
	for _, q := range r.QueueNames {
		if err := ValidateQueueName("queue_names", q); err != nil {
			return queries.Worker{}, err
		}
	}
	if !hostnameRE.MatchString(r.Hostname) || strings.HasPrefix(r.Hostname, ".") || strings.HasPrefix(r.Hostname, "-") ||
		strings.HasSuffix(r.Hostname, ".") || strings.HasSuffix(r.Hostname, "-") {
		return queries.Worker{}, invalid("hostname", "invalid_hostname",
			"must be 1 to 255 characters of letters, digits, '.', '-' and '_', not starting or ending with '.' or '-'")
	}
	if r.WorkerType != nil && len(*r.WorkerType) > 50 {
		return queries.Worker{}, invalid("worker_type", "length", "must be at most 50 characters")
	}
	if r.Version != nil && len(*r.Version) > 50 {
		return queries.Worker{}, invalid("version", "length", "must be at most 50 characters")
	}
	maxConc := deref(r.MaxConcurrency, 5)
	if err := checkRange("max_concurrency", maxConc, 1, 100); err != nil {
		return queries.Worker{}, err
	}
	meta := nullJSON(r.Metadata)
	if meta == nil {
		meta = json.RawMessage(`{}`)
	}
	if len(meta) > maxTagsBytes {
		return queries.Worker{}, invalid("metadata", "length", "must be at most %d bytes", maxTagsBytes)
	}
	if meta[0] != '{' {
		return queries.Worker{}, invalid("metadata", "object", "must be a JSON object")
	}
	queues := append([]string{r.QueueName}, r.QueueNames...)
	queues = slices.Compact(slices.Sorted(slices.Values(queues)))
	for _, q := range queues {
		if !keyAllows(r.KeyQueues, q) {
			return queries.Worker{}, fmt.Errorf("%w: this API key may not use queue %s", ErrForbidden, q)
		}
	}
	var w queries.Worker
	err := pgdb.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		w, err = s.q.WorkerRegister(ctx, tx, queries.WorkerRegisterParams{
			ID: uuid.NewString(), OrganizationID: actor.OrgID, QueueName: r.QueueName, QueueNames: queues,
			Hostname: r.Hostname, WorkerType: r.WorkerType, MaxConcurrency: int32(maxConc), Metadata: meta,
			Version: r.Version, Now: s.clock.Now(),
		})
		if err != nil {
			return fmt.Errorf("register worker: %w", err)
		}
		return events.Append(ctx, tx, events.New{
			OrganizationID: actor.OrgID, StreamType: events.StreamWorker, StreamID: w.ID, Type: events.WorkerRegistered,
			QueueName: &w.QueueName, Actor: actor.Name,
			Data: map[string]any{"hostname": w.Hostname, "queue_names": w.QueueNames, "max_concurrency": w.MaxConcurrency},
		})
	})
	return w, err
}

var workerStatuses = map[string]bool{"healthy": true, "degraded": true, "draining": true, "offline": true}

// WorkerHeartbeat records that a worker is alive. An unknown status counts
// as healthy, as in Spooled.
func (s *Service) WorkerHeartbeat(ctx context.Context, actor Actor, workerID string, currentJobs int, status string, metadata json.RawMessage) (queries.Worker, error) {
	if currentJobs < 0 || currentJobs > 100000 {
		return queries.Worker{}, invalid("current_jobs", "range", "must be between 0 and 100000")
	}
	if !workerStatuses[status] {
		status = "healthy"
	}
	meta := nullJSON(metadata)
	if meta != nil && (len(meta) > maxTagsBytes || meta[0] != '{') {
		return queries.Worker{}, invalid("metadata", "object", "must be a JSON object of at most %d bytes", maxTagsBytes)
	}
	var w queries.Worker
	err := pgdb.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		row, err := s.q.WorkerHeartbeat(ctx, tx, queries.WorkerHeartbeatParams{
			ID: workerID, OrganizationID: actor.OrgID, CurrentJobs: int32(currentJobs), Status: status,
			Metadata: meta, Now: s.clock.Now(),
		})
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("worker heartbeat: %w", err)
		}
		w = queries.Worker{ID: row.ID, OrganizationID: row.OrganizationID, QueueName: row.QueueName,
			QueueNames: row.QueueNames, Hostname: row.Hostname, WorkerType: row.WorkerType,
			MaxConcurrency: row.MaxConcurrency, CurrentJobs: row.CurrentJobs, Status: row.Status,
			LastHeartbeat: row.LastHeartbeat, Metadata: row.Metadata, Version: row.Version,
			CreatedAt: row.CreatedAt, UpdatedAt: row.UpdatedAt}
		if row.PreviousStatus == row.Status {
			return nil
		}
		return events.Append(ctx, tx, events.New{
			OrganizationID: actor.OrgID, StreamType: events.StreamWorker, StreamID: w.ID, Type: events.WorkerStatusChanged,
			QueueName: &w.QueueName, Actor: actor.Name,
			Data: map[string]any{"old_status": row.PreviousStatus, "new_status": row.Status},
		})
	})
	return w, err
}

// DeregisterWorker marks a worker offline and gives its leased jobs back
// to their queues at once, without spending a retry.
func (s *Service) DeregisterWorker(ctx context.Context, actor Actor, workerID string) error {
	var released []queries.JobReleaseWorkerLeasesRow
	err := pgdb.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		w, err := s.q.WorkerSetOffline(ctx, tx, queries.WorkerSetOfflineParams{ID: workerID, OrganizationID: actor.OrgID, Now: s.clock.Now()})
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("deregister worker: %w", err)
		}
		released, err = s.q.JobReleaseWorkerLeases(ctx, tx, queries.JobReleaseWorkerLeasesParams{
			Now: s.clock.Now(), OrganizationID: actor.OrgID, WorkerID: workerID, Actor: actor.Name,
			Reason: "worker_deregistered",
		})
		if err != nil {
			return fmt.Errorf("release worker leases: %w", err)
		}
		return events.Append(ctx, tx, events.New{
			OrganizationID: actor.OrgID, StreamType: events.StreamWorker, StreamID: w.ID, Type: events.WorkerDeregistered,
			QueueName: &w.QueueName, Actor: actor.Name, Data: map[string]any{"released_jobs": len(released)},
		})
	})
	if err != nil {
		return err
	}
	queues := map[string]int{}
	for _, r := range released {
		queues[r.QueueName]++
	}
	s.hintQueues(actor.OrgID, queues)
	return nil
}

// WorkerHealthChange is a worker whose status a health sweep changed.
type WorkerHealthChange struct {
	WorkerID  string
	OrgID     string
	OldStatus string
	NewStatus string
	Recovered int // leased jobs taken back because the worker went offline
}

// SweepWorkerHealth marks workers degraded after two missed heartbeats and
// offline after five, and takes back an offline worker's leases through
// the lease-expiry path (each job retried or dead-lettered, with events).
func (s *Service) SweepWorkerHealth(ctx context.Context, heartbeat time.Duration) ([]WorkerHealthChange, error) {
	secs := int32(heartbeat / time.Second)
	var changes []WorkerHealthChange
	err := pgdb.WithTx(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := s.q.WorkerHealthSweep(ctx, tx, queries.WorkerHealthSweepParams{
			Now: s.clock.Now(), DegradedAfterSecs: 2 * secs, OfflineAfterSecs: 5 * secs,
		})
		if err != nil {
			return fmt.Errorf("sweep worker health: %w", err)
		}
		for _, r := range rows {
			changes = append(changes, WorkerHealthChange{WorkerID: r.ID, OrgID: r.OrganizationID, OldStatus: r.OldStatus, NewStatus: r.NewStatus})
			q := r.QueueName
			if err := events.Append(ctx, tx, events.New{
				OrganizationID: r.OrganizationID, StreamType: events.StreamWorker, StreamID: r.ID, Type: events.WorkerStatusChanged,
				QueueName: &q, Actor: events.ActorSystem("worker_health"),
				Data: map[string]any{"old_status": r.OldStatus, "new_status": r.NewStatus},
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i, ch := range changes {
		if ch.NewStatus != "offline" {
			continue
		}
		lost, err := s.expireLeases(ctx, expireFilter{orgID: &ch.OrgID, workerID: &ch.WorkerID}, 10000)
		if err != nil {
			return changes, err
		}
		changes[i].Recovered = len(lost)
	}
	return changes, nil
}
