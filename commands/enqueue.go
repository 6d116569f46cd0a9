package commands

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/spooled-go/spooled/queries"
)

// MaxBulkJobs is the most jobs one bulk call may carry.
const MaxBulkJobs = 100

// NewJob is one job to enqueue. Nil fields take the defaults.
type NewJob struct {
	QueueName         string
	Payload           json.RawMessage
	Priority          *int
	MaxRetries        *int
	TimeoutSeconds    *int
	ScheduledAt       *time.Time
	ExpiresAt         *time.Time
	Tags              json.RawMessage
	ParentJobID       *string
	CompletionWebhook *string
	IdempotencyKey    *string
}

// EnqueueResult is the outcome of one job of a batch, in input order.
// Created is false when the idempotency key already named a job; ID is then
// that job's. Err is set when only this item was refused (bulk defaults out
// of range).
type EnqueueResult struct {
	ID      uuid.UUID
	Created bool
	Err     error
}

const maxTagsBytes = 64 * 1024

// validateJob checks one job's fields. Its errors name the fields bare;
// for a bulk call's item, itemError places them.
func (s *Service) validateJob(j NewJob) error {
	if err := ValidateQueueName("queue_name", j.QueueName); err != nil {
		return err
	}
	if len(j.Payload) == 0 {
		return invalid("payload", "required", "is required")
	}
	if len(j.Payload) > s.defaults.MaxPayload {
		return &PayloadTooLargeError{Size: len(j.Payload), Limit: s.defaults.MaxPayload}
	}
	if j.Priority != nil {
		if err := checkRange("priority", *j.Priority, -100, 100); err != nil {
			return err
		}
	}
	if j.MaxRetries != nil {
		if err := checkRange("max_retries", *j.MaxRetries, 0, 100); err != nil {
			return err
		}
	}
	if j.TimeoutSeconds != nil {
		if err := checkRange("timeout_seconds", *j.TimeoutSeconds, 1, 86400); err != nil {
			return err
		}
	}
	for _, t := range []struct {
		field string
		at    *time.Time
	}{{"scheduled_at", j.ScheduledAt}, {"expires_at", j.ExpiresAt}} {
		// The log stores timestamps as JSON text; years outside 1..9999
		// would not read back as RFC 3339.
		if t.at != nil && (t.at.Year() < 1 || t.at.Year() > 9999) {
			return invalid(t.field, "range", "must be a timestamp between years 1 and 9999")
		}
	}
	if len(j.Tags) > maxTagsBytes {
		return invalid("tags", "length", "must be at most %d bytes", maxTagsBytes)
	}
	if j.IdempotencyKey != nil {
		if n := utf8.RuneCountInString(*j.IdempotencyKey); n == 0 || n > 255 {
			return invalid("idempotency_key", "length", "must be 1 to 255 characters")
		}
	}
	if j.CompletionWebhook != nil {
		u, err := url.Parse(*j.CompletionWebhook)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return invalid("completion_webhook", "url", "must be an http or https URL")
		}
	}
	if j.ParentJobID != nil {
		if _, err := uuid.Parse(*j.ParentJobID); err != nil {
			return invalid("parent_job_id", "not_found", "no such job")
		}
	}
	return nil
}

// PayloadTooLargeError is a payload over MAX_PAYLOAD_SIZE.
type PayloadTooLargeError struct{ Size, Limit int }

func (e *PayloadTooLargeError) Error() string {
	return fmt.Sprintf("payload is %d bytes; the limit is %d", e.Size, e.Limit)
}

// Enqueue validates and inserts jobs in one statement, then hints their
// queues. A job whose idempotency key is taken is not inserted; its result
// names the existing job. Any invalid job fails the whole call before
// anything is written.
func (s *Service) Enqueue(ctx context.Context, actor Actor, jobs []NewJob) ([]EnqueueResult, error) {
	if len(jobs) == 0 || len(jobs) > MaxBulkJobs {
		return nil, invalid("jobs", "length", "must hold 1 to %d jobs", MaxBulkJobs)
	}
	// A job alone is named bare in a refusal, a job of a batch by its item.
	place := func(i int, err error) error {
		if len(jobs) == 1 || i < 0 {
			return err
		}
		return itemError(i, err)
	}
	for i, j := range jobs {
		if err := s.validateJob(j); err != nil {
			return nil, place(i, err)
		}
	}
	if i, err := s.checkParents(ctx, actor.OrgID, jobs); err != nil {
		return nil, place(i, err)
	}
	if err := s.checkPlan(ctx, actor, jobs); err != nil {
		return nil, err
	}
	if s.enqGC != nil && len(jobs) == 1 {
		r, err := s.enqGC.do(ctx, enqueueReq{actor: actor, job: jobs[0]})
		if err != nil {
			return nil, err
		}
		return []EnqueueResult{r}, nil
	}
	return s.insert(ctx, sameActor(actor, len(jobs)), jobs)
}

