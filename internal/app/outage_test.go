package app_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/spooled-go/spooled/internal/app"
	"github.com/spooled-go/spooled/internal/config"
	"github.com/spooled-go/spooled/internal/testdb"
)

// outagePoll is the fallback poll interval of the outage tests: long
// enough that a wake-up within wkHintLate can only be a hint, short enough
// that the claims made during the outage finish quickly.
const outagePoll = 5 * time.Second

// TestWakeOutageEmbeddedNATS: the embedded NATS server goes away. Health
// says so, waiting claims fall back to polling the database, no job is
// lost; when it comes back the bus reconnects and hints flow again.
//
// Two instances share the schema: a runs the embedded server, b connects to
// it as an external NATS. Jobs are enqueued on b and claimed on a, so a
// wake-up within 1 s can only have come over NATS (a hint raised in the
// same process also wakes local claims directly).
func TestWakeOutageEmbeddedNATS(t *testing.T) {
	t.Parallel()
	_, dbURL := testdb.NewWithURL(t, testdb.Options{})
	poll := func(c *config.Config) { c.WorkerFallbackPollInterval = outagePoll }
	a := wkStartApp(t, dbURL, nil, poll)
	if !a.Bus().Embedded() {
		t.Fatal("a has no embedded NATS")
	}
	natsURL := a.Bus().ClientURL()
	b := wkStartApp(t, dbURL, nil, func(c *config.Config) { poll(c); c.NATSURL = natsURL })
	wkOutageScenario(t, a, b,
		func() { a.Bus().StopEmbedded() },
		func() {
			if err := a.Bus().RestartEmbedded(); err != nil {
				t.Fatalf("restart embedded NATS: %v", err)
			}
		})
}

// TestWakeOutageNATSServer is the same outage with a real nats-server
// process, which the test kills and starts again on the same port. (The
// shared server on 4222 is left alone: other packages use it.)
func TestWakeOutageNATSServer(t *testing.T) {
	t.Parallel()
	port := wkFreePort(t)
	srv := &wkNATSServer{t: t, port: port}
	srv.start()
	t.Cleanup(srv.kill)
	natsURL := "nats://127.0.0.1:" + strconv.Itoa(port)

	_, dbURL := testdb.NewWithURL(t, testdb.Options{})
	cfg := func(c *config.Config) { c.WorkerFallbackPollInterval = outagePoll; c.NATSURL = natsURL }
	a := wkStartApp(t, dbURL, nil, cfg)
	b := wkStartApp(t, dbURL, nil, cfg)
	if a.Bus().Embedded() || b.Bus().Embedded() {
		t.Fatal("want both instances on the external NATS")
	}
	wkOutageScenario(t, a, b, srv.kill, srv.start)
}

