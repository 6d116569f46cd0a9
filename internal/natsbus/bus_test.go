package natsbus_test

import (
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/spooled-go/spooled/internal/natsbus"
)

var quiet = slog.New(slog.DiscardHandler)

// subjects is the default scheme, as a server without NATS_SUBJECT_PREFIX
// uses it.
var subjects, _ = natsbus.NewSubjects(natsbus.DefaultNamespace)

// queue names as users write them (letters, digits, '-', '_', '.'), plus
// the characters the escaping must protect even if validation loosens.
var awkwardQueues = []string{
	"emails", "emails.high", "a.b.c.d", "billing-v2_eu", "-_-", "x.", "trailing.dot.",
	"50%", "%", "%%", "%2E", "%2e", "a%2Eb", "100%.done", "%25", "%zz", "%4",
	"*", ">", "a.*", "a.>", "with space", "tab\tand\nnewline", "ünïcode.ä",
}

// TestHintSubjectRoundTrip: every queue name maps to a subject of exactly
// four valid tokens, and parses back to the same organization and queue.
func TestHintSubjectRoundTrip(t *testing.T) {
	orgs := []string{"0196a0c4-6f1e-7c55-9d3c-3f1c6e2b7a10", "default-org", "org.with.dots", "org%"}
	for _, org := range orgs {
		for _, q := range awkwardQueues {
			subject := subjects.Hint(org, q)
			tokens := strings.Split(subject, ".")
			if len(tokens) != 4 || tokens[0] != "spooled" || tokens[1] != "hints" {
				t.Fatalf("Hint(%q, %q) = %q: want spooled.hints.<org>.<queue>", org, q, subject)
			}
			for _, tok := range tokens {
				if tok == "" || strings.ContainsAny(tok, "*> \t\r\n") {
					t.Fatalf("Hint(%q, %q) = %q: token %q is not a literal NATS token", org, q, subject, tok)
				}
			}
			gotOrg, gotQ, ok := subjects.ParseHint(subject)
			if !ok || gotOrg != org || gotQ != q {
				t.Fatalf("ParseHint(%q) = (%q, %q, %v), want (%q, %q, true)", subject, gotOrg, gotQ, ok, org, q)
			}
		}
	}
	// Distinct names never share a subject.
	seen := map[string]string{}
	for _, q := range awkwardQueues {
		s := subjects.Hint("org", q)
		if prev, dup := seen[s]; dup {
			t.Fatalf("queues %q and %q share subject %q", prev, q, s)
		}
		seen[s] = q
	}
	if natsbus.Token("emails-v2_eu") != "emails-v2_eu" {
		t.Fatalf("plain names must stay readable, got %q", natsbus.Token("emails-v2_eu"))
	}
}

// TestSubjectNamespaces: a deployment's namespace prefixes every subject,
// and a scheme reads only its own namespace's subjects, so deployments
// that share a NATS cluster never take each other's hints.
func TestSubjectNamespaces(t *testing.T) {
	staging, err := natsbus.NewSubjects("staging.eu-1")
	if err != nil {
		t.Fatal(err)
	}
	h := staging.Hint("org.a", "emails.high")
	if !strings.HasPrefix(h, "staging.eu-1.hints.") {
		t.Fatalf("hint subject %q lacks the namespace", h)
	}
	if org, q, ok := staging.ParseHint(h); !ok || org != "org.a" || q != "emails.high" {
		t.Fatalf("ParseHint(%q) = (%q, %q, %v)", h, org, q, ok)
	}
	if _, _, ok := subjects.ParseHint(h); ok {
		t.Fatalf("the default scheme read staging's hint %q", h)
	}
	if _, _, ok := staging.ParseHint(subjects.Hint("org", "q")); ok {
		t.Fatal("staging read a hint of the default namespace")
	}
	if org, ok := staging.ParseLog(staging.Log("org.a")); !ok || org != "org.a" {
		t.Fatalf("log subject did not round-trip: %q %v", org, ok)
	}
	if _, ok := subjects.ParseLog(staging.Log("org")); ok {
		t.Fatal("the default scheme read staging's log hint")
	}
	for _, bad := range []string{"", ".", "a..b", "a.", ".a", "a b", "a*", "a>", "ä", strings.Repeat("x", 65)} {
		if _, err := natsbus.NewSubjects(bad); err == nil {
			t.Errorf("namespace %q accepted", bad)
		}
		if bad == "" {
			continue // Open takes "" for the default
		}
		if b, err := natsbus.Open(natsbus.Config{Namespace: bad, Logger: quiet}); err == nil {
			b.Close()
			t.Errorf("Open with namespace %q succeeded", bad)
		}
	}
}