// EnqueueBulk is Enqueue with per-item outcomes for items whose defaults put
// them out of range, as Spooled's bulk endpoint reports them.
func (s *Service) EnqueueBulk(ctx context.Context, actor Actor, jobs []NewJob) ([]EnqueueResult, error) {
	if len(jobs) == 0 || len(jobs) > MaxBulkJobs {
		return nil, invalid("jobs", "length", "must hold 1 to %d jobs", MaxBulkJobs)
	}
	results := make([]EnqueueResult, len(jobs))
	ok, okIdx := make([]NewJob, 0, len(jobs)), make([]int, 0, len(jobs))
	for i, j := range jobs {
		if err := s.validateJob(j); err != nil {
			err = itemError(i, err)
			if isDefaultField(err) {
				results[i].Err = err
				continue
			}
			return nil, err
		}
		ok = append(ok, j)
		okIdx = append(okIdx, i)
	}
	if len(ok) == 0 {
		return results, nil
	}
	// The REST bulk route sets no parents, but the call must not link a job
	// to another tenant's for any caller.
	if i, err := s.checkParents(ctx, actor.OrgID, ok); err != nil {
		if i >= 0 {
			err = itemError(okIdx[i], err)
		}
		return nil, err
	}
	// The whole batch is checked against the plan first, as in Spooled.
	if err := s.checkPlan(ctx, actor, ok); err != nil {
		return nil, err
	}
	part, err := s.insert(ctx, sameActor(actor, len(ok)), ok)
	if err != nil {
		return nil, err
	}
	for k, r := range part {
		results[okIdx[k]] = r
	}
	return results, nil
}

// isDefaultField reports whether a bulk item's error is a range error. The
// HTTP layer has already refused out-of-range values an item set itself, so
// what remains comes from the batch defaults, which Spooled reports per item.
func isDefaultField(err error) bool {
	v, ok := err.(*ValidationError)
	return ok && v.Code == "range"
}

// checkParents refuses jobs whose parent is not a job of the organization.
// It returns the first such job's index with its error, named bare for the
// caller to place, or -1 with an error of the lookup itself.
func (s *Service) checkParents(ctx context.Context, orgID string, jobs []NewJob) (int, error) {
	// ids[k] is the parent of jobs[at[k]] (validateJob parsed them).
	var ids []uuid.UUID
	var at []int
	for i, j := range jobs {
		if j.ParentJobID != nil {
			ids, at = append(ids, uuid.MustParse(*j.ParentJobID)), append(at, i)
		}
	}
	if len(ids) == 0 {
		return -1, nil
	}
	found, err := s.q.JobStatusByIDs(ctx, s.pool, queries.JobStatusByIDsParams{OrganizationID: orgID, Ids: ids})
	if err != nil {
		return -1, fmt.Errorf("look up parent jobs: %w", err)
	}
	seen := make(map[uuid.UUID]bool, len(found))
	for _, f := range found {
		seen[f.ID] = true
	}
	for k, id := range ids {
		if !seen[id] {
			return at[k], invalid("parent_job_id", "not_found", "no job %s in this organization", id)
		}
	}
	return -1, nil
}

