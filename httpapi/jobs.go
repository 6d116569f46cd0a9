package httpapi

import (
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/events"
	"github.com/spooled-go/spooled/projections"
	"github.com/spooled-go/spooled/queries"
)

type enqueueRequest struct {
	QueueName         *string         `json:"queue_name"`
	Payload           json.RawMessage `json:"payload"`
	Priority          *int            `json:"priority"`
	MaxRetries        *int            `json:"max_retries"`
	TimeoutSeconds    *int            `json:"timeout_seconds"`
	ScheduledAt       *timestamp      `json:"scheduled_at"`
	ExpiresAt         *timestamp      `json:"expires_at"`
	Tags              json.RawMessage `json:"tags"`
	ParentJobID       *string         `json:"parent_job_id"`
	CompletionWebhook *string         `json:"completion_webhook"`
	IdempotencyKey    *string         `json:"idempotency_key"`
}

func (s *Server) enqueue(c *fiber.Ctx) error {
	var r enqueueRequest
	if err := decodeBody(c, &r); err != nil {
		return err
	}
	if err := requireField(r.QueueName != nil, "queue_name"); err != nil {
		return err
	}
	if err := requireField(len(r.Payload) > 0, "payload"); err != nil {
		return err
	}
	res, err := s.cmd.Enqueue(c.UserContext(), caller(c).actor(), []commands.NewJob{{
		QueueName: *r.QueueName, Payload: r.Payload, Priority: r.Priority, MaxRetries: r.MaxRetries,
		TimeoutSeconds: r.TimeoutSeconds, ScheduledAt: (*time.Time)(r.ScheduledAt), ExpiresAt: (*time.Time)(r.ExpiresAt), Tags: r.Tags,
		ParentJobID: r.ParentJobID, CompletionWebhook: r.CompletionWebhook, IdempotencyKey: r.IdempotencyKey,
	}})
	if err != nil {
		return err
	}
	status := fiber.StatusCreated
	if !res[0].Created {
		status = fiber.StatusOK
	}
	return c.Status(status).JSON(fiber.Map{"id": res[0].ID, "created": res[0].Created})
}

type bulkRequest struct {
	QueueName *string `json:"queue_name"`
	Jobs      *[]struct {
		Payload        json.RawMessage `json:"payload"`
		Priority       *int            `json:"priority"`
		IdempotencyKey *string         `json:"idempotency_key"`
		ScheduledAt    *timestamp      `json:"scheduled_at"`
	} `json:"jobs"`
	DefaultPriority       *int `json:"default_priority"`
	DefaultMaxRetries     *int `json:"default_max_retries"`
	DefaultTimeoutSeconds *int `json:"default_timeout_seconds"`
}

type bulkSucceeded struct {
	Index   int       `json:"index"`
	JobID   uuid.UUID `json:"job_id"`
	Created bool      `json:"created"`
}

type bulkFailed struct {
	Index int    `json:"index"`
	Error string `json:"error"`
}

func (s *Server) bulkEnqueue(c *fiber.Ctx) error {
	var r bulkRequest
	if err := decodeBody(c, &r); err != nil {
		return err
	}
	if err := requireField(r.QueueName != nil, "queue_name"); err != nil {
		return err
	}
	if err := requireField(r.Jobs != nil, "jobs"); err != nil {
		return err
	}
	if err := commands.ValidateQueueName("queue_name", *r.QueueName); err != nil {
		return err
	}
	items := *r.Jobs
	if len(items) == 0 || len(items) > commands.MaxBulkJobs {
		return validation("jobs", "length", "must hold 1 to 100 jobs")
	}
	jobs := make([]commands.NewJob, len(items))
	for i, it := range items {
		if len(it.Payload) == 0 {
			return invalidJSON("jobs", "Missing required field: jobs[].payload")
		}
		if it.Priority != nil && (*it.Priority < -100 || *it.Priority > 100) {
			return validation("jobs.priority", "range", "must be between -100 and 100")
		}
		prio := r.DefaultPriority
		if it.Priority != nil {
			prio = it.Priority
		}
		jobs[i] = commands.NewJob{
			QueueName: *r.QueueName, Payload: it.Payload, Priority: prio, MaxRetries: r.DefaultMaxRetries,
			TimeoutSeconds: r.DefaultTimeoutSeconds, ScheduledAt: (*time.Time)(it.ScheduledAt), IdempotencyKey: it.IdempotencyKey,
		}
	}
	res, err := s.cmd.EnqueueBulk(c.UserContext(), caller(c).actor(), jobs)
	if err != nil {
		return err
	}
	succeeded := []bulkSucceeded{}
	failed := []bulkFailed{}
	for i, r := range res {
		if r.Err != nil {
			failed = append(failed, bulkFailed{Index: i, Error: "Failed to create job: " + r.Err.Error()})
			continue
		}
		succeeded = append(succeeded, bulkSucceeded{Index: i, JobID: r.ID, Created: r.Created})
	}
	return c.JSON(fiber.Map{
		"succeeded": succeeded, "failed": failed, "total": len(res),
		"success_count": len(succeeded), "failure_count": len(failed),
	})
}