func TestParseHintSubjectRefuses(t *testing.T) {
	for _, s := range []string{
		"", "spooled.hints", "spooled.hints.", "spooled.hints.org", "spooled.hints.org.",
		"spooled.hints..queue", "spooled.hints.org.a.b", "other.hints.org.queue", "spooled.hintsX.org.q",
	} {
		if org, q, ok := subjects.ParseHint(s); ok {
			t.Errorf("ParseHint(%q) = (%q, %q, true), want refused", s, org, q)
		}
	}
}

// FuzzHintSubjectRoundTrip: any non-empty queue name survives the trip.
func FuzzHintSubjectRoundTrip(f *testing.F) {
	for _, q := range awkwardQueues {
		f.Add("org", q)
	}
	f.Fuzz(func(t *testing.T, org, q string) {
		if org == "" || q == "" {
			t.Skip()
		}
		subject := subjects.Hint(org, q)
		gotOrg, gotQ, ok := subjects.ParseHint(subject)
		if !ok || gotOrg != org || gotQ != q {
			t.Fatalf("ParseHint(Hint(%q, %q) = %q) = (%q, %q, %v)", org, q, subject, gotOrg, gotQ, ok)
		}
	})
}

// collector records the subjects a subscription delivers, in order.
type collector struct {
	mu   sync.Mutex
	got  []string
	sign chan struct{}
	// markers are subjects of live handshakes, not part of what a test
	// checks.
	markers []string
}

func newCollector() *collector { return &collector{sign: make(chan struct{}, 1)} }

func (c *collector) add(subject string, _ []byte) {
	c.mu.Lock()
	c.got = append(c.got, subject)
	c.mu.Unlock()
	select {
	case c.sign <- struct{}{}:
	default:
	}
}

func (c *collector) subjects() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, s := range c.got {
		if !slices.Contains(c.markers, s) {
			out = append(out, s)
		}
	}
	return out
}

// waitFor waits until subject has been delivered.
func (c *collector) waitFor(t *testing.T, subject string, limit time.Duration) {
	t.Helper()
	deadline := time.After(limit)
	for {
		for _, s := range c.subjects() {
			if s == subject {
				return
			}
		}
		select {
		case <-c.sign:
		case <-deadline:
			t.Fatalf("%s not delivered within %s (got %v)", subject, limit, c.subjects())
		}
	}
}

