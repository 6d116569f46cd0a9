package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/spooled-go/spooled/commands"
)

// claimHangUpDelay is how long a claim waits before it watches its
// connection for a hang-up. Busy workers' claims are answered sooner and
// pay nothing for the watch; an idle worker that leaves is let go within
// about this long.
const claimHangUpDelay = time.Second

type claimedJobJSON struct {
	ID             uuid.UUID       `json:"id"`
	QueueName      string          `json:"queue_name"`
	Payload        json.RawMessage `json:"payload"`
	RetryCount     int32           `json:"retry_count"`
	MaxRetries     int32           `json:"max_retries"`
	TimeoutSeconds int32           `json:"timeout_seconds"`
	Priority       int32           `json:"priority"`
	LeaseExpiresAt *string         `json:"lease_expires_at"`
	LeaseID        *uuid.UUID      `json:"lease_id"`
}

func (s *Server) claim(c *fiber.Ctx) error {
	var r struct {
		QueueName         *string `json:"queue_name"`
		WorkerID          *string `json:"worker_id"`
		Limit             *int    `json:"limit"`
		LeaseDurationSecs *int    `json:"lease_duration_secs"`
		WaitMS            *int    `json:"wait_ms"`
	}
	if err := decodeBody(c, &r); err != nil {
		return err
	}
	var wait time.Duration
	if r.WaitMS != nil {
		if *r.WaitMS < 0 || *r.WaitMS > int(commands.MaxClaimWait.Milliseconds()) {
			return validation("wait_ms", "range", "must be between 0 and 30000")
		}
		wait = time.Duration(*r.WaitMS) * time.Millisecond
	}
	if err := requireField(r.QueueName != nil, "queue_name"); err != nil {
		return err
	}
	if err := requireField(r.WorkerID != nil, "worker_id"); err != nil {
		return err
	}
	req := commands.ClaimRequest{QueueName: *r.QueueName, WorkerID: *r.WorkerID}
	if r.Limit != nil {
		if *r.Limit < 1 || *r.Limit > 100 {
			return validation("limit", "range", "must be between 1 and 100")
		}
		req.Limit = *r.Limit
	}
	if r.LeaseDurationSecs != nil {
		if *r.LeaseDurationSecs < 5 || *r.LeaseDurationSecs > 3600 {
			return validation("lease_duration_secs", "range", "must be between 5 and 3600")
		}
		req.LeaseSecs = *r.LeaseDurationSecs
	}
	ctx := c.UserContext()
	if wait > 0 {
		// A waiting claim whose client hangs up stops waiting: it would
		// otherwise lease jobs to nobody, which come back only when their
		// leases expire (a worker fleet's restart did that to a job per
		// departed worker).
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
		defer watchHangUp(c.Context().Conn(), claimHangUpDelay, func() { cancel(errClientLeft) })()
	}
	jobs, err := s.cmd.ClaimWait(ctx, caller(c).OrgID, req, wait)
	if err != nil {
		if errors.Is(context.Cause(ctx), errClientLeft) {
			return errClientLeft
		}
		return err
	}
	out := make([]claimedJobJSON, len(jobs))
	for i, j := range jobs {
		out[i] = claimedJobJSON{
			ID: j.ID, QueueName: j.QueueName, Payload: j.Payload, RetryCount: j.RetryCount,
			MaxRetries: j.MaxRetries, TimeoutSeconds: j.TimeoutSeconds, Priority: j.Priority,
			LeaseExpiresAt: tsp(j.LeaseExpiresAt), LeaseID: j.LeaseID,
		}
	}
	return c.JSON(fiber.Map{"jobs": out})
}

// leaseRef reads the worker id and optional fencing lease id of a worker call.
func leaseRef(c *fiber.Ctx, workerID *string, leaseID *string) (commands.LeaseRef, error) {
	if err := requireField(workerID != nil, "worker_id"); err != nil {
		return commands.LeaseRef{}, err
	}
	ref := commands.LeaseRef{JobID: c.Params("id"), WorkerID: *workerID}
	if leaseID != nil {
		id, err := uuid.Parse(*leaseID)
		if err != nil {
			return commands.LeaseRef{}, validation("lease_id", "uuid", "must be a UUID returned by claim")
		}
		ref.LeaseID = &id
	}
	return ref, nil
}

// notOwned is Spooled's answer to a fail or heartbeat from a worker that
// does not hold the job's lease.
func notOwned(le *commands.LeaseError) *apiError {
	return &apiError{
		Status: fiber.StatusNotFound, Code: "NOT_FOUND", Error_: "job_not_found_or_not_owned",
		Message: "Job not found or not owned by worker: " + le.Reason,
		Extra:   map[string]any{"success": false},
	}
}

func (s *Server) complete(c *fiber.Ctx) error {
	var r struct {
		WorkerID *string         `json:"worker_id"`
		LeaseID  *string         `json:"lease_id"`
		Result   json.RawMessage `json:"result"`
	}
	if err := decodeBody(c, &r); err != nil {
		return err
	}
	ref, err := leaseRef(c, r.WorkerID, r.LeaseID)
	if err != nil {
		return err
	}
	err = s.cmd.Complete(c.UserContext(), caller(c).OrgID, ref, r.Result)
	var le *commands.LeaseError
	if errors.As(err, &le) {
		// Spooled answers a refused complete with 400, unlike fail and heartbeat.
		return &apiError{Status: fiber.StatusBadRequest, Code: "VALIDATION_ERROR",
			Message: "Job not found or not owned by worker: " + le.Reason}
	}
	if err != nil {
		return err
	}
	// The per-job complete is the busiest route a worker calls; its answer
	// never changes, so it is not built and encoded per request.
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(completeOK)
}