var jobStatuses = map[string]bool{
	"pending": true, "scheduled": true, "processing": true, "completed": true,
	"failed": true, "deadletter": true, "cancelled": true,
}

// optionalQueueFilter reads queue_name (or the SDK's queue) as a filter;
// a value that cannot be a queue name is ignored, as in Spooled.
func optionalQueueFilter(c *fiber.Ctx) *string {
	q := c.Query("queue_name", c.Query("queue"))
	if q == "" || commands.ValidateQueueName("queue_name", q) != nil {
		return nil
	}
	return &q
}

// maxTagFilter bounds the tag filter of GET /jobs: a job's tags are at
// most 64 KiB of JSON in all, so a longer key matches nothing. (The
// request line's own limit, 4 KiB, answers 431 well before that.)
const maxTagFilter = 64 * 1024

func (s *Server) listJobs(c *fiber.Ctx) error {
	limit, err := queryInt(c, "limit", 50, 1, 100)
	if err != nil {
		return err
	}
	offset, err := queryInt(c, "offset", 0, 0, 1<<31-1)
	if err != nil {
		return err
	}
	p := queries.JobListParams{
		OrganizationID: caller(c).OrgID, QueueName: optionalQueueFilter(c),
		MaxRows: int32(limit), SkipRows: int32(offset),
	}
	if st := c.Query("status"); jobStatuses[st] {
		p.Status = &st
	}
	tag, err := queryText(c, "tag", maxTagFilter)
	if err != nil {
		return err
	}
	if tag != "" {
		p.Tag = &tag
	}
	rows, err := s.q.JobListOrdered(c.UserContext(), s.pool, p)
	if err != nil {
		return err
	}
	out := make([]jobSummaryJSON, len(rows))
	for i, r := range rows {
		out[i] = toSummary(r)
	}
	return c.JSON(out)
}

func (s *Server) listDeadLetters(c *fiber.Ctx) error {
	limit, err := queryInt(c, "limit", 50, 1, 100)
	if err != nil {
		return err
	}
	offset, err := queryInt(c, "offset", 0, 0, 1<<31-1)
	if err != nil {
		return err
	}
	dead := "deadletter"
	rows, err := s.q.JobListOrdered(c.UserContext(), s.pool, queries.JobListParams{
		OrganizationID: caller(c).OrgID, QueueName: optionalQueueFilter(c), Status: &dead,
		MaxRows: int32(limit), SkipRows: int32(offset),
	})
	if err != nil {
		return err
	}
	out := make([]jobSummaryJSON, len(rows))
	for i, r := range rows {
		out[i] = toSummary(r)
	}
	return c.JSON(out)
}

// loadJob reads one job of the caller's organization; an id that is not a
// UUID names no job.
func (s *Server) loadJob(c *fiber.Ctx) (queries.Job, error) {
	id, err := uuid.Parse(c.Params("id"))
	if err != nil {
		return queries.Job{}, notFound("Job not found")
	}
	j, err := s.q.JobGet(c.UserContext(), s.pool, queries.JobGetParams{ID: id, OrganizationID: caller(c).OrgID})
	if errors.Is(err, pgx.ErrNoRows) {
		return queries.Job{}, notFound("Job not found")
	}
	return j, err
}

func (s *Server) getJob(c *fiber.Ctx) error {
	if raw := c.Query("as_of"); raw != "" {
		return s.getJobAsOf(c, raw)
	}
	j, err := s.loadJob(c)
	if err != nil {
		return err
	}
	return c.JSON(toJobJSON(j))
}

