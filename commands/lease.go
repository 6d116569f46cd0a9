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
	"github.com/spooled-go/spooled/queries"
)

// ClaimRequest asks for up to Limit ready jobs of one queue.
type ClaimRequest struct {
	QueueName string
	WorkerID  string
	Limit     int // 1..100; 0 means 1
	LeaseSecs int // 5..3600; 0 means the configured lease
}

func validateWorkerID(id string) error {
	if id == "" || len(id) > 255 {
		return invalid("worker_id", "length", "must be 1 to 255 characters")
	}
	return nil
}

func (s *Service) leaseSecs(field string, v int) (int, error) {
	if v == 0 {
		return s.defaults.LeaseSecs, nil
	}
	return v, checkRange(field, v, 5, 3600)
}

// Claim leases up to Limit jobs in one statement. An empty result is not an
// error.
func (s *Service) Claim(ctx context.Context, orgID string, r ClaimRequest) ([]queries.Job, error) {
	r, secs, err := s.checkClaim(r)
	if err != nil {
		return nil, err
	}
	jobs, _, err := s.claim(ctx, orgID, r, secs, true)
	return jobs, err
}

// checkClaim validates a claim request and fills in its defaults; it
// returns the lease length in seconds.
func (s *Service) checkClaim(r ClaimRequest) (ClaimRequest, int, error) {
	if err := ValidateQueueName("queue_name", r.QueueName); err != nil {
		return r, 0, err
	}
	if err := validateWorkerID(r.WorkerID); err != nil {
		return r, 0, err
	}
	if r.Limit == 0 {
		r.Limit = 1
	}
	if err := checkRange("limit", r.Limit, 1, 100); err != nil {
		return r, 0, err
	}
	secs, err := s.leaseSecs("lease_duration_secs", r.LeaseSecs)
	return r, secs, err
}

// claim runs a checked claim request. With probe, it first reads whether
// the queue holds a job a claim could take now (QueueClaimProbe) and, when
// it does not, returns empty without running the claim statement, along
// with the probe's answer (when the next waiting job falls due). The probe
// is skipped for a queue whose last claim here got its whole limit
// (busyQueues). Without a probe, or when the probe found a job, the answer
// is nil.
func (s *Service) claim(ctx context.Context, orgID string, r ClaimRequest, secs int, probe bool) ([]queries.Job, *queries.QueueClaimProbeRow, error) {
	k := claimKey{orgID, r.QueueName}
	if probe && !s.busy.has(k) {
		p, err := s.probe(ctx, orgID, r.QueueName)
		if err != nil {
			return nil, nil, err
		}
		if !p.Ready {
			return []queries.Job{}, p, nil
		}
	}
	var jobs []queries.Job
	var err error
	if s.claims != nil {
		jobs, err = s.claims.claim(ctx, orgID, r.QueueName, r.WorkerID, r.Limit, secs)
	} else {
		jobs, err = s.claimAlone(ctx, orgID, r.QueueName, r.WorkerID, r.Limit, secs)
	}
	if err == nil {
		s.busy.set(k, len(jobs) >= r.Limit)
	}
	return jobs, nil, err
}

// probe reads whether a queue holds a job a claim could take now, and when
// its next waiting job falls due (QueueClaimProbe), and reports the read.
func (s *Service) probe(ctx context.Context, orgID, queue string) (*queries.QueueClaimProbeRow, error) {
	p, err := s.q.QueueClaimProbe(ctx, s.jobs, queries.QueueClaimProbeParams{
		OrganizationID: orgID, QueueName: queue, Now: s.clock.Now(),
	})
	if err != nil {
		return nil, fmt.Errorf("probe queue %s: %w", queue, err)
	}
	s.observer.ClaimProbed(queue, p.Ready)
	return &p, nil
}

// claimAlone runs one claim request's statement.
func (s *Service) claimAlone(ctx context.Context, orgID, queue, worker string, limit, secs int) ([]queries.Job, error) {
	dealt, err := s.claimRequests(ctx, orgID, queue, []*claimCall{{worker: worker, limit: limit, secs: secs}})
	if err != nil {
		return nil, err
	}
	return dealt[0], nil
}

