// Package commands owns every state change: it validates a request, runs the
// transition (one statement that appends the events and writes the
// synchronous projections together), and publishes wake-up hints only after
// the commit.
package commands

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spooled-go/spooled/internal/clock"
	"github.com/spooled-go/spooled/queries"
)

// Errors callers branch on. HTTP maps them to status codes in one place.
var (
	// ErrNotFound: no such resource in the caller's organization.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the resource exists but its state forbids the change.
	ErrConflict = errors.New("conflict")
	// ErrForbidden: the caller may not do this (registration closed, ...).
	ErrForbidden = errors.New("forbidden")
)

// LeaseError says why a worker's complete, fail or renewal was refused. The
// refusal is in the job's history by the time the caller sees it.
type LeaseError struct {
	JobFound bool
	Reason   string
}

func (e *LeaseError) Error() string { return "job not found or not owned by worker: " + e.Reason }

// ValidationError is a request that breaks a documented rule.
type ValidationError struct {
	Field   string
	Code    string
	Message string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Message }

func invalid(field, code, format string, args ...any) error {
	return &ValidationError{Field: field, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Hinter is told, after a commit, that n jobs of a queue became available
// (or changed when they fall due) for waiting claims to take; n <= 0 when
// the count is unknown (a queue resumed, its limits changed). Hints are best
// effort: losing one costs latency, never a job.
type Hinter interface {
	JobsAvailable(orgID, queueName string, n int)
}

// NoHints drops every hint.
type NoHints struct{}

// JobsAvailable does nothing.
func (NoHints) JobsAvailable(string, string, int) {}

// Defaults are what a request leaves out.
type Defaults struct {
	MaxRetries   int
	TimeoutSecs  int
	LeaseSecs    int
	MaxPayload   int
	KeyPrefix    string
	Registration string
	// RetentionMonths is how long the log keeps whole months (0: forever).
	RetentionMonths int
}

// Actor is who asks: the organization the credential belongs to, the name
// recorded in the log, and the organization's plan limits (nil: none, for
// the server's own callers).
type Actor struct {
	OrgID  string
	Name   string
	Limits *PlanLimits
}

// Service runs commands against one database.
type Service struct {
	pool *pgxpool.Pool
	// jobs runs the job path's statements (enqueue, claim, complete, fail,
	// renew); it is pool unless WithJobPool gives a smaller one.
	jobs     *pgxpool.Pool
	q        *queries.Queries
	clock    clock.Clock
	hints    Hinter
	defaults Defaults
	waiter   Waiter
	observer Observer
	poll     time.Duration
	// Group commit of single enqueues and completes (nil: each request
	// runs its own statement).
	enqGC *groupCommit[enqueueReq, EnqueueResult]
	cmpGC *groupCommit[completeReq, error]
	// Coalesced claims of one queue (nil: each claim runs alone).
	claims *claimGroup
	// Queues whose last claim here got its whole limit: their claims skip
	// the probe.
	busy busyQueues
	// Plan usage read recently, so creates far below a quota skip the count.
	quota *quotaMemo
	// statements is what coalesced statements run on (their callers'
	// departures do not cancel them); Close cancels it when the database
	// does not answer before its deadline.
	statements      context.Context
	abortStatements context.CancelFunc
}

// WithGroupCommit coalesces concurrent single enqueues and single completes
// into shared statements, with flushers statements in flight at once, and
// concurrent claims of one queue into one statement (claimGroup).
// Close stops it.
func WithGroupCommit(flushers int) Option {
	return func(s *Service) {
		// The observer is read when a statement runs: WithObserver may come
		// after this option.
		s.enqGC = newGroupCommit(flushers, MaxBulkJobs, s.flushEnqueues,
			func(n int) { s.observer.GroupCommitted("enqueue", n) }, s.statements)
		s.cmpGC = newGroupCommit(flushers, MaxBulkJobs, s.flushCompletes,
			func(n int) { s.observer.GroupCommitted("complete", n) }, s.statements)
		s.claims = newClaimGroup(s)
	}
}

// Close finishes the coalesced requests already submitted (group-committed
// enqueues and completes, queued claims) and stops taking more. If ctx ends
// first, because the database does not answer, their statements are
// cancelled: their callers get an error, their connections go back to the
// pool (so that closing it does not wait for them), and Close returns once
// they have ended. Nothing was answered for them, so nothing answered is
// lost.
func (s *Service) Close(ctx context.Context) error {
	defer s.abortStatements()
	if s.enqGC == nil {
		return nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.enqGC.close()
		s.cmpGC.close()
		s.claims.close()
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.abortStatements()
		<-done
		return fmt.Errorf("statements still running at shutdown were cancelled: %w", ctx.Err())
	}
}

// Option configures a Service.
type Option func(*Service)

// WithWaiter lets claims wait for hints (long polling), re-checking the
// database at least every poll interval in case a hint was lost.
func WithWaiter(w Waiter, poll time.Duration) Option {
	return func(s *Service) { s.waiter, s.poll = w, poll }
}

// WithJobPool runs the job path's statements on p: enqueues, claims,
// completes, fails and lease renewals. A pool of a few connections bounds
// how many of them are in flight, which on a busy database costs less CPU
// per job than letting each request take a connection of its own, and
// keeps them from waiting behind reads and admin calls on the main pool.
// The caller closes p after Close.
func WithJobPool(p *pgxpool.Pool) Option {
	return func(s *Service) {
		if p != nil {
			s.jobs = p
		}
	}
}

// WithObserver reports transitions to o (metrics) after their commit.
func WithObserver(o Observer) Option {
	return func(s *Service) { s.observer = o }
}

// New returns a Service. A nil clock means the database clock; nil hints
// means none are sent.
func New(pool *pgxpool.Pool, c clock.Clock, hints Hinter, d Defaults, opts ...Option) *Service {
	if c == nil {
		c = clock.Database{}
	}
	if hints == nil {
		hints = NoHints{}
	}
	s := &Service{pool: pool, jobs: pool, q: queries.New(), clock: c, hints: hints, defaults: d, observer: noObserver{}, quota: newQuotaMemo()}
	s.statements, s.abortStatements = context.WithCancel(context.Background())
	for _, o := range opts {
		o(s)
	}
	return s
}

// Pool is the database the service writes to.
func (s *Service) Pool() *pgxpool.Pool { return s.pool }

// Clock is the clock statements run at.
func (s *Service) Clock() clock.Clock { return s.clock }

// Now is the service's notion of the present, for checks made in Go.
func (s *Service) Now() time.Time {
	if t := s.clock.Now(); t != nil {
		return *t
	}
	return time.Now()
}

// hintQueues hints each queue with its count of jobs made available.
func (s *Service) hintQueues(orgID string, queues map[string]int) {
	for q, n := range queues {
		s.hints.JobsAvailable(orgID, q, n)
	}
}
