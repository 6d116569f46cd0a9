package workers_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/spooled-go/spooled/internal/natsbus"
	"github.com/spooled-go/spooled/workers"
)

// sharedNATS is the machine's NATS server, which make test starts.
const sharedNATS = "nats://127.0.0.1:4222"

func openHub(t *testing.T) (*workers.Wakeups, *natsbus.Bus) {
	t.Helper()
	return openHubIn(t, "")
}

// openHubIn is openHub for a deployment with its own subject namespace
// ("" for the default).
func openHubIn(t *testing.T, namespace string) (*workers.Wakeups, *natsbus.Bus) {
	t.Helper()
	bus, err := natsbus.Open(natsbus.Config{URL: sharedNATS, ReconnectWait: 50 * time.Millisecond, Namespace: namespace,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "a connection to "+sharedNATS, bus.Connected)
	w := workers.NewWakeups(bus)
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = w.Stop(context.Background())
		bus.Close()
	})
	return w, bus
}

type waiting struct {
	ch     <-chan struct{}
	cancel func()
}

func waitN(w *workers.Wakeups, org, queue string, n int) []waiting {
	out := make([]waiting, n)
	for i := range out {
		out[i].ch, out[i].cancel = w.Wait(org, queue)
	}
	return out
}

// signalled counts the waiters holding a signal, reading them.
func signalled(ws []waiting) (n int, which []int) {
	for i, x := range ws {
		select {
		case <-x.ch:
			n++
			which = append(which, i)
		default:
		}
	}
	return n, which
}

// settle waits until hints published on from's connection have reached to:
// it publishes a marker hint for another queue, as if from a third
// instance, on the same connection and waits for it. NATS keeps one
// connection's order for each subscriber.
func settle(t *testing.T, from *natsbus.Bus, to *workers.Wakeups, org string) {
	t.Helper()
	settleIn(t, from, from.Subjects(), to, org)
}

// settleIn is settle for a receiver in another deployment: the marker goes
// to the subject in that deployment's namespace.
func settleIn(t *testing.T, from *natsbus.Bus, subjects natsbus.Subjects, to *workers.Wakeups, org string) {
	t.Helper()
	marker, cancel := to.Wait(org, "marker")
	defer cancel()
	from.Publish(subjects.Hint(org, "marker"), []byte("a-third-instance 1"))
	select {
	case <-marker:
	case <-time.After(5 * time.Second):
		t.Fatal("marker hint never arrived")
	}
}

// TestWakeupsWakeOnePerJob: a hint for n jobs wakes n of a queue's waiters,
// longest waiting first, on the instance that raised it (once: NATS does
// not send an instance its own hints) and on every other instance.
func TestWakeupsWakeOnePerJob(t *testing.T) {
	t.Parallel()
	a, busA := openHub(t)
	b, _ := openHub(t)
	org := "org_" + uuid.NewString()
	onA, onB := waitN(a, org, "q", 5), waitN(b, org, "q", 5)
	for _, x := range append(onA, onB...) {
		defer x.cancel()
	}

	a.JobsAvailable(org, "q", 2)
	settle(t, busA, b, org)
	if n, which := signalled(onA); n != 2 || which[0] != 0 || which[1] != 1 {
		t.Fatalf("raising instance woke %v, want the first two of five", which)
	}
	if n, which := signalled(onB); n != 2 || which[0] != 0 || which[1] != 1 {
		t.Fatalf("other instance woke %v, want the first two of five", which)
	}

	// Woken waiters went to the back of the line: the next hint wakes the
	// third.
	a.JobsAvailable(org, "q", 1)
	if n, which := signalled(onA); n != 1 || which[0] != 2 {
		t.Fatalf("second hint woke %v, want waiter 2", which)
	}

	// An unknown count wakes everyone.
	a.JobsAvailable(org, "q", 0)
	if n, _ := signalled(onA); n != 5 {
		t.Fatalf("a hint of unknown size woke %d of 5", n)
	}
}