// listen opens a second connection to the NATS at url (another instance,
// as far as the server knows) and subscribes it to subject. A bus does not
// hear its own publications, so what a bus publishes is checked here.
func listen(t *testing.T, url, subject string) *collector {
	t.Helper()
	l, err := natsbus.Open(natsbus.Config{URL: url, ReconnectWait: 50 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	until(t, 5*time.Second, "listener connected", l.Connected)
	c := newCollector()
	unsub, err := l.Subscribe(subject, c.add)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unsub)
	return c
}

// live publishes marker on pub until c hears it, so that c's subscription
// is in place on the server (subscribing is asynchronous); markers are
// left out of c.subjects().
func (c *collector) live(t *testing.T, pub *natsbus.Bus, marker string) {
	t.Helper()
	c.mu.Lock()
	c.markers = append(c.markers, marker)
	c.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for !c.heard(marker) {
		if time.Now().After(deadline) {
			t.Fatalf("marker %s never arrived", marker)
		}
		pub.Publish(marker, nil)
		select {
		case <-c.sign:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (c *collector) heard(subject string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Contains(c.got, subject)
}

// until polls cond every 5 ms, failing after limit.
func until(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(limit)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%s: not within %s", what, limit)
		}
	}
	return time.Since(start)
}

// TestHintSubjectsOverNATS: the escaped subjects are accepted by a real
// server and arrive on the wildcard subscription intact.
func TestHintSubjectsOverNATS(t *testing.T) {
	b, err := natsbus.Open(natsbus.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	c := listen(t, b.ClientURL(), b.Subjects().HintWildcard())
	c.live(t, b, subjects.Hint("marker-org", "marker"))
	for _, q := range awkwardQueues {
		b.Publish(subjects.Hint("org-1", q), nil)
	}
	last := subjects.Hint("org-1", awkwardQueues[len(awkwardQueues)-1])
	c.waitFor(t, last, 5*time.Second)
	got := c.subjects()
	if len(got) != len(awkwardQueues) {
		t.Fatalf("got %d hints, want %d: %v", len(got), len(awkwardQueues), got)
	}
	for i, s := range got {
		org, q, ok := subjects.ParseHint(s)
		if !ok || org != "org-1" || q != awkwardQueues[i] {
			t.Fatalf("hint %d: %q parsed to (%q, %q, %v), want queue %q", i, s, org, q, ok, awkwardQueues[i])
		}
	}
}

// TestPublishWhileDisconnected: with the server down, Publish returns at
// once and keeps nothing: after the reconnect, a hint published during the
// outage is never delivered, while one published after it is.
func TestPublishWhileDisconnected(t *testing.T) {
	b, err := natsbus.Open(natsbus.Config{ReconnectWait: 50 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	var changes []bool
	var mu sync.Mutex
	b.OnConnectionChange(func(up bool) { mu.Lock(); changes = append(changes, up); mu.Unlock() })

	c := listen(t, b.ClientURL(), "test.>")
	c.live(t, b, "test.ready")
	b.Publish("test.before", nil)
	c.waitFor(t, "test.before", 5*time.Second)

	b.StopEmbedded()
	noticed := until(t, 5*time.Second, "bus disconnected", func() bool { return !b.Connected() })
	t.Logf("disconnect noticed after %s", noticed)

	const n = 1000
	start := time.Now()
	for range n {
		b.Publish("test.lost", []byte("a hint nobody will get"))
	}
	took := time.Since(start)
	t.Logf("%d publishes while disconnected took %s", n, took)
	// A Publish that waited for the connection would take seconds for this
	// many; dropping takes microseconds each, and the bound leaves room for
	// a stall of the shared cores under the race detector.
	if took > time.Second {
		t.Fatalf("%d publishes while disconnected took %s: Publish must drop, not wait", n, took)
	}

	if err := b.RestartEmbedded(); err != nil {
		t.Fatal(err)
	}
	back := until(t, 10*time.Second, "bus reconnected", b.Connected)
	t.Logf("reconnected %s after the restart", back)
	// The listener reconnects too; once it hears the bus again, test.after
	// goes out. One connection's messages arrive in order: anything the bus
	// kept from the outage would have arrived before the marker.
	c.live(t, b, "test.ready-again")
	b.Publish("test.after", nil)
	c.waitFor(t, "test.after", 5*time.Second)
	got := c.subjects()
	if len(got) != 2 || got[0] != "test.before" || got[1] != "test.after" {
		t.Fatalf("delivered %v, want [test.before test.after] (nothing from the outage)", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(changes) != 2 || changes[0] || !changes[1] {
		t.Fatalf("connection changes %v, want [false true]", changes)
	}
}

// TestOpenUnreachableExternal: an external NATS that is not up yet does not
// fail Open or block Publish; the bus connects by itself once it is up.
func TestOpenUnreachableExternal(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()

	start := time.Now()
	b, err := natsbus.Open(natsbus.Config{URL: "nats://127.0.0.1:" + strconv.Itoa(port), ReconnectWait: 50 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatalf("Open with NATS down: %v", err)
	}
	t.Cleanup(b.Close)
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Open took %s with NATS down", took)
	}
	if b.Connected() || b.Embedded() {
		t.Fatalf("connected=%v embedded=%v, want neither", b.Connected(), b.Embedded())
	}
	up := make(chan bool, 4)
	b.OnConnectionChange(func(v bool) { up <- v })
	// A hundred publishes, so one scheduling hiccup on a busy machine does
	// not fail the test, while a Publish that waited even one reconnect
	// attempt (50 ms) each would take five seconds.
	const n = 100
	start = time.Now()
	for range n {
		b.Publish("test.void", nil)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("%d publishes with NATS down took %s: Publish must drop, not wait", n, took)
	}

	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("test NATS server did not start")
	}
	select {
	case v := <-up:
		if !v {
			t.Fatal("first connection change was a disconnect")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("bus did not connect once NATS came up")
	}
	if !b.Connected() {
		t.Fatal("Connected() false after the connect callback")
	}
	c := listen(t, "nats://127.0.0.1:"+strconv.Itoa(port), "test.>")
	c.live(t, b, "test.hello")
}

// TestBusDoesNotHearItself: the server does not send a bus its own
// publications (each instance acts on its hints locally when it raises
// them), while every other connection gets them.
func TestBusDoesNotHearItself(t *testing.T) {
	b, err := natsbus.Open(natsbus.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	self := newCollector()
	unsub, err := b.Subscribe("test.>", self.add)
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	other, err := natsbus.Open(natsbus.Config{URL: b.ClientURL(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	until(t, 5*time.Second, "second connection", other.Connected)
	heard := listen(t, b.ClientURL(), "test.>")
	heard.live(t, b, "test.ready")

	b.Publish("test.own", nil)
	heard.waitFor(t, "test.own", 5*time.Second)
	// test.own went out to every subscriber before the listener got it, so
	// an echo would reach b ahead of anything published after this point.
	self.live(t, other, "test.from-other")
	if got := self.subjects(); len(got) != 0 {
		t.Fatalf("the bus heard its own publications: %v", got)
	}
}