// completeOK is the body of every successful POST /jobs/{id}/complete.
var completeOK = []byte(`{"success":true}`)

func (s *Server) fail(c *fiber.Ctx) error {
	var r struct {
		WorkerID *string `json:"worker_id"`
		LeaseID  *string `json:"lease_id"`
		Error    *string `json:"error"`
	}
	if err := decodeBody(c, &r); err != nil {
		return err
	}
	ref, err := leaseRef(c, r.WorkerID, r.LeaseID)
	if err != nil {
		return err
	}
	if err := requireField(r.Error != nil, "error"); err != nil {
		return err
	}
	out, err := s.cmd.Fail(c.UserContext(), caller(c).OrgID, ref, *r.Error, true)
	var le *commands.LeaseError
	if errors.As(err, &le) {
		return notOwned(le)
	}
	if err != nil {
		return err
	}
	resp := fiber.Map{"success": true, "will_retry": out.WillRetry, "retry_count": out.RetryCount}
	if out.RetryAt != nil {
		resp["next_retry_at"] = ts(*out.RetryAt)
	}
	return c.JSON(resp)
}

func (s *Server) heartbeat(c *fiber.Ctx) error {
	var r struct {
		WorkerID          *string `json:"worker_id"`
		LeaseID           *string `json:"lease_id"`
		LeaseDurationSecs *int    `json:"lease_duration_secs"`
	}
	if err := decodeBody(c, &r); err != nil {
		return err
	}
	ref, err := leaseRef(c, r.WorkerID, r.LeaseID)
	if err != nil {
		return err
	}
	secs := 0
	if r.LeaseDurationSecs != nil {
		if *r.LeaseDurationSecs < 5 || *r.LeaseDurationSecs > 3600 {
			return validation("lease_duration_secs", "range", "must be between 5 and 3600")
		}
		secs = *r.LeaseDurationSecs
	}
	until, err := s.cmd.RenewLease(c.UserContext(), caller(c).OrgID, ref, secs)
	var le *commands.LeaseError
	if errors.As(err, &le) {
		return notOwned(le)
	}
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"success": true, "lease_expires_at": ts(until)})
}

// completeBatch serves POST /api/v1/jobs/complete: many completions in one
// statement, for workers that finish jobs in batches. Body: {"worker_id":
// "...", "jobs": [{"job_id", "lease_id"?, "result"?, "worker_id"?}]} (1 to
// 100). Answer: {"completed": [ids], "failed": [{"job_id", "error"}]};
// refused items are in the job's history as with the single route.
func (s *Server) completeBatch(c *fiber.Ctx) error {
	var r struct {
		WorkerID *string `json:"worker_id"`
		Jobs     *[]struct {
			JobID    *string         `json:"job_id"`
			WorkerID *string         `json:"worker_id"`
			LeaseID  *string         `json:"lease_id"`
			Result   json.RawMessage `json:"result"`
		} `json:"jobs"`
	}
	if err := decodeBody(c, &r); err != nil {
		return err
	}
	if err := requireField(r.Jobs != nil, "jobs"); err != nil {
		return err
	}
	items := make([]commands.CompleteItem, len(*r.Jobs))
	ids := make([]string, len(*r.Jobs))
	for i, j := range *r.Jobs {
		if err := requireField(j.JobID != nil, "jobs[].job_id"); err != nil {
			return err
		}
		worker := r.WorkerID
		if j.WorkerID != nil {
			worker = j.WorkerID
		}
		ref, err := leaseRefFor(*j.JobID, worker, j.LeaseID)
		if err != nil {
			return err
		}
		items[i], ids[i] = commands.CompleteItem{Ref: ref, Result: j.Result}, *j.JobID
	}
	outcomes, err := s.cmd.CompleteBatch(c.UserContext(), caller(c).OrgID, items)
	if err != nil {
		return err
	}
	completed := []string{}
	failed := []fiber.Map{}
	for i, e := range outcomes {
		var le *commands.LeaseError
		var ve *commands.ValidationError
		switch {
		case e == nil:
			completed = append(completed, ids[i])
		case errors.As(e, &le):
			failed = append(failed, fiber.Map{"job_id": ids[i], "error": "job_not_found_or_not_owned", "message": le.Reason})
		case errors.As(e, &ve):
			failed = append(failed, fiber.Map{"job_id": ids[i], "error": "validation_error", "message": ve.Error()})
		default:
			return e
		}
	}
	return c.JSON(fiber.Map{"completed": completed, "failed": failed})
}

// leaseRefFor is leaseRef for a job id from a body instead of the path.
func leaseRefFor(jobID string, workerID, leaseID *string) (commands.LeaseRef, error) {
	if err := requireField(workerID != nil, "worker_id"); err != nil {
		return commands.LeaseRef{}, err
	}
	ref := commands.LeaseRef{JobID: jobID, WorkerID: *workerID}
	if leaseID != nil {
		id, err := uuid.Parse(*leaseID)
		if err != nil {
			return commands.LeaseRef{}, validation("lease_id", "uuid", "must be a UUID returned by claim")
		}
		ref.LeaseID = &id
	}
	return ref, nil
}