// getJobAsOf answers GET /jobs/{id}?as_of=<RFC3339>: the job as it stood
// then, folded from its events up to that moment by the same fold that
// rebuilds the projections. A purged job can be read as of before its purge.
func (s *Server) getJobAsOf(c *fiber.Ctx, raw string) error {
	asOf, err := time.Parse(time.RFC3339Nano, raw)
	if err != nil {
		return validation("as_of", "timestamp", "must be an RFC 3339 timestamp")
	}
	id, err := uuid.Parse(c.Params("id"))
	if err != nil {
		return notFound("Job not found")
	}
	rows, err := s.q.JobEventsUntil(c.UserContext(), s.pool, queries.JobEventsUntilParams{
		OrganizationID: caller(c).OrgID, StreamID: id.String(), Since: events.HistorySince(id), Until: asOf,
	})
	if err != nil {
		return err
	}
	evs := make([]projections.JobEvent, len(rows))
	for i, r := range rows {
		evs[i] = projections.JobEvent{OrganizationID: r.OrganizationID, StreamID: r.StreamID, Seq: r.StreamSeq,
			Type: r.EventType, QueueName: r.QueueName, Data: r.Data, OccurredAt: r.OccurredAt}
	}
	st, err := projections.FoldJob(evs)
	if errors.Is(err, projections.ErrHistoryDropped) {
		return notFound("The job's history at that time has been dropped by log retention")
	}
	if err != nil {
		return err
	}
	if st.Job == nil {
		return notFound("Job did not exist at that time")
	}
	return c.JSON(toJobJSON(*st.Job))
}

func (s *Server) replayJob(c *fiber.Ctx) error {
	r, err := s.cmd.Replay(c.UserContext(), caller(c).actor(), c.Params("id"))
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusCreated).JSON(fiber.Map{"id": r.JobID, "created": true, "replay_of": r.OriginalID})
}

// replayDeadLetters serves POST /jobs/dlq/replay {queue_name?, from?, to?,
// limit?}: a new job for each dead-lettered job dead-lettered in [from, to).
func (s *Server) replayDeadLetters(c *fiber.Ctx) error {
	var r struct {
		QueueName *string    `json:"queue_name"`
		From      *timestamp `json:"from"`
		To        *timestamp `json:"to"`
		Limit     *int       `json:"limit"`
	}
	if len(c.Body()) > 0 {
		if err := decodeBody(c, &r); err != nil {
			return err
		}
	}
	limit := 0
	if r.Limit != nil {
		if *r.Limit < 1 || *r.Limit > 100 {
			return validation("limit", "range", "must be between 1 and 100")
		}
		limit = *r.Limit
	}
	out, err := s.cmd.ReplayDeadLetters(c.UserContext(), caller(c).actor(), r.QueueName, (*time.Time)(r.From), (*time.Time)(r.To), limit)
	if err != nil {
		return err
	}
	jobs := make([]fiber.Map, len(out))
	for i, x := range out {
		jobs[i] = fiber.Map{"original_id": x.OriginalID, "job_id": x.JobID}
	}
	return c.JSON(fiber.Map{"replayed_count": len(out), "jobs": jobs})
}

func (s *Server) jobHistory(c *fiber.Ctx) error {
	id, err := uuid.Parse(c.Params("id"))
	if err != nil {
		return notFound("Job not found")
	}
	evs, err := events.JobHistory(c.UserContext(), s.pool, caller(c).OrgID, id)
	if err != nil {
		return err
	}
	// A purged job has history but no read-model row; an unknown job has
	// neither.
	if len(evs) == 0 {
		return notFound("Job not found")
	}
	type eventJSON struct {
		Position   int64           `json:"position"`
		Sequence   int32           `json:"sequence"`
		Type       string          `json:"type"`
		OccurredAt string          `json:"occurred_at"`
		Actor      string          `json:"actor"`
		Data       json.RawMessage `json:"data"`
	}
	out := make([]eventJSON, len(evs))
	for i, e := range evs {
		out[i] = eventJSON{Position: e.Position, Sequence: e.Sequence, Type: e.Type,
			OccurredAt: ts(e.OccurredAt), Actor: e.Actor, Data: e.Data}
	}
	return c.JSON(fiber.Map{"job_id": id, "events": out})
}

func (s *Server) cancelJob(c *fiber.Ctx) error {
	if err := s.cmd.Cancel(c.UserContext(), caller(c).actor(), c.Params("id")); err != nil {
		return err
	}
	return c.SendStatus(fiber.StatusNoContent)
}

func (s *Server) retryJob(c *fiber.Ctx) error {
	j, err := s.cmd.Retry(c.UserContext(), caller(c).actor(), c.Params("id"))
	if err != nil {
		return err
	}
	return c.JSON(toJobJSON(j))
}

