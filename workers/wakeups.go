package workers

import (
	"context"
	"sync"

	"github.com/spooled-go/spooled/internal/natsbus"
)

// Wakeups routes "a queue has work" hints to the claims waiting on it. A
// hint raised in this process reaches local waiters at once and is also
// published on NATS, where every other server instance's Wakeups receives
// it. It implements commands.Hinter and commands.Waiter.
type Wakeups struct {
	bus *natsbus.Bus // nil: local hints only

	mu      sync.Mutex
	waiters map[queueKey]map[*waiter]struct{}
	unsub   func()
	stopped bool
}

type queueKey struct{ org, queue string }

type waiter struct{ ch chan struct{} }

// NewWakeups returns a hub; bus may be nil.
func NewWakeups(bus *natsbus.Bus) *Wakeups {
	return &Wakeups{bus: bus, waiters: map[queueKey]map[*waiter]struct{}{}}
}

// Start subscribes to every hint on the bus. When the connection comes back
// after an outage, every waiter is woken: hints sent meanwhile were lost.
func (w *Wakeups) Start(context.Context) error {
	if w.bus == nil {
		return nil
	}
	unsub, err := w.bus.Subscribe(natsbus.HintWildcard, func(subject string, _ []byte) {
		if org, queue, ok := natsbus.ParseHintSubject(subject); ok {
			w.notifyLocal(org, queue)
		}
	})
	if err != nil {
		return err
	}
	unsubLog, err := w.bus.Subscribe(natsbus.LogWildcard, func(subject string, _ []byte) {
		if org, ok := natsbus.ParseLogSubject(subject); ok {
			w.notifyLocal(org, orgWide)
		}
	})
	if err != nil {
		unsub()
		return err
	}
	both := unsub
	unsub = func() { both(); unsubLog() }
	w.bus.OnConnectionChange(func(connected bool) {
		if connected {
			w.wakeAll()
		}
	})
	w.mu.Lock()
	w.unsub = unsub
	w.mu.Unlock()
	return nil
}

// Stop unsubscribes and releases every waiter: their channels are closed,
// and so is the channel of any later Wait, so waiting claims return at once
// instead of holding the shutdown drain until their wait runs out.
func (w *Wakeups) Stop(context.Context) error {
	w.mu.Lock()
	unsub := w.unsub
	w.unsub = nil
	w.stopped = true
	for k, set := range w.waiters {
		for wt := range set {
			close(wt.ch)
		}
		delete(w.waiters, k)
	}
	w.mu.Unlock()
	if unsub != nil {
		unsub()
	}
	return nil
}

// orgWide is the queue key of waiters for any event of an organization
// (log followers); queue names cannot be empty, so it never collides.
const orgWide = ""

// LogAdvanced says that an organization's log has new events: followers of
// that organization (on every instance, through NATS) read the next page.
func (w *Wakeups) LogAdvanced(org string) {
	w.notifyLocal(org, orgWide)
	if w.bus != nil {
		w.bus.Publish(natsbus.LogSubject(org), nil)
	}
}

// WaitLog registers a follower of an organization's log: the channel
// receives a signal when LogAdvanced runs anywhere, and is closed when the
// hub stops; cancel must be called.
func (w *Wakeups) WaitLog(org string) (<-chan struct{}, func()) { return w.Wait(org, orgWide) }

// JobsAvailable is called after a commit that makes work available (or
// changes when it becomes due) on a queue.
func (w *Wakeups) JobsAvailable(org, queue string) {
	w.notifyLocal(org, queue)
	if w.bus != nil {
		w.bus.Publish(natsbus.HintSubject(org, queue), nil)
	}
}

// Wait registers interest in a queue. The channel receives (at most one
// buffered signal) whenever a hint arrives, and is closed when the hub
// stops; cancel must be called.
func (w *Wakeups) Wait(org, queue string) (<-chan struct{}, func()) {
	k := queueKey{org, queue}
	wt := &waiter{ch: make(chan struct{}, 1)}
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		close(wt.ch)
		return wt.ch, func() {}
	}
	set := w.waiters[k]
	if set == nil {
		set = map[*waiter]struct{}{}
		w.waiters[k] = set
	}
	set[wt] = struct{}{}
	w.mu.Unlock()
	return wt.ch, func() {
		w.mu.Lock()
		delete(w.waiters[k], wt)
		if len(w.waiters[k]) == 0 {
			delete(w.waiters, k)
		}
		w.mu.Unlock()
	}
}

// Waiting is how many claims wait right now (tests, metrics).
func (w *Wakeups) Waiting() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, set := range w.waiters {
		n += len(set)
	}
	return n
}

// BusConnected reports whether hints cross instances right now.
func (w *Wakeups) BusConnected() bool { return w.bus != nil && w.bus.Connected() }

func (w *Wakeups) notifyLocal(org, queue string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for wt := range w.waiters[queueKey{org, queue}] {
		signal(wt.ch)
	}
}

func (w *Wakeups) wakeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, set := range w.waiters {
		for wt := range set {
			signal(wt.ch)
		}
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