// insert writes jobs in one statement, job i for actors[i] (more statements
// only to settle idempotency keys), then hints the queues of the jobs that
// are ready. The actors may belong to different organizations: coalesced
// single enqueues of many tenants share the statement and its commit. An
// error from the first statement, which wrote nothing, is an
// *unwrittenError.
func (s *Service) insert(ctx context.Context, actors []Actor, jobs []NewJob) ([]EnqueueResult, error) {
	n := len(jobs)
	results := make([]EnqueueResult, n)
	p, err := s.batchParams(actors, jobs)
	if err != nil {
		return nil, &unwrittenError{err}
	}

	// A key held by a transaction that then rolls back is free again, so the
	// insert is retried for keys that neither inserted nor resolved.
	pending := make([]int, n)
	for i := range pending {
		pending[i] = i
	}
	created := map[string]int{}
	createdByOrg := map[string]int64{}
	// hints counts each organization's queues' jobs ready now: a hint wakes
	// that many waiting claims. A scheduled job makes it -1 instead (wake
	// every waiter): each re-reads when the queue's next job falls due, and
	// the one that would have been woken alone may leave before then.
	hints := map[string]map[string]int{}
	for attempt := 0; attempt < 3 && len(pending) > 0; attempt++ {
		batch := subset(p, pending)
		rows, err := s.q.JobEnqueueBatch(ctx, s.jobs, batch)
		if err != nil {
			err = fmt.Errorf("enqueue jobs: %w", err)
			if attempt == 0 {
				return nil, &unwrittenError{err}
			}
			return nil, err
		}
		inserted := make(map[uuid.UUID]string, len(rows))
		for _, r := range rows {
			inserted[r.ID] = r.Status
		}
		// Keys to resolve, by organization: a key is unique per organization.
		var orgs []string
		unresolved := map[string][]int{}
		for _, i := range pending {
			if status, ok := inserted[p.Ids[i]]; ok {
				results[i] = EnqueueResult{ID: p.Ids[i], Created: true}
				org, q := p.OrganizationIds[i], p.QueueNames[i]
				created[q]++
				createdByOrg[org]++
				h := hints[org]
				if h == nil {
					h = map[string]int{}
					hints[org] = h
				}
				switch {
				case status == "scheduled":
					h[q] = -1
				case h[q] >= 0:
					h[q]++
				}
				continue
			}
			org := p.OrganizationIds[i]
			if unresolved[org] == nil {
				orgs = append(orgs, org)
			}
			unresolved[org] = append(unresolved[org], i)
		}
		pending = pending[:0]
		for _, org := range orgs {
			idx := unresolved[org]
			keys := make([]string, len(idx))
			for k, i := range idx {
				keys[k] = valueAt(p.IdempotencyKeys, i)
			}
			existing, err := s.q.JobIDsByIdempotencyKeys(ctx, s.jobs, queries.JobIDsByIdempotencyKeysParams{
				OrganizationID: org, Keys: keys,
			})
			if err != nil {
				return nil, fmt.Errorf("resolve idempotency keys: %w", err)
			}
			byKey := make(map[string]uuid.UUID, len(existing))
			for _, e := range existing {
				byKey[e.IdempotencyKey] = e.ID
			}
			for _, i := range idx {
				if id, ok := byKey[valueAt(p.IdempotencyKeys, i)]; ok {
					results[i] = EnqueueResult{ID: id, Created: false}
					continue
				}
				pending = append(pending, i)
			}
		}
	}
	if len(pending) > 0 {
		return nil, fmt.Errorf("enqueue jobs: %d idempotency keys neither inserted nor found after retries", len(pending))
	}
	for org, h := range hints {
		s.hintQueues(org, h)
	}
	for org, n := range createdByOrg {
		s.quota.add(org, n, n)
	}
	for q, n := range created {
		s.observer.JobsEnqueued(q, n)
	}
	return results, nil
}

// unwrittenError is an enqueue that failed before writing anything: running
// its jobs again cannot duplicate one.
type unwrittenError struct{ err error }

func (e *unwrittenError) Error() string { return e.err.Error() }
func (e *unwrittenError) Unwrap() error { return e.err }

// sameActor is n copies of actor: the actors of one call's jobs.
func sameActor(actor Actor, n int) []Actor {
	out := make([]Actor, n)
	for i := range out {
		out[i] = actor
	}
	return out
}

// batchParams lays jobs out as the enqueue statement's parallel arrays,
// minting each a UUIDv7. An optional column that no job of the batch sets
// is left nil, which the statement reads as NULL on every row: most
// batches set none of them, and ten arrays of zero values cost Postgres
// about a microsecond a job to decode. A column some job sets is made in
// full, its zero value (-1 for the retry and timeout overrides) standing
// for "not set".
func (s *Service) batchParams(actors []Actor, jobs []NewJob) (queries.JobEnqueueBatchParams, error) {
	n := len(jobs)
	p := queries.JobEnqueueBatchParams{
		Now:                s.clock.Now(),
		DefaultMaxRetries:  int32(s.defaults.MaxRetries),
		DefaultTimeoutSecs: int32(s.defaults.TimeoutSecs),
		Ids:                make([]uuid.UUID, n),
		OrganizationIds:    make([]string, n),
		Actors:             make([]string, n),
		QueueNames:         make([]string, n),
		Payloads:           make([]json.RawMessage, n),
	}
	for i, j := range jobs {
		id, err := uuid.NewV7()
		if err != nil {
			return p, fmt.Errorf("mint job id: %w", err)
		}
		p.Ids[i] = id
		p.OrganizationIds[i], p.Actors[i] = actors[i].OrgID, actors[i].Name
		p.QueueNames[i] = j.QueueName
		p.Payloads[i] = j.Payload
		if j.Priority != nil && *j.Priority != 0 {
			setColumn(&p.Priorities, n, 0, i, int32(*j.Priority))
		}
		// Left out (-1): the queue's configured default applies.
		if j.MaxRetries != nil {
			setColumn(&p.MaxRetries, n, -1, i, int32(*j.MaxRetries))
		}
		if j.TimeoutSeconds != nil {
			setColumn(&p.TimeoutSeconds, n, -1, i, int32(*j.TimeoutSeconds))
		}
		if j.ScheduledAt != nil {
			setColumn(&p.ScheduledAts, n, time.Time{}, i, *j.ScheduledAt)
		}
		if j.ExpiresAt != nil {
			setColumn(&p.ExpiresAts, n, time.Time{}, i, *j.ExpiresAt)
		}
		if tags := nullJSON(j.Tags); tags != nil {
			setColumn(&p.Tags, n, nil, i, tags)
		}
		if j.ParentJobID != nil {
			setColumn(&p.ParentJobIds, n, uuid.UUID{}, i, uuid.MustParse(*j.ParentJobID))
		}
		if j.CompletionWebhook != nil && *j.CompletionWebhook != "" {
			setColumn(&p.CompletionWebhooks, n, "", i, *j.CompletionWebhook)
		}
		if j.IdempotencyKey != nil && *j.IdempotencyKey != "" {
			setColumn(&p.IdempotencyKeys, n, "", i, *j.IdempotencyKey)
		}
	}
	return p, nil
}