// claimRequests runs one claim statement for reqs (one, or several
// coalesced) and returns each request's jobs, in reqs' order. One round
// trip: the queue's limits row and the registered workers' rows are locked
// by a statement of their own, pipelined ahead of the claim in one
// implicit transaction, so the claim's snapshot includes every concurrent
// claim of the same queue or workers (across instances).
func (s *Service) claimRequests(ctx context.Context, orgID, queue string, reqs []*claimCall) ([][]queries.Job, error) {
	rows, err := s.claimStatement(ctx, orgID, queue, reqs)
	if err != nil {
		return nil, fmt.Errorf("claim jobs: %w", err)
	}
	s.observer.ClaimStatementRan(queue, len(rows) > 0)
	// Each request's slice is made at its size: grown row by row, it would
	// copy the jobs (some 350 bytes each) over and over.
	counts := make([]int, len(reqs))
	for _, row := range rows {
		counts[row.Req-1]++
	}
	dealt := make([][]queries.Job, len(reqs))
	for i, n := range counts {
		dealt[i] = make([]queries.Job, 0, n)
	}
	for _, row := range rows {
		i := int(row.Req) - 1 // 1-based position in the arrays
		job := queries.Job{
			ID: row.ID, OrganizationID: row.OrganizationID, QueueName: row.QueueName, Status: row.Status,
			Payload: row.Payload, Result: row.Result, RetryCount: row.RetryCount, MaxRetries: row.MaxRetries,
			LastError: row.LastError, CreatedAt: row.CreatedAt, ScheduledAt: row.ScheduledAt,
			StartedAt: row.StartedAt, CompletedAt: row.CompletedAt, ExpiresAt: row.ExpiresAt,
			Priority: row.Priority, Tags: row.Tags, TimeoutSeconds: row.TimeoutSeconds,
			ParentJobID: row.ParentJobID, CompletionWebhook: row.CompletionWebhook,
			AssignedWorkerID: row.AssignedWorkerID, LeaseID: row.LeaseID, LeaseExpiresAt: row.LeaseExpiresAt,
			IdempotencyKey: row.IdempotencyKey, UpdatedAt: row.UpdatedAt, WorkflowID: row.WorkflowID,
			DependencyMode: row.DependencyMode, DependenciesMet: row.DependenciesMet, Version: row.Version,
			DeadStatus: row.DeadStatus,
		}
		s.observeClaim(job)
		dealt[i] = append(dealt[i], job)
	}
	return dealt, nil
}

// claimStatement runs the claim statement for reqs: JobClaimOne for a
// single request (a claim on a queue with no other claim in flight here,
// most claims at a moderate load), JobClaimMulti to deal one pick out to
// several.
func (s *Service) claimStatement(ctx context.Context, orgID, queue string, reqs []*claimCall) ([]queries.JobClaimMultiRow, error) {
	now := s.clock.Now()
	if len(reqs) == 1 {
		c := reqs[0]
		return s.q.ClaimOnePipelined(ctx, s.jobs,
			queries.ClaimLocksMultiParams{OrganizationID: orgID, QueueName: queue, WorkerIds: []string{c.worker}},
			queries.JobClaimOneParams{Now: now, OrganizationID: orgID, QueueName: queue, Lim: int32(c.limit),
				WorkerID: c.worker, LeaseSecs: int32(c.secs), Actor: events.ActorWorker(c.worker)})
	}
	p := queries.JobClaimMultiParams{Now: now, OrganizationID: orgID, QueueName: queue}
	for _, c := range reqs {
		p.WorkerIds = append(p.WorkerIds, c.worker)
		p.Limits = append(p.Limits, int32(c.limit))
		p.LeaseSecs = append(p.LeaseSecs, int32(c.secs))
		p.Actors = append(p.Actors, events.ActorWorker(c.worker))
	}
	return s.q.ClaimMultiPipelined(ctx, s.jobs,
		queries.ClaimLocksMultiParams{OrganizationID: orgID, QueueName: queue, WorkerIds: p.WorkerIds}, p)
}

// observeClaim reports a claimed job's wait since it fell due.
func (s *Service) observeClaim(j queries.Job) {
	if j.StartedAt == nil {
		return
	}
	due := j.CreatedAt
	if j.ScheduledAt != nil && j.ScheduledAt.After(due) {
		due = *j.ScheduledAt
	}
	s.observer.JobClaimed(j.QueueName, j.StartedAt.Sub(due))
}

// LeaseRef names the lease a worker call acts under. LeaseID is optional, as
// in Spooled; when given it must be the current lease (fencing).
type LeaseRef struct {
	JobID    string
	WorkerID string
	LeaseID  *uuid.UUID
}