// TestWakeupsIgnoreTheirOwnHints: the bus asks NATS not to send an
// instance its own messages, and a hint that carries the instance's own
// origin is ignored all the same (a server that echoes anyway, or a
// relay), since its waiters were woken when the hint was raised.
func TestWakeupsIgnoreTheirOwnHints(t *testing.T) {
	t.Parallel()
	a, _ := openHub(t)
	_, busB := openHub(t)
	org := "org_" + uuid.NewString()
	// What a publishes, as another connection sees it.
	heard := make(chan []byte, 1)
	unsub, err := busB.Subscribe(busB.Subjects().Hint(org, "q"), func(_ string, data []byte) {
		select {
		case heard <- append([]byte(nil), data...):
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	// busB's subscription is in place once a marker it sends reaches a.
	settle(t, busB, a, org)
	onA := waitN(a, org, "q", 3)
	for _, x := range onA {
		defer x.cancel()
	}

	a.JobsAvailable(org, "q", 1)
	var own []byte
	select {
	case own = <-heard:
	case <-time.After(5 * time.Second):
		t.Fatal("a's hint never reached another connection")
	}
	if n, which := signalled(onA); n != 1 || which[0] != 0 {
		t.Fatalf("raising the hint woke %v, want the first waiter", which)
	}
	// The same hint, origin and all, sent back to a from another
	// connection, followed by a marker on that connection.
	busB.Publish(busB.Subjects().Hint(org, "q"), own)
	settle(t, busB, a, org)
	if n, which := signalled(onA); n != 0 {
		t.Fatalf("a's own hint coming back woke %v", which)
	}
	// A hint from another instance is heard.
	busB.Publish(busB.Subjects().Hint(org, "q"), []byte("another-instance 1"))
	settle(t, busB, a, org)
	if n, _ := signalled(onA); n != 1 {
		t.Fatalf("another instance's hint woke %d waiters, want 1", n)
	}
}

// TestWakeupsPassOnUnreadSignal: a waiter that leaves without reading its
// signal hands it to one that has none, so the hinted job is not left to
// the fallback poll.
func TestWakeupsPassOnUnreadSignal(t *testing.T) {
	t.Parallel()
	w := workers.NewWakeups(nil)
	ws := waitN(w, "org", "q", 3)
	w.JobsAvailable("org", "q", 1) // wakes ws[0]
	ws[0].cancel()                 // ... which leaves without reading it
	if n, which := signalled(ws[1:]); n != 1 || which[0] != 0 {
		t.Fatalf("the unread signal went to %v, want the next waiter", which)
	}
	ws[1].cancel()
	ws[2].cancel()
	if got := w.Waiting(); got != 0 {
		t.Fatalf("%d waiters left after every cancel", got)
	}
	// A signal with nobody left to take it is simply dropped.
	ws = waitN(w, "org", "q", 1)
	w.JobsAvailable("org", "q", 3)
	ws[0].cancel()
	if got := w.Waiting(); got != 0 {
		t.Fatalf("%d waiters left", got)
	}
}

// TestWakeupsUnreadSignal: a waiter that read its signal and could not act
// on it (its claim failed) gives it back, and leaving hands it on; if it was
// signalled again meanwhile, the returned signal goes to another waiter at
// once, so no hint is lost.
func TestWakeupsUnreadSignal(t *testing.T) {
	t.Parallel()
	w := workers.NewWakeups(nil)
	ws := waitN(w, "org", "q", 3)
	w.JobsAvailable("org", "q", 1)
	if n, which := signalled(ws); n != 1 || which[0] != 0 {
		t.Fatalf("a hint for one job signalled %v, want the longest waiting", which)
	}
	w.Unread(ws[0].ch)
	if n, _ := signalled(ws[1:]); n != 0 {
		t.Fatal("Unread signalled another waiter while the first still holds its signal")
	}
	ws[0].cancel()
	if n, which := signalled(ws[1:]); n != 1 || which[0] != 0 {
		t.Fatalf("the given-back signal went to %v, want the next waiter", which)
	}

	// On another queue a lone waiter reads its signal, and a second hint
	// signals it again while its claim runs; the claim fails. Both jobs
	// need a claim: the given-back signal goes to a newcomer at once, the
	// unread one to the next when the waiter leaves.
	a := waitN(w, "org", "q2", 1)
	w.JobsAvailable("org", "q2", 1)
	if n, _ := signalled(a); n != 1 {
		t.Fatal("the lone waiter was not signalled")
	}
	w.JobsAvailable("org", "q2", 1)
	b := waitN(w, "org", "q2", 1)
	w.Unread(a[0].ch)
	if n, _ := signalled(b); n != 1 {
		t.Fatal("with the waiter signalled again, its given-back signal did not go to another at once")
	}
	c := waitN(w, "org", "q2", 1)
	a[0].cancel()
	if n, _ := signalled(append(b, c...)); n != 1 {
		t.Fatal("the waiter's unread second signal was not handed on when it left")
	}
	b[0].cancel()
	c[0].cancel()
	ws[1].cancel()

	// A channel the hub does not know (a waiter gone) is ignored.
	ws[2].cancel()
	w.Unread(ws[2].ch)
	if got := w.Waiting(); got != 0 {
		t.Fatalf("%d waiters left", got)
	}
}

// TestWakeupsStayInTheirNamespace: two deployments that share a NATS
// server under different subject namespaces never wake each other's
// claims or log followers; a third instance of the first deployment does
// hear it.
func TestWakeupsStayInTheirNamespace(t *testing.T) {
	t.Parallel()
	ns := "test" + strings.ReplaceAll(uuid.NewString(), "-", "")
	prod, busProd := openHubIn(t, ns+".prod")
	prod2, _ := openHubIn(t, ns+".prod")
	staging, busStaging := openHubIn(t, ns+".staging")
	org := "org_" + uuid.NewString()
	onStaging, onProd2 := waitN(staging, org, "q", 1), waitN(prod2, org, "q", 1)
	logStaging, stopLog := staging.WaitLog(org)
	defer stopLog()
	for _, x := range append(onStaging, onProd2...) {
		defer x.cancel()
	}

	prod.JobsAvailable(org, "q", 1)
	prod.LogAdvanced(org)
	settle(t, busProd, prod2, org) // prod's hints have reached prod2
	// A marker in staging's namespace, sent on prod's connection after
	// prod's hints: once staging has it, it has had every hint of prod's
	// it would ever get.
	settleIn(t, busProd, busStaging.Subjects(), staging, org)
	if n, _ := signalled(onProd2); n != 1 {
		t.Fatal("an instance of the same deployment missed the hint")
	}
	if n, _ := signalled(onStaging); n != 0 {
		t.Fatal("another deployment's hint woke a claim")
	}
	select {
	case <-logStaging:
		t.Fatal("another deployment's log hint woke a follower")
	default:
	}
}

// TestWakeupsCovered: a queue is covered while one of its waiters last
// read it empty and has not been signalled since; the signal of a hint,
// a waiter's own later read and its leaving each end that, and an
// instance whose bus is down covers nothing (hints from the others would
// not reach its waiters).
func TestWakeupsCovered(t *testing.T) {
	t.Parallel()
	w, bus := openHub(t)
	org := "org_" + uuid.NewString()
	covered := func() bool { _, ok := w.Covered(org, "q"); return ok }
	if covered() {
		t.Fatal("covered with no waiter")
	}
	ws := waitN(w, org, "q", 2)
	defer ws[1].cancel()
	if covered() {
		t.Fatal("covered by waiters that have read nothing")
	}
	w.Witness(ws[1].ch, false, time.Time{})
	if covered() {
		t.Fatal("covered by a waiter that found a ready job")
	}
	due := time.Now().Add(time.Hour).Truncate(time.Second)
	w.Witness(ws[0].ch, true, due)
	if got, ok := w.Covered(org, "q"); !ok || !got.Equal(due) {
		t.Fatalf("Covered = %v, %v; want the witness's next due time %v", got, ok, due)
	}
	if _, ok := w.Covered(org, "other"); ok {
		t.Fatal("another queue is covered")
	}

	// The hint signals the witness, the longest waiting: its read no
	// longer covers the job the hint announced.
	w.JobsAvailable(org, "q", 1)
	if n, which := signalled(ws); n != 1 || which[0] != 0 {
		t.Fatalf("hint woke %v, want the witness", which)
	}
	if covered() {
		t.Fatal("still covered by a signalled waiter")
	}
	w.Witness(ws[0].ch, true, time.Time{})
	if !covered() {
		t.Fatal("not covered by a waiter that read the queue empty again")
	}
	w.Witness(ws[0].ch, false, time.Time{})
	if covered() {
		t.Fatal("covered by a waiter awake to read again")
	}
	w.Witness(ws[0].ch, true, time.Time{})
	ws[0].cancel()
	if covered() {
		t.Fatal("covered by a waiter that left")
	}

	ws = waitN(w, org, "q", 1)
	defer ws[0].cancel()
	w.Witness(ws[0].ch, true, time.Time{})
	if !covered() {
		t.Fatal("not covered by a new witness")
	}
	bus.Close()
	waitUntil(t, "the queue to be uncovered with the bus down", func() bool { return !covered() })
}

// waitUntil polls cond until it holds, failing the test after five seconds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 5s for %s", what)
		}
	}
}
