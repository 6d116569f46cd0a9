package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spooled-go/spooled/events"
	"github.com/spooled-go/spooled/queries"
)

// QueueStats is the asynchronous projection behind the stats endpoints:
// finished-job counters per queue (queue_stats) and activity per queue per
// hour (queue_stats_hourly). Live counts come from the hot tables, so
// nothing here is updated by every transition of every job.
type QueueStats struct{ q *queries.Queries }

// NewQueueStats returns the projection.
func NewQueueStats() *QueueStats { return &QueueStats{q: queries.New()} }

// QueueStatsName is the projection's checkpoint name.
const QueueStatsName = "queue_stats"

// Name implements Projection.
func (*QueueStats) Name() string { return QueueStatsName }

// DataTypes implements DataReader: Apply decodes these events' data only.
func (*QueueStats) DataTypes() []string {
	return []string{events.JobClaimed, events.JobCompleted, events.JobRetried}
}

type queueKey struct{ org, queue string }

type hourKey struct {
	queueKey
	hour time.Time
}

type totals struct{ enqueued, completed, deadletter, cancelled int64 }

type hourly struct{ created, completed, failed, deadlettered, runMS, runs, waitMS, waits int64 }

// Apply implements Projection: one upsert per table for the whole batch.
func (p *QueueStats) Apply(ctx context.Context, tx pgx.Tx, batch []LogEvent) error {
	tot := map[queueKey]*totals{}
	hrs := map[hourKey]*hourly{}
	for _, e := range batch {
		if e.StreamType != events.StreamJob || e.QueueName == nil {
			continue
		}
		k := queueKey{e.OrganizationID, *e.QueueName}
		hk := hourKey{k, e.OccurredAt.UTC().Truncate(time.Hour)}
		t, h := tot[k], hrs[hk]
		if t == nil {
			t = &totals{}
			tot[k] = t
		}
		if h == nil {
			h = &hourly{}
			hrs[hk] = h
		}
		switch e.EventType {
		case events.JobEnqueued:
			t.enqueued++
			h.created++
		case events.JobClaimed:
			var d events.Claimed
			if err := json.Unmarshal([]byte(e.Data), &d); err != nil {
				return fmt.Errorf("event %d: %w", e.Position, err)
			}
			if d.DueAt != nil {
				h.waitMS += max(e.OccurredAt.Sub(*d.DueAt).Milliseconds(), 0)
				h.waits++
			}
		case events.JobCompleted:
			var d events.Completed
			if err := json.Unmarshal([]byte(e.Data), &d); err != nil {
				return fmt.Errorf("event %d: %w", e.Position, err)
			}
			t.completed++
			h.completed++
			if d.StartedAt != nil {
				h.runMS += max(e.OccurredAt.Sub(*d.StartedAt).Milliseconds(), 0)
				h.runs++
			}
		case events.JobFailed:
			h.failed++
		case events.JobDeadLettered:
			t.deadletter++
			h.deadlettered++
		case events.JobRetried:
			var d events.Retried
			if err := json.Unmarshal([]byte(e.Data), &d); err != nil {
				return fmt.Errorf("event %d: %w", e.Position, err)
			}
			// Only dead-lettered jobs are retried (no path produces status
			// failed), but the event says so and the projection listens.
			if d.FromStatus == "" || d.FromStatus == "deadletter" {
				t.deadletter--
			}
		case events.JobPurged:
			t.deadletter--
		case events.JobCancelled:
			t.cancelled++
		}
	}
	if len(tot) > 0 {
		a := queries.QueueStatsAddParams{}
		for k, t := range tot {
			a.OrganizationIds = append(a.OrganizationIds, k.org)
			a.QueueNames = append(a.QueueNames, k.queue)
			a.Enqueued = append(a.Enqueued, t.enqueued)
			a.Completed = append(a.Completed, t.completed)
			a.Deadletter = append(a.Deadletter, t.deadletter)
			a.Cancelled = append(a.Cancelled, t.cancelled)
		}
		if err := p.q.QueueStatsAdd(ctx, tx, a); err != nil {
			return fmt.Errorf("add queue stats: %w", err)
		}
	}
	if len(hrs) > 0 {
		a := queries.QueueStatsHourlyAddParams{}
		for k, h := range hrs {
			a.OrganizationIds = append(a.OrganizationIds, k.org)
			a.QueueNames = append(a.QueueNames, k.queue)
			a.Hours = append(a.Hours, k.hour)
			a.Created = append(a.Created, h.created)
			a.Completed = append(a.Completed, h.completed)
			a.Failed = append(a.Failed, h.failed)
			a.Deadlettered = append(a.Deadlettered, h.deadlettered)
			a.RunMsSum = append(a.RunMsSum, h.runMS)
			a.RunCount = append(a.RunCount, h.runs)
			a.WaitMsSum = append(a.WaitMsSum, h.waitMS)
			a.WaitCount = append(a.WaitCount, h.waits)
		}
		if err := p.q.QueueStatsHourlyAdd(ctx, tx, a); err != nil {
			return fmt.Errorf("add hourly queue stats: %w", err)
		}
	}
	return nil
}

// Reset implements Projection.
func (p *QueueStats) Reset(ctx context.Context, tx pgx.Tx) error {
	return p.q.QueueStatsReset(ctx, tx)
}