func (s *Server) setPriority(c *fiber.Ctx) error {
	var r struct {
		Priority *int `json:"priority"`
	}
	if err := decodeBody(c, &r); err != nil {
		return err
	}
	if err := requireField(r.Priority != nil, "priority"); err != nil {
		return err
	}
	ch, err := s.cmd.SetPriority(c.UserContext(), caller(c).actor(), c.Params("id"), *r.Priority)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"job_id": ch.JobID, "old_priority": ch.OldPriority, "new_priority": ch.NewPriority})
}

func (s *Server) jobStatuses(c *fiber.Ctx) error {
	if !c.Context().QueryArgs().Has("ids") {
		return badRequest("Missing query parameter: ids")
	}
	var ids []uuid.UUID
	var n int
	for _, part := range strings.Split(c.Query("ids"), ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		n++
		if id, err := uuid.Parse(part); err == nil {
			ids = append(ids, id)
		}
	}
	if n > 100 {
		return badRequest("Maximum 100 job IDs allowed per request")
	}
	type statusJSON struct {
		ID          uuid.UUID `json:"id"`
		Status      string    `json:"status"`
		QueueName   string    `json:"queue_name"`
		RetryCount  int32     `json:"retry_count"`
		CreatedAt   string    `json:"created_at"`
		CompletedAt *string   `json:"completed_at"`
	}
	out := []statusJSON{}
	if len(ids) > 0 {
		rows, err := s.q.JobStatusByIDs(c.UserContext(), s.pool, queries.JobStatusByIDsParams{
			OrganizationID: caller(c).OrgID, Ids: ids,
		})
		if err != nil {
			return err
		}
		for _, r := range rows {
			out = append(out, statusJSON{ID: r.ID, Status: r.Status, QueueName: r.QueueName,
				RetryCount: r.RetryCount, CreatedAt: ts(r.CreatedAt), CompletedAt: tsp(r.CompletedAt)})
		}
	}
	return c.JSON(out)
}

func (s *Server) retryDeadLetters(c *fiber.Ctx) error {
	var r struct {
		JobIDs    []string `json:"job_ids"`
		QueueName *string  `json:"queue_name"`
		Limit     *int     `json:"limit"`
	}
	if len(c.Body()) > 0 {
		if err := decodeBody(c, &r); err != nil {
			return err
		}
	}
	if r.QueueName != nil && len(*r.QueueName) > 100 {
		return validation("queue_name", "length", "must be at most 100 characters")
	}
	if len(r.JobIDs) > 100 {
		return validation("job_ids", "length", "must name at most 100 jobs")
	}
	limit := 0
	if r.Limit != nil {
		limit = *r.Limit
		if limit < 1 || limit > 100 {
			return validation("limit", "range", "must be between 1 and 100")
		}
	}
	jobs, err := s.cmd.RetryDeadLetters(c.UserContext(), caller(c).actor(), r.JobIDs, r.QueueName, limit)
	if err != nil {
		return err
	}
	ids := make([]uuid.UUID, len(jobs))
	for i, j := range jobs {
		ids[i] = j.ID
	}
	return c.JSON(fiber.Map{"retried_count": len(ids), "retried_jobs": ids})
}

// purgeDeadLetters accepts the SDK's body without "confirm" (the SDK's purge
// call is itself the confirmation) but refuses an explicit confirm: false.
func (s *Server) purgeDeadLetters(c *fiber.Ctx) error {
	var r struct {
		Confirm   *bool      `json:"confirm"`
		QueueName *string    `json:"queue_name"`
		OlderThan *timestamp `json:"older_than"`
		Limit     *int       `json:"limit"`
	}
	if len(c.Body()) > 0 {
		if err := decodeBody(c, &r); err != nil {
			return err
		}
	}
	if r.Confirm != nil && !*r.Confirm {
		return badRequest("Must set 'confirm: true' to purge dead-letter queue")
	}
	if r.QueueName != nil && len(*r.QueueName) > 100 {
		return validation("queue_name", "length", "must be at most 100 characters")
	}
	limit := 0
	if r.Limit != nil {
		limit = *r.Limit
		if limit < 1 || limit > 10000 {
			return validation("limit", "range", "must be between 1 and 10000")
		}
	}
	n, err := s.cmd.PurgeDeadLetters(c.UserContext(), caller(c).actor(), r.QueueName, (*time.Time)(r.OlderThan), limit)
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"purged_count": n})
}