// setColumn sets row i of an optional column of n rows, making the column
// first (every row unset) if no row before set it.
func setColumn[T any](col *[]T, n int, unset T, i int, v T) {
	if *col == nil {
		*col = make([]T, n)
		for k := range *col {
			(*col)[k] = unset
		}
	}
	(*col)[i] = v
}

// valueAt is row i of an optional column, or the zero value when no row
// of the batch set the column.
func valueAt[T any](col []T, i int) T {
	if col == nil {
		var zero T
		return zero
	}
	return col[i]
}

// subset picks the rows idx of a batch.
func subset(p queries.JobEnqueueBatchParams, idx []int) queries.JobEnqueueBatchParams {
	if len(idx) == len(p.Ids) {
		return p
	}
	out := p
	out.Ids, out.QueueNames, out.Payloads = pick(p.Ids, idx), pick(p.QueueNames, idx), pick(p.Payloads, idx)
	out.OrganizationIds, out.Actors = pick(p.OrganizationIds, idx), pick(p.Actors, idx)
	out.Priorities, out.MaxRetries, out.TimeoutSeconds = pick(p.Priorities, idx), pick(p.MaxRetries, idx), pick(p.TimeoutSeconds, idx)
	out.ScheduledAts, out.ExpiresAts, out.Tags = pick(p.ScheduledAts, idx), pick(p.ExpiresAts, idx), pick(p.Tags, idx)
	out.ParentJobIds, out.CompletionWebhooks = pick(p.ParentJobIds, idx), pick(p.CompletionWebhooks, idx)
	out.IdempotencyKeys, out.ReplayOf = pick(p.IdempotencyKeys, idx), pick(p.ReplayOf, idx)
	return out
}

// pick is the rows idx of a column; a column left nil (no row set it)
// stays nil.
func pick[T any](s []T, idx []int) []T {
	if s == nil {
		return nil
	}
	out := make([]T, len(idx))
	for k, i := range idx {
		out[k] = s[i]
	}
	return out
}

func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// nullJSON turns an absent or JSON-null value into SQL NULL, so that the read
// model and the fold of the log agree on what "no value" is.
func nullJSON(v json.RawMessage) json.RawMessage {
	if len(v) == 0 || string(v) == "null" {
		return nil
	}
	return v
}

// enqueueReq is one single enqueue waiting for a group commit.
type enqueueReq struct {
	actor Actor
	job   NewJob
}

// flushEnqueues inserts coalesced single enqueues, of any organizations,
// in one statement. If that statement fails, nothing was written, and each
// organization's requests are tried again in a statement of their own, so
// that one tenant's failure is not another's.
func (s *Service) flushEnqueues(ctx context.Context, reqs []enqueueReq) []gcResult[EnqueueResult] {
	out := make([]gcResult[EnqueueResult], len(reqs))
	all := make([]int, len(reqs))
	for i := range all {
		all[i] = i
	}
	sharedThenPerOrg(all, func(i int) string { return reqs[i].actor.OrgID }, func(idx []int) error {
		actors, jobs := make([]Actor, len(idx)), make([]NewJob, len(idx))
		for n, i := range idx {
			actors[n], jobs[n] = reqs[i].actor, reqs[i].job
		}
		res, err := s.insert(ctx, actors, jobs)
		for n, i := range idx {
			if err != nil {
				out[i] = gcResult[EnqueueResult]{err: err}
			} else {
				out[i] = gcResult[EnqueueResult]{res: res[n]}
			}
		}
		return err
	})
	return out
}
