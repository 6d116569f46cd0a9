package workers

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/spooled-go/spooled/internal/natsbus"
)

// Wakeups routes "a queue has work" hints to the claims waiting on it. A
// hint raised in this process reaches local waiters at once and is also
// published on NATS, where every other server instance's Wakeups receives
// it. It implements commands.Hinter and commands.Waiter.
//
// A hint for n jobs wakes at most n of a queue's waiting claims, longest
// waiting first: waking every waiter for every job would send all of them
// to the database to race for one row (64 long-polling workers turned one
// enqueue into 64 claims). A woken claim that leaves before it reads its
// signal passes the signal on, so a hint's jobs never wait for the fallback
// poll while claims are waiting. A hint with n <= 0 (a queue resumed, its
// limits changed, NATS reconnected) wakes every waiter.
type Wakeups struct {
	bus    *natsbus.Bus // nil: local hints only
	origin string       // tags this instance's hints on NATS, so it skips its own echo

	mu      sync.Mutex
	waiters map[queueKey]*waitList
	// byCh finds a waiter by the channel Wait handed out (Witness).
	byCh    map[<-chan struct{}]*waiter
	unsub   func()
	stopped bool
}

type queueKey struct{ org, queue string }

// waitList is a queue's waiters in arrival order.
type waitList struct {
	first, last *waiter
	n           int
}

type waiter struct {
	ch         chan struct{}
	prev, next *waiter
	key        queueKey
	// witness: the claim waiting here last read its queue empty, and has
	// not been signalled since (see Covered); nextDue is when that read
	// said the queue's next waiting job falls due (zero: none waits).
	witness bool
	nextDue time.Time
}

// NewWakeups returns a hub; bus may be nil.
func NewWakeups(bus *natsbus.Bus) *Wakeups {
	return &Wakeups{bus: bus, origin: uuid.NewString(), waiters: map[queueKey]*waitList{},
		byCh: map[<-chan struct{}]*waiter{}}
}

// hintPayload carries a hint's origin and job count over NATS: "origin n".
func hintPayload(origin string, n int) []byte {
	return []byte(origin + " " + strconv.Itoa(n))
}

// parseHintPayload reads hintPayload; anything else counts as a hint of
// unknown size from another instance, which wakes every waiter.
func parseHintPayload(data []byte) (origin string, n int) {
	o, num, ok := strings.Cut(string(data), " ")
	if !ok {
		return "", 0
	}
	n, err := strconv.Atoi(num)
	if err != nil {
		return o, 0
	}
	return o, n
}

// Start subscribes to every hint on the bus. When the connection comes back
// after an outage, every waiter is woken: hints sent meanwhile were lost.
func (w *Wakeups) Start(context.Context) error {
	if w.bus == nil {
		return nil
	}
	subjects := w.bus.Subjects()
	unsub, err := w.bus.Subscribe(subjects.HintWildcard(), func(subject string, data []byte) {
		org, queue, ok := subjects.ParseHint(subject)
		if !ok {
			return
		}
		origin, n := parseHintPayload(data)
		if origin == w.origin {
			// Raised here: local waiters were woken when it was raised. The
			// bus asks NATS not to send it its own messages; the check stays
			// for a server that sends them anyway.
			return
		}
		w.notifyLocal(org, queue, n)
	})
	if err != nil {
		return err
	}
	unsubLog, err := w.bus.Subscribe(subjects.LogWildcard(), func(subject string, _ []byte) {
		if org, ok := subjects.ParseLog(subject); ok {
			w.notifyLocal(org, orgWide, 0)
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
	for k, l := range w.waiters {
		for wt := l.first; wt != nil; wt = wt.next {
			close(wt.ch)
		}
		delete(w.waiters, k)
	}
	clear(w.byCh)
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
	w.notifyLocal(org, orgWide, 0)
	if w.bus != nil {
		w.bus.Publish(w.bus.Subjects().Log(org), nil)
	}
}

// WaitLog registers a follower of an organization's log: the channel
// receives a signal when LogAdvanced runs anywhere, and is closed when the
// hub stops; cancel must be called.
func (w *Wakeups) WaitLog(org string) (<-chan struct{}, func()) { return w.Wait(org, orgWide) }

// JobsAvailable is called after a commit that makes n jobs available (or
// changes when they become due) on a queue; n <= 0 when the count is not
// known, which wakes every waiter of the queue.
func (w *Wakeups) JobsAvailable(org, queue string, n int) {
	w.notifyLocal(org, queue, n)
	if w.bus != nil {
		w.bus.Publish(w.bus.Subjects().Hint(org, queue), hintPayload(w.origin, n))
	}
}

// Wait registers interest in a queue. The channel receives at most one
// buffered signal when a hint picks this waiter, and is closed when the
// hub stops; cancel must be called, and passes on a signal the caller did
// not read.
func (w *Wakeups) Wait(org, queue string) (<-chan struct{}, func()) {
	k := queueKey{org, queue}
	wt := &waiter{ch: make(chan struct{}, 1), key: k}
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		close(wt.ch)
		return wt.ch, func() {}
	}
	l := w.waiters[k]
	if l == nil {
		l = &waitList{}
		w.waiters[k] = l
	}
	l.push(wt)
	w.byCh[wt.ch] = wt
	w.mu.Unlock()
	var once sync.Once
	return wt.ch, func() { once.Do(func() { w.leave(wt) }) }
}

// leave removes a waiter; a signal it was sent and never read goes to the
// next waiter that has none, so the hinted job still finds a claim.
func (w *Wakeups) leave(wt *waiter) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return // Stop closed the channel and dropped the lists
	}
	l := w.waiters[wt.key]
	l.remove(wt)
	delete(w.byCh, wt.ch)
	select {
	case <-wt.ch:
		l.wake(1)
	default:
	}
	if l.n == 0 {
		delete(w.waiters, wt.key)
	}
}