// Complete finishes a leased job with an optional result.
func (s *Service) Complete(ctx context.Context, orgID string, ref LeaseRef, result json.RawMessage) error {
	id, err := s.leaseTarget(ref)
	if err != nil {
		return err
	}
	if s.cmpGC != nil {
		refused, err := s.cmpGC.do(ctx, completeReq{orgID: orgID, item: CompleteItem{Ref: ref, Result: result}})
		if err != nil {
			return err
		}
		return refused
	}
	row, err := s.q.JobComplete(ctx, s.jobs, queries.JobCompleteParams{
		Now: s.clock.Now(), JobID: id, OrganizationID: orgID, WorkerID: ref.WorkerID,
		LeaseID: ref.LeaseID, Result: nullJSON(result), Actor: events.ActorWorker(ref.WorkerID),
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return s.reject(ctx, orgID, id, ref, "complete")
	}
	if err != nil {
		return fmt.Errorf("complete job: %w", err)
	}
	if row.StartedAt != nil {
		s.observer.JobCompleted(row.QueueName, row.CompletedAt.Sub(*row.StartedAt))
	}
	return nil
}

// FailOutcome says where a failed job went.
type FailOutcome struct {
	WillRetry  bool
	RetryCount int
	RetryAt    *time.Time
}

// Fail records a failed attempt: the job retries after a backoff while it
// has retries left and allowRetry is set, else it is dead-lettered.
func (s *Service) Fail(ctx context.Context, orgID string, ref LeaseRef, message string, allowRetry bool) (FailOutcome, error) {
	id, err := s.leaseTarget(ref)
	if err != nil {
		return FailOutcome{}, err
	}
	if message == "" || len(message) > 2048 {
		return FailOutcome{}, invalid("error", "length", "must be 1 to 2048 characters")
	}
	row, err := s.q.JobFail(ctx, s.jobs, queries.JobFailParams{
		Now: s.clock.Now(), JobID: id, OrganizationID: orgID, WorkerID: ref.WorkerID,
		LeaseID: ref.LeaseID, AllowRetry: allowRetry, Error: message, Actor: events.ActorWorker(ref.WorkerID),
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return FailOutcome{}, s.reject(ctx, orgID, id, ref, "fail")
	}
	if err != nil {
		return FailOutcome{}, fmt.Errorf("fail job: %w", err)
	}
	out := FailOutcome{WillRetry: row.Status == "pending", RetryCount: int(row.RetryCount)}
	s.observer.JobFailed(row.QueueName)
	if out.WillRetry {
		out.RetryAt = row.ScheduledAt
		// The retry falls due later: every waiting claim re-reads its timer
		// (one woken alone might leave before the retry is due).
		s.hints.JobsAvailable(orgID, row.QueueName, 0)
	} else {
		s.observer.JobsDeadLettered(row.QueueName, 1)
	}
	return out, nil
}

// RenewLease extends a held lease to leaseSecs from now.
func (s *Service) RenewLease(ctx context.Context, orgID string, ref LeaseRef, leaseSecs int) (time.Time, error) {
	id, err := s.leaseTarget(ref)
	if err != nil {
		return time.Time{}, err
	}
	secs, err := s.leaseSecs("lease_duration_secs", leaseSecs)
	if err != nil {
		return time.Time{}, err
	}
	row, err := s.q.JobRenewLease(ctx, s.jobs, queries.JobRenewLeaseParams{
		Now: s.clock.Now(), JobID: id, OrganizationID: orgID, WorkerID: ref.WorkerID,
		LeaseID: ref.LeaseID, LeaseSecs: int32(secs), Actor: events.ActorWorker(ref.WorkerID),
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, s.reject(ctx, orgID, id, ref, "renew_lease")
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("renew lease: %w", err)
	}
	if row.LeaseExpiresAt == nil {
		return time.Time{}, fmt.Errorf("renew lease: no expiry returned")
	}
	return *row.LeaseExpiresAt, nil
}

// leaseTarget validates a worker call's ids. A job id that is not a UUID
// names no job: it is refused like an unknown one.
func (s *Service) leaseTarget(ref LeaseRef) (uuid.UUID, error) {
	if err := validateWorkerID(ref.WorkerID); err != nil {
		return uuid.Nil, err
	}
	id, err := uuid.Parse(ref.JobID)
	if err != nil {
		return uuid.Nil, &LeaseError{Reason: "no such job"}
	}
	return id, nil
}

// reject explains a refused worker call and, when the job exists, records
// the attempt in its history.
func (s *Service) reject(ctx context.Context, orgID string, id uuid.UUID, ref LeaseRef, action string) error {
	st, err := s.q.JobLeaseState(ctx, s.pool, queries.JobLeaseStateParams{ID: id, OrganizationID: orgID})
	if errors.Is(err, pgx.ErrNoRows) {
		return &LeaseError{Reason: "no such job"}
	}
	if err != nil {
		return fmt.Errorf("read lease state: %w", err)
	}
	reason := leaseRefusal(st, ref, s.Now())
	_, err = s.q.JobRecordRejectedAttempt(ctx, s.pool, queries.JobRecordRejectedAttemptParams{
		Now: s.clock.Now(), JobID: id, OrganizationID: orgID, Actor: events.ActorWorker(ref.WorkerID),
		Action: action, WorkerID: ref.WorkerID, LeaseID: ref.LeaseID, Reason: reason,
	})
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("record rejected %s: %w", action, err)
	}
	return &LeaseError{JobFound: true, Reason: reason}
}

func leaseRefusal(st queries.JobLeaseStateRow, ref LeaseRef, now time.Time) string {
	switch {
	case st.Status != "processing":
		return "job is " + st.Status
	case st.AssignedWorkerID == nil || *st.AssignedWorkerID != ref.WorkerID:
		return "job is leased to another worker"
	case ref.LeaseID != nil && (st.LeaseID == nil || *st.LeaseID != *ref.LeaseID):
		return "lease_id is not the job's current lease"
	case st.LeaseExpiresAt != nil && !st.LeaseExpiresAt.After(now):
		return "lease expired at " + st.LeaseExpiresAt.UTC().Format(time.RFC3339Nano)
	default:
		return "lease changed while the call ran"
	}
}

// Expired is a job whose lease the reaper took back.
type Expired struct {
	ID        uuid.UUID
	OrgID     string
	QueueName string
	Status    string
}

// ExpireLeases releases up to max expired leases: each job retries at once
// while it has retries left, else it is dead-lettered.
func (s *Service) ExpireLeases(ctx context.Context, max int) ([]Expired, error) {
	return s.expireLeases(ctx, expireFilter{}, max)
}

// expireFilter narrows expireLeases to one worker's leases, expired or not.
type expireFilter struct {
	orgID    *string
	workerID *string
}

func (s *Service) expireLeases(ctx context.Context, f expireFilter, max int) ([]Expired, error) {
	p := queries.JobExpireLeasesParams{
		Now: s.clock.Now(), MaxJobs: int32(max), Actor: events.ActorSystem("lease_reaper"),
		Reason: "lease_expired", RetryError: "Lease expired (worker timeout)",
		ExhaustedError: "Max retries exceeded after lease expiration",
	}
	if f.workerID != nil {
		p.OrganizationID, p.WorkerID = f.orgID, f.workerID
		p.Actor, p.Reason = events.ActorSystem("worker_health"), "worker_offline"
		p.RetryError, p.ExhaustedError = "Worker went offline", "Max retries exceeded after worker went offline"
	}
	rows, err := s.q.JobExpireLeases(ctx, s.pool, p)
	if err != nil {
		return nil, fmt.Errorf("expire leases: %w", err)
	}
	out := make([]Expired, len(rows))
	// Retries after expiry may fall due later (backoff): every waiting
	// claim of the queue re-reads its timer.
	woken := map[[2]string]int{}
	for i, r := range rows {
		out[i] = Expired{ID: r.ID, OrgID: r.OrganizationID, QueueName: r.QueueName, Status: r.Status}
		if r.Status == "pending" {
			woken[[2]string{r.OrganizationID, r.QueueName}] = 0
		} else {
			s.observer.JobsDeadLettered(r.QueueName, 1)
		}
	}
	for k, n := range woken {
		s.hints.JobsAvailable(k[0], k[1], n)
	}
	return out, nil
}

// CompleteItem is one job of a batch completion.
type CompleteItem struct {
	Ref    LeaseRef
	Result json.RawMessage
}

// CompleteBatch completes many leased jobs in one statement. It returns,
// per item in order, nil or why the item was refused (a *LeaseError, as
// Complete gives, recorded in the job's history; or a validation error).
func (s *Service) CompleteBatch(ctx context.Context, orgID string, items []CompleteItem) ([]error, error) {
	if len(items) == 0 || len(items) > MaxBulkJobs {
		return nil, invalid("jobs", "length", "must hold 1 to %d jobs", MaxBulkJobs)
	}
	orgIDs := make([]string, len(items))
	for i := range orgIDs {
		orgIDs[i] = orgID
	}
	return s.completeBatch(ctx, orgIDs, items)
}

// completeBatch is CompleteBatch with item i in organization orgIDs[i]: one
// statement for items of any organizations. A job named twice is refused
// the second time. A statement error, which completed nothing, is an
// *unwrittenError.
func (s *Service) completeBatch(ctx context.Context, orgIDs []string, items []CompleteItem) ([]error, error) {
	out := make([]error, len(items))
	n := len(items)
	p := queries.JobCompleteBatchParams{Now: s.clock.Now(), JobIds: make([]uuid.UUID, 0, n),
		OrganizationIds: make([]string, 0, n), WorkerIds: make([]string, 0, n), LeaseIds: make([]uuid.UUID, 0, n),
		Results: make([]json.RawMessage, 0, n)}
	idx := make(map[uuid.UUID]int, n)
	for i, it := range items {
		id, err := s.leaseTarget(it.Ref)
		if err != nil {
			out[i] = err
			continue
		}
		if _, dup := idx[id]; dup {
			out[i] = invalid("jobs", "duplicate", "job %s is listed twice", id)
			continue
		}
		idx[id] = i
		lease := uuid.Nil
		if it.Ref.LeaseID != nil {
			lease = *it.Ref.LeaseID
		}
		p.JobIds = append(p.JobIds, id)
		p.OrganizationIds = append(p.OrganizationIds, orgIDs[i])
		p.WorkerIds = append(p.WorkerIds, it.Ref.WorkerID)
		p.LeaseIds = append(p.LeaseIds, lease)
		p.Results = append(p.Results, nullJSON(it.Result))
	}
	if len(p.JobIds) == 0 {
		return out, nil
	}
	rows, err := s.q.JobCompleteBatch(ctx, s.jobs, p)
	if err != nil {
		return nil, &unwrittenError{fmt.Errorf("complete jobs: %w", err)}
	}
	completed := make(map[uuid.UUID]bool, len(rows))
	for _, r := range rows {
		completed[r.ID] = true
		if r.StartedAt != nil {
			s.observer.JobCompleted(r.QueueName, r.CompletedAt.Sub(*r.StartedAt))
		}
	}
	for id, i := range idx {
		if !completed[id] {
			out[i] = s.reject(ctx, orgIDs[i], id, items[i].Ref, "complete")
		}
	}
	return out, nil
}

// completeReq is one single complete waiting for a group commit.
type completeReq struct {
	orgID string
	item  CompleteItem
}

// flushCompletes completes coalesced single completes, of any
// organizations, in one JobCompleteBatch. A job named by two requests in
// the window goes to a later statement, so each request gets its own
// answer. If a statement fails, nothing was completed, and each
// organization's requests are tried again on their own, so that one
// tenant's failure is not another's.
func (s *Service) flushCompletes(ctx context.Context, reqs []completeReq) []gcResult[error] {
	out := make([]gcResult[error], len(reqs))
	pending := make([]int, len(reqs))
	for i := range pending {
		pending[i] = i
	}
	for len(pending) > 0 {
		var now, later []int
		seen := map[string]bool{}
		for _, i := range pending {
			// One job may be spelled several ways (case, braces, urn:uuid:),
			// so requests are told apart by the id they parse to.
			id := reqs[i].item.Ref.JobID
			if u, err := uuid.Parse(id); err == nil {
				id = u.String()
			}
			if seen[id] {
				later = append(later, i)
			} else {
				seen[id] = true
				now = append(now, i)
			}
		}
		s.completeCoalesced(ctx, reqs, now, out)
		pending = later
	}
	return out
}

// completeCoalesced runs the requests idx (no job twice) in one statement
// (sharedThenPerOrg).
func (s *Service) completeCoalesced(ctx context.Context, reqs []completeReq, idx []int, out []gcResult[error]) {
	sharedThenPerOrg(idx, func(i int) string { return reqs[i].orgID }, func(idx []int) error {
		orgIDs, items := make([]string, len(idx)), make([]CompleteItem, len(idx))
		for n, i := range idx {
			orgIDs[n], items[n] = reqs[i].orgID, reqs[i].item
		}
		res, err := s.completeBatch(ctx, orgIDs, items)
		for n, i := range idx {
			if err != nil {
				out[i].res = err
			} else {
				out[i].res = res[n]
			}
		}
		return err
	})
}
