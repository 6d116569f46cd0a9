package httpapi

import (
	"encoding/json"
	"errors"

	"github.com/gofiber/fiber/v2"
	"github.com/jackc/pgx/v5"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/queries"
)

func (s *Server) registerWorker(c *fiber.Ctx) error {
	var r struct {
		QueueName      *string         `json:"queue_name"`
		QueueNames     []string        `json:"queue_names"`
		Hostname       *string         `json:"hostname"`
		WorkerType     *string         `json:"worker_type"`
		MaxConcurrency *int            `json:"max_concurrency"`
		Metadata       json.RawMessage `json:"metadata"`
		Version        *string         `json:"version"`
	}
	if err := decodeBody(c, &r); err != nil {
		return err
	}
	if err := requireField(r.QueueName != nil, "queue_name"); err != nil {
		return err
	}
	if err := requireField(r.Hostname != nil, "hostname"); err != nil {
		return err
	}
	p := caller(c)
	w, err := s.cmd.RegisterWorker(c.UserContext(), p.actor(), commands.NewWorker{
		QueueName: *r.QueueName, QueueNames: r.QueueNames, Hostname: *r.Hostname, WorkerType: r.WorkerType,
		MaxConcurrency: r.MaxConcurrency, Metadata: r.Metadata, Version: r.Version, KeyQueues: p.Queues,
	})
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusCreated).JSON(fiber.Map{
		"id": w.ID, "queue_name": w.QueueName, "lease_duration_secs": s.cfg.WorkerLeaseDurationSecs,
		"heartbeat_interval_secs": s.cfg.WorkerHeartbeatIntervalSecs,
	})
}

func (s *Server) listWorkers(c *fiber.Ctx) error {
	rows, err := s.q.WorkerList(c.UserContext(), s.pool, caller(c).OrgID)
	if err != nil {
		return err
	}
	out := make([]fiber.Map, len(rows))
	for i, w := range rows {
		out[i] = fiber.Map{
			"id": w.ID, "queue_name": w.QueueName, "hostname": w.Hostname, "status": w.Status,
			"current_jobs": w.CurrentJobs, "leased_jobs": w.LeasedJobs, "max_concurrency": w.MaxConcurrency,
			"last_heartbeat": ts(w.LastHeartbeat),
		}
	}
	return c.JSON(out)
}

// workerJSON carries both Spooled's field names (max_concurrent_jobs,
// current_job_count, created_at) and the SDK's (max_concurrency,
// current_jobs, registered_at). current_jobs is what the worker last
// reported; current_job_count is the leases it holds now.
func workerJSON(w queries.Worker, leased int32) fiber.Map {
	return fiber.Map{
		"id": w.ID, "organization_id": w.OrganizationID, "queue_name": w.QueueName, "queue_names": w.QueueNames,
		"hostname": w.Hostname, "worker_type": w.WorkerType, "max_concurrent_jobs": w.MaxConcurrency,
		"max_concurrency": w.MaxConcurrency, "current_job_count": leased, "current_jobs": w.CurrentJobs,
		"status": w.Status, "last_heartbeat": ts(w.LastHeartbeat), "metadata": w.Metadata, "version": w.Version,
		"created_at": ts(w.CreatedAt), "registered_at": ts(w.CreatedAt), "updated_at": ts(w.UpdatedAt),
	}
}

func (s *Server) getWorker(c *fiber.Ctx) error {
	orgID := caller(c).OrgID
	w, err := s.q.WorkerGet(c.UserContext(), s.pool, queries.WorkerGetParams{ID: c.Params("id"), OrganizationID: orgID})
	if errors.Is(err, pgx.ErrNoRows) {
		return notFound("Worker not found")
	}
	if err != nil {
		return err
	}
	leased, err := s.q.WorkerLeasedCount(c.UserContext(), s.pool, queries.WorkerLeasedCountParams{OrganizationID: orgID, WorkerID: w.ID})
	if err != nil {
		return err
	}
	return c.JSON(workerJSON(w, leased))
}

func (s *Server) workerHeartbeat(c *fiber.Ctx) error {
	var r struct {
		CurrentJobs *int            `json:"current_jobs"`
		Status      *string         `json:"status"`
		Metadata    json.RawMessage `json:"metadata"`
	}
	if err := decodeBody(c, &r); err != nil {
		return err
	}
	if err := requireField(r.CurrentJobs != nil, "current_jobs"); err != nil {
		return err
	}
	status := ""
	if r.Status != nil {
		status = *r.Status
	}
	w, err := s.cmd.WorkerHeartbeat(c.UserContext(), caller(c).actor(), c.Params("id"), *r.CurrentJobs, status, r.Metadata)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"acknowledged": true, "status": w.Status, "should_drain": w.Status == "draining"})
}

func (s *Server) deregisterWorker(c *fiber.Ctx) error {
	if err := s.cmd.DeregisterWorker(c.UserContext(), caller(c).actor(), c.Params("id")); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}