// wkOutageScenario runs the outage story: claims wait on a, jobs are
// enqueued on b; stop takes NATS down, start brings it back.
func wkOutageScenario(t *testing.T, a, b *app.App, stop, start func()) {
	ca := wkNewOrg(t, wkNewAPI(t, a, ""))
	cb := wkNewAPI(t, b, ca.key)
	q := wkQueue("outage")

	connected := func(want bool) func() bool {
		return func() bool { return a.Bus().Connected() == want && b.Bus().Connected() == want }
	}
	wkEventually(t, 5*time.Second, "both instances connected to NATS", connected(true))

	// waitThenEnqueue starts a claim on a, enqueues on b 200 ms later and
	// returns the enqueue-to-claim latency.
	waitThenEnqueue := func(stage string, limit time.Duration) time.Duration {
		t.Helper()
		claim := ca.goClaim(q, "worker-a", 10000, 0)
		enq := make(chan wkEnqueued, 1)
		time.AfterFunc(200*time.Millisecond, func() {
			e := wkEnqueued{waiting: a.Wakeups().Waiting(), sent: time.Now()}
			e.id, e.err = cb.tryEnqueue(q, nil)
			enq <- e
		})
		r := wkAwaitClaim(t, claim, 12*time.Second)
		e := <-enq
		if e.err != nil {
			t.Fatal(e.err)
		}
		if e.waiting != 1 {
			t.Fatalf("%s: %d claims waiting on a when b enqueued, want 1", stage, e.waiting)
		}
		if len(r.jobs) != 1 || r.jobs[0].ID != e.id {
			t.Fatalf("%s: claim returned %v, want [%s]", stage, r.ids(), e.id)
		}
		latency := r.returned.Sub(e.sent)
		t.Logf("%s: claim on a returned the job enqueued on b after %s", stage, wkMS(latency))
		if latency > limit {
			t.Fatalf("%s: claim returned %s after the enqueue, want within %s", stage, latency, limit)
		}
		return latency
	}

	waitThenEnqueue("before the outage (hint over NATS)", wkHintLate)

	// The outage.
	down := time.Now()
	stop()
	wkEventually(t, 5*time.Second, "both instances see NATS down", connected(false))
	t.Logf("outage noticed by both instances %s after NATS was stopped", wkMS(time.Since(down)))
	for name, c := range map[string]*wkAPI{"a": ca, "b": cb} {
		if status, cache := c.health(t); status != "degraded" || cache {
			t.Fatalf("%s: /health status %q cache %v during the outage, want degraded and false", name, status, cache)
		}
	}

	// A waiting claim still gets a job, by polling the database.
	waitThenEnqueue("during the outage (fallback poll)", outagePoll+wkHintLate)

	// Nothing enqueued during the outage is lost.
	const n = 25
	want := map[string]bool{}
	for i := range n {
		c := cb
		if i%2 == 0 {
			c = ca
		}
		want[c.enqueue(t, q, nil)] = true
	}
	got := map[string]bool{}
	wkEventually(t, 10*time.Second, fmt.Sprintf("%d jobs enqueued during the outage claimed", n), func() bool {
		r := ca.claim(q, "worker-a", 0, 100)
		if r.err != nil {
			t.Fatal(r.err)
		}
		for _, id := range r.ids() {
			if got[id] {
				t.Fatalf("job %s claimed twice", id)
			}
			got[id] = true
		}
		return len(got) >= n
	})
	for id := range want {
		if !got[id] {
			t.Fatalf("job %s enqueued during the outage was never claimed", id)
		}
	}
	if len(got) != n {
		t.Fatalf("claimed %d jobs, want %d", len(got), n)
	}

	// Recovery.
	up := time.Now()
	start()
	wkEventually(t, 10*time.Second, "both instances reconnected to NATS", connected(true))
	t.Logf("reconnected %s after NATS came back", wkMS(time.Since(up)))
	for name, c := range map[string]*wkAPI{"a": ca, "b": cb} {
		if status, cache := c.health(t); status != "healthy" || !cache {
			t.Fatalf("%s: /health status %q cache %v after recovery, want healthy and true", name, status, cache)
		}
	}
	waitThenEnqueue("after recovery (hint over NATS)", wkHintLate)
}

// wkNATSServer is a nats-server child process on a fixed port.
type wkNATSServer struct {
	t      *testing.T
	port   int
	cmd    *exec.Cmd
	exited chan struct{}
	log    string // the process's output, for failures
}

func (s *wkNATSServer) start() {
	s.t.Helper()
	out, err := os.CreateTemp(s.t.TempDir(), "nats-server-*.log")
	if err != nil {
		s.t.Fatal(err)
	}
	defer out.Close()
	s.log = out.Name()
	s.cmd = exec.Command("/usr/sbin/nats-server", "-a", "127.0.0.1", "-p", strconv.Itoa(s.port))
	s.cmd.Stdout, s.cmd.Stderr = out, out
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start nats-server: %v", err)
	}
	exited := make(chan struct{})
	s.exited = exited
	go func(cmd *exec.Cmd) { _ = cmd.Wait(); close(exited) }(s.cmd)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = conn.Close()
			return
		}
		select {
		case <-exited:
			logged, _ := os.ReadFile(s.log)
			s.t.Fatalf("nats-server exited at start: %s", logged)
		case <-deadline.C:
			s.t.Fatalf("nats-server not listening on %s within 10s", addr)
		case <-tick.C:
		}
	}
}

// kill ends the process (SIGKILL: an abrupt outage) and waits for it.
func (s *wkNATSServer) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Kill()
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.t.Errorf("nats-server pid %d did not exit after SIGKILL", s.cmd.Process.Pid)
	}
}

// wkFreePort finds a port nobody listens on (by listening and closing).
func wkFreePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
