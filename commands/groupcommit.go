package commands

import (
	"context"
	"errors"
	"sync"
)

// groupCommit coalesces concurrent single-item writes into shared
// statements: many requests, one statement, one commit, each request
// answered only after that commit. Batches form naturally, with no timer:
// while a statement runs, requests queue up, and the next statement takes
// all that are waiting (up to max). Under light load a request goes alone
// at once; under heavy load commits carry many requests each.
type groupCommit[Req, Res any] struct {
	in      chan *gcCall[Req, Res]
	max     int
	flushes int
	run     func(ctx context.Context, reqs []Req) []gcResult[Res]
	// served hears how many requests each flush gathered (metrics).
	served func(requests int)
	// quit cancels the statements in flight (Service.Close, when the
	// database does not answer in time).
	quit context.Context

	// mu orders submissions before close: no request can enter the queue
	// after the flushers were told to stop.
	mu     sync.RWMutex
	closed bool
	stop   chan struct{}
	wg     sync.WaitGroup
}

type gcCall[Req, Res any] struct {
	ctx  context.Context
	req  Req
	done chan gcResult[Res]
}

type gcResult[Res any] struct {
	res Res
	err error
}

// ErrStopping answers the writes and claims that reach the service after
// it began to stop (Close): a request from a handler that outlived the
// HTTP drain. They are refused, not run: the pool is about to close.
var ErrStopping = errors.New("server is shutting down")

func newGroupCommit[Req, Res any](flushers, max int, run func(context.Context, []Req) []gcResult[Res], served func(int), quit context.Context) *groupCommit[Req, Res] {
	g := &groupCommit[Req, Res]{in: make(chan *gcCall[Req, Res], 4*max), max: max, flushes: flushers, run: run,
		served: served, quit: quit, stop: make(chan struct{})}
	for i := 0; i < flushers; i++ {
		g.wg.Add(1)
		go g.flusher()
	}
	return g
}

// do submits one request and waits for its statement's outcome.
func (g *groupCommit[Req, Res]) do(ctx context.Context, req Req) (Res, error) {
	c := &gcCall[Req, Res]{ctx: ctx, req: req, done: make(chan gcResult[Res], 1)}
	var zero Res
	g.mu.RLock()
	if g.closed {
		g.mu.RUnlock()
		return zero, ErrStopping
	}
	select {
	case g.in <- c:
		g.mu.RUnlock()
	case <-ctx.Done():
		g.mu.RUnlock()
		return zero, ctx.Err()
	}
	// Once submitted the request runs even if the caller gives up: its
	// outcome must not depend on whether anyone still listens.
	r := <-c.done
	return r.res, r.err
}

func (g *groupCommit[Req, Res]) flusher() {
	defer g.wg.Done()
	for {
		var first *gcCall[Req, Res]
		select {
		case first = <-g.in:
		case <-g.stop:
			// Drain what was already submitted, then end.
			for {
				select {
				case c := <-g.in:
					g.flush([]*gcCall[Req, Res]{c})
				default:
					return
				}
			}
		}
		batch := []*gcCall[Req, Res]{first}
	gather:
		for len(batch) < g.max {
			select {
			case c := <-g.in:
				batch = append(batch, c)
			default:
				break gather
			}
		}
		g.flush(batch)
	}
}

func (g *groupCommit[Req, Res]) flush(batch []*gcCall[Req, Res]) {
	g.served(len(batch))
	reqs := make([]Req, len(batch))
	for i, c := range batch {
		reqs[i] = c.req
	}
	// The statement runs on a context of its own: one caller giving up
	// must not cancel the others' commit. Only quit does.
	ctx, cancel := context.WithCancel(context.WithoutCancel(batch[0].ctx))
	defer cancel()
	defer context.AfterFunc(g.quit, cancel)()
	out := g.run(ctx, reqs)
	for i, c := range batch {
		c.done <- out[i]
	}
}

// close stops the flushers after the requests already submitted are done.
func (g *groupCommit[Req, Res]) close() {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.closed = true
	close(g.stop)
	g.mu.Unlock()
	g.wg.Wait()
}

// sharedThenPerOrg runs the coalesced requests idx of several organizations
// in one statement; run records each request's outcome. If that statement
// failed having written nothing (an *unwrittenError), each organization's
// requests run again in a statement of their own, so that one tenant's
// failure is not another's.
func sharedThenPerOrg(idx []int, orgOf func(i int) string, run func(idx []int) error) {
	var unwritten *unwrittenError
	if err := run(idx); err == nil || !errors.As(err, &unwritten) {
		return
	}
	var orgs []string
	byOrg := map[string][]int{}
	for _, i := range idx {
		org := orgOf(i)
		if byOrg[org] == nil {
			orgs = append(orgs, org)
		}
		byOrg[org] = append(byOrg[org], i)
	}
	if len(orgs) == 1 {
		return
	}
	for _, org := range orgs {
		_ = run(byOrg[org]) // each request holds its own outcome
	}
}
