package httpapi

import (
	"context"
	"errors"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/jackc/pgx/v5"

	"github.com/spooled-go/spooled/queries"
)

// Stats are read from the hot tables (live counts) and from the queue_stats
// projection (finished jobs, hourly activity), never by counting history:
// they answer in milliseconds whatever the log holds. Finished counts trail
// the log by the projector's lag (spooled_projection_lag_seconds).

// windowStart is the first hourly bucket of a window of hours: the current
// hour and the hours-1 before it.
func windowStart(now time.Time, hours int) time.Time {
	return now.UTC().Truncate(time.Hour).Add(-time.Duration(hours-1) * time.Hour)
}

// avgMS is an integral average (the SDK decodes these as integers), or nil
// when nothing was measured.
func avgMS(sum, n int64) *int64 {
	if n == 0 {
		return nil
	}
	v := (sum + n/2) / n
	return &v
}

type jobCounts struct {
	pending, scheduled, processing, completed, deadletter, cancelled int64
}

func (s *Server) jobCounts(ctx context.Context, orgID string, queue *string) (jobCounts, error) {
	live, err := s.q.StatsLive(ctx, s.pool, queries.StatsLiveParams{OrganizationID: orgID, QueueName: queue})
	if err != nil {
		return jobCounts{}, err
	}
	tot, err := s.q.StatsTotals(ctx, s.pool, queries.StatsTotalsParams{OrganizationID: orgID, QueueName: queue})
	if err != nil {
		return jobCounts{}, err
	}
	return jobCounts{
		pending: live.Waiting - live.Scheduled, scheduled: live.Scheduled, processing: live.Processing,
		completed: tot.Completed, deadletter: tot.Deadletter, cancelled: tot.Cancelled,
	}, nil
}

func (s *Server) jobStats(c *fiber.Ctx) error {
	n, err := s.jobCounts(c.UserContext(), caller(c).OrgID, optionalQueueFilter(c))
	if err != nil {
		return err
	}
	// No transition produces status "failed" (a failed attempt is retried
	// or dead-lettered), so that count is always zero.
	return c.JSON(fiber.Map{
		"pending": n.pending, "scheduled": n.scheduled, "processing": n.processing, "completed": n.completed,
		"failed": 0, "deadletter": n.deadletter, "cancelled": n.cancelled,
		"total": n.pending + n.scheduled + n.processing + n.completed + n.deadletter + n.cancelled,
	})
}

func (s *Server) queueStats(c *fiber.Ctx) error {
	name, err := queuePath(c)
	if err != nil {
		return err
	}
	ctx, orgID := c.UserContext(), caller(c).OrgID
	n, err := s.jobCounts(ctx, orgID, &name)
	if err != nil {
		return err
	}
	now := s.cmd.Now()
	win, err := s.q.StatsWindow(ctx, s.pool, queries.StatsWindowParams{OrganizationID: orgID, QueueName: &name, Since: windowStart(now, 24)})
	if err != nil {
		return err
	}
	var maxAge *int64
	oldest, err := s.q.StatsOldestWaiting(ctx, s.pool, queries.StatsOldestWaitingParams{OrganizationID: orgID, QueueName: name})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return err
	default:
		age := int64(max(now.Sub(oldest), 0) / time.Second)
		maxAge = &age
	}
	workers, err := s.q.StatsActiveWorkers(ctx, s.pool, queries.StatsActiveWorkersParams{OrganizationID: orgID, QueueName: &name})
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{
		"queue_name": name, "pending_jobs": n.pending, "scheduled_jobs": n.scheduled,
		"processing_jobs": n.processing, "completed_jobs": n.completed, "deadletter_jobs": n.deadletter,
		"completed_jobs_24h": win.Completed, "failed_jobs_24h": win.Failed, "deadlettered_jobs_24h": win.Deadlettered,
		"avg_processing_time_ms": avgMS(win.RunMsSum, win.RunCount), "max_job_age_seconds": maxAge,
		"active_workers": workers,
	})
}

func (s *Server) dashboard(c *fiber.Ctx) error {
	ctx, orgID := c.UserContext(), caller(c).OrgID
	n, err := s.jobCounts(ctx, orgID, nil)
	if err != nil {
		return err
	}
	now := s.cmd.Now()
	day, err := s.q.StatsWindow(ctx, s.pool, queries.StatsWindowParams{OrganizationID: orgID, Since: windowStart(now, 24)})
	if err != nil {
		return err
	}
	hour, err := s.q.StatsWindow(ctx, s.pool, queries.StatsWindowParams{OrganizationID: orgID, Since: windowStart(now, 1)})
	if err != nil {
		return err
	}
	queues, err := s.q.StatsBusiestQueues(ctx, s.pool, orgID)
	if err != nil {
		return err
	}
	qs := make([]fiber.Map, len(queues))
	for i, q := range queues {
		qs[i] = fiber.Map{"name": q.QueueName, "pending": q.Pending, "processing": q.Processing, "paused": q.Paused}
	}
	w, err := s.q.StatsWorkers(ctx, s.pool, orgID)
	if err != nil {
		return err
	}
	dbStatus, cacheStatus := "healthy", "healthy"
	if s.busHealthy != nil && !s.busHealthy() {
		cacheStatus = "unhealthy"
	}
	return c.JSON(fiber.Map{
		"system": fiber.Map{
			"version": Version, "uptime_seconds": int64(time.Since(s.started) / time.Second),
			"started_at": ts(s.started), "database_status": dbStatus, "cache_status": cacheStatus,
			"environment": s.cfg.Environment,
		},
		"jobs": fiber.Map{
			"total":   n.pending + n.scheduled + n.processing + n.completed + n.deadletter + n.cancelled,
			"pending": n.pending + n.scheduled, "processing": n.processing,
			"completed_24h": day.Completed, "failed_24h": day.Failed, "deadletter": n.deadletter,
			"avg_wait_time_ms":       avgMS(day.WaitMsSum, day.WaitCount),
			"avg_processing_time_ms": avgMS(day.RunMsSum, day.RunCount),
		},
		"queues":  qs,
		"workers": fiber.Map{"total": w.Total, "healthy": w.Healthy, "unhealthy": w.Total - w.Healthy},
		"recent_activity": fiber.Map{
			"jobs_created_1h": hour.Created, "jobs_completed_1h": hour.Completed, "jobs_failed_1h": hour.Failed,
		},
	})
}
