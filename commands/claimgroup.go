package commands

import (
	"context"
	"sync"

	"github.com/spooled-go/spooled/queries"
)

// maxCoalescedJobs caps the jobs one coalesced claim statement may hand
// out, so a crowd of waiting requests is served in several statements
// rather than one huge one.
const maxCoalescedJobs = 1000

// claimsInFlight is how many claim statements of one queue may run at once:
// one alone caps a queue at one statement's jobs per statement time
// (about 14,000 jobs/s here); with two, one runs while the next gathers.
const claimsInFlight = 2

// claimGroup coalesces concurrent claims of the same queue: while
// claimsInFlight statements of a queue run, the next requests for that
// queue wait, and the next statement serves all of them at once
// (JobClaimMulti), dealing the picked jobs out in arrival order. A request
// that finds a free slot runs at once, alone (JobClaimOne, the same claim
// for a single request). Claims of one queue
// from many workers thus become fewer, larger statements: less planning,
// fewer commits, and no claimer walking past the rows another has just
// locked.
type claimGroup struct {
	s  *Service
	mu sync.Mutex
	// serving counts the goroutines running statements for queued
	// requests; idle is signalled when it drops to zero.
	serving int
	idle    *sync.Cond
	// queues holds the queues with claim statements in flight.
	queues map[claimKey]*claimQueue
	// closed: the server is stopping; no statement starts any more.
	closed bool
}

type claimQueue struct {
	running int          // statements in flight
	waiting []*claimCall // requests for the next statement
}

type claimKey struct{ org, queue string }

type claimCall struct {
	worker string
	limit  int
	secs   int
	done   chan claimResult
}

type claimResult struct {
	rows []queries.Job
	err  error
}

func newClaimGroup(s *Service) *claimGroup {
	g := &claimGroup{s: s, queues: map[claimKey]*claimQueue{}}
	g.idle = sync.NewCond(&g.mu)
	return g
}

// claim runs a claim request, alone if its queue is idle, else with the
// requests that arrive while the queue's current statement runs.
func (g *claimGroup) claim(ctx context.Context, orgID, queue, worker string, limit, secs int) ([]queries.Job, error) {
	k := claimKey{orgID, queue}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil, ErrStopping
	}
	q := g.queues[k]
	if q == nil {
		q = &claimQueue{}
		g.queues[k] = q
	}
	if q.running < claimsInFlight {
		q.running++
		g.mu.Unlock()
		// Deferred: a statement that panicked must still give its slot
		// back, or two such panics would leave every later claim of the
		// queue queued for good.
		defer g.next(k)
		return g.s.claimAlone(ctx, orgID, queue, worker, limit, secs)
	}
	c := &claimCall{worker: worker, limit: limit, secs: secs, done: make(chan claimResult, 1)}
	q.waiting = append(q.waiting, c)
	g.mu.Unlock()
	// Once queued the request is served even if its caller gives up, as a
	// claim whose client is gone is today: jobs it wins come back when
	// their lease expires.
	r := <-c.done
	return r.rows, r.err
}

// next runs after a statement of the queue ended: it starts one for the
// requests that queued meanwhile, or counts the statement out. The
// waiting requests' statement runs on a goroutine of its own, so the
// caller that ran the last statement returns at once.
func (g *claimGroup) next(k claimKey) {
	g.mu.Lock()
	q := g.queues[k]
	waiting := q.waiting
	if len(waiting) == 0 {
		if q.running--; q.running == 0 {
			delete(g.queues, k)
		}
		g.mu.Unlock()
		return
	}
	if g.closed {
		// Stopping: the requests still queued are answered, not run (the
		// pool is about to close).
		q.waiting = nil
		if q.running--; q.running == 0 {
			delete(g.queues, k)
		}
		g.mu.Unlock()
		for _, c := range waiting {
			c.done <- claimResult{err: ErrStopping}
		}
		return
	}
	take, jobs := 0, 0
	for take < len(waiting) && (take == 0 || jobs+waiting[take].limit <= maxCoalescedJobs) {
		jobs += waiting[take].limit
		take++
	}
	batch := waiting[:take:take]
	q.waiting = waiting[take:]
	g.serving++
	g.mu.Unlock()
	go func() {
		g.serve(k, batch)
		g.next(k)
		g.mu.Lock()
		if g.serving--; g.serving == 0 {
			g.idle.Broadcast()
		}
		g.mu.Unlock()
	}()
}

// close stops the group (at shutdown, after the HTTP server stopped taking
// requests) and returns once no statement runs for queued requests. From
// then on no statement starts: a claim from a handler that outlived the
// drain, or one still queued behind a running statement, is answered
// ErrStopping.
func (g *claimGroup) close() {
	g.mu.Lock()
	g.closed = true
	for g.serving > 0 {
		g.idle.Wait()
	}
	g.mu.Unlock()
}

// serve runs one statement for batch and answers each request. It runs on
// the service's statement context: no single caller's departure cancels
// the others' claim; only a Close that gave up waiting does.
func (g *claimGroup) serve(k claimKey, batch []*claimCall) {
	dealt, err := g.s.claimRequests(g.s.statements, k.org, k.queue, batch)
	for i, c := range batch {
		if err != nil {
			c.done <- claimResult{err: err}
			continue
		}
		c.done <- claimResult{rows: dealt[i]}
	}
}