// Witness records whether the claim waiting on wake (a channel from Wait)
// found its queue without a ready job in the read it made before going to
// sleep, and when that read said the next waiting job falls due. A signal
// to that claim clears it.
func (w *Wakeups) Witness(wake <-chan struct{}, empty bool, nextDue time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if wt := w.byCh[wake]; wt != nil {
		wt.witness, wt.nextDue = empty && len(wt.ch) == 0, nextDue
	}
}

// Unread puts back the signal the claim waiting on wake read: its claim
// failed, so the hinted job is still there, and the cancel that follows
// hands the signal to the next waiter that has none (as for a signal never
// read). Without it, a covered waiter would sleep past the job until its
// deadline or the fallback poll.
func (w *Wakeups) Unread(wake <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if wt := w.byCh[wake]; wt != nil {
		select {
		case wt.ch <- struct{}{}:
		default:
			// Signalled again meanwhile: cancel passes that signal on,
			// and this one goes to another waiter now.
			w.waiters[wt.key].wake(1)
		}
	}
}

// Covered reports whether a claim of the queue arriving now may go to
// sleep without reading the database, and until when at most: a claim
// waits here that read the queue empty and has not been signalled since,
// and hints reach this instance (no bus, or a connected one). Every hint
// since that read then woke a claim of its own for each of its jobs,
// longest waiting first (or it would have woken that one), and that claim
// reads after the commit the hint follows; a job made to wait for a time
// comes with a hint that wakes every claim. The new claim would only race
// a woken one for its job. nextDue is when that read said the next
// waiting job falls due (zero: none waits), for the new claim's timer.
func (w *Wakeups) Covered(org, queue string) (nextDue time.Time, ok bool) {
	if w.bus != nil && !w.bus.Connected() {
		return time.Time{}, false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.waiters[queueKey{org, queue}]
	if l == nil {
		return time.Time{}, false
	}
	// Witnesses gather at the front of the line (the longest waiting); the
	// scan stops early so that a queue with thousands of waiters and none
	// of them a witness does not cost every arriving claim a walk of all.
	// A signalled waiter is no witness: wake clears the flag as it sends.
	n := 0
	for wt := l.first; wt != nil && n < maxCoverScan; wt, n = wt.next, n+1 {
		if wt.witness {
			return wt.nextDue, true
		}
	}
	return time.Time{}, false
}

// maxCoverScan is how many of a queue's waiters Covered looks at.
const maxCoverScan = 64

// Waiting is how many claims wait right now (tests, metrics).
func (w *Wakeups) Waiting() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, l := range w.waiters {
		n += l.n
	}
	return n
}

// BusConnected reports whether hints cross instances right now.
func (w *Wakeups) BusConnected() bool { return w.bus != nil && w.bus.Connected() }

// notifyLocal wakes up to n waiters of a queue in this process (every one
// when n <= 0).
func (w *Wakeups) notifyLocal(org, queue string, n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if l := w.waiters[queueKey{org, queue}]; l != nil {
		l.wake(n)
	}
}

func (w *Wakeups) wakeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range w.waiters {
		l.wake(0)
	}
}

func (l *waitList) push(wt *waiter) {
	wt.prev = l.last
	if l.last != nil {
		l.last.next = wt
	} else {
		l.first = wt
	}
	l.last = wt
	l.n++
}

func (l *waitList) remove(wt *waiter) {
	if wt.prev != nil {
		wt.prev.next = wt.next
	} else {
		l.first = wt.next
	}
	if wt.next != nil {
		wt.next.prev = wt.prev
	} else {
		l.last = wt.prev
	}
	wt.prev, wt.next = nil, nil
	l.n--
}

// wake signals up to n waiters (all when n <= 0), longest waiting first,
// skipping those that still hold an unread signal: they are on their way
// to the database already. A woken waiter moves to the back of the line.
func (l *waitList) wake(n int) {
	if n <= 0 || n > l.n {
		n = l.n
	}
	woken := make([]*waiter, 0, n)
	for wt := l.first; wt != nil && len(woken) < n; wt = wt.next {
		select {
		case wt.ch <- struct{}{}:
			wt.witness = false
			woken = append(woken, wt)
		default:
		}
	}
	for _, wt := range woken {
		l.remove(wt)
		l.push(wt)
	}
}
