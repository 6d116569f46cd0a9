package app_test

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/spooled-go/spooled/internal/config"
	"github.com/spooled-go/spooled/internal/testdb"
)

// wkEnqueued is an enqueue run from a timer, and when it ran.
type wkEnqueued struct {
	id           string
	err          error
	waiting      int // claims waiting when the enqueue was sent
	sent, answer time.Time
	due          time.Time // scheduled_at, when one was sent
}

// TestWakeByHint: a claim waiting on an empty queue returns the job
// enqueued 200 ms later at once, not at the 30 s fallback poll nor empty at
// its own deadline 4.8 s after the enqueue. The bound (wkHintLate) only has
// to tell a hint from those; a hint takes milliseconds when the machine is
// idle.
func TestWakeByHint(t *testing.T) {
	t.Parallel()
	_, dbURL := testdb.NewWithURL(t, testdb.Options{})
	a := wkStartApp(t, dbURL, nil, nil)
	if !a.Bus().Embedded() || !a.Bus().Connected() {
		t.Fatalf("want a connected embedded NATS, embedded=%v connected=%v", a.Bus().Embedded(), a.Bus().Connected())
	}
	c := wkNewOrg(t, wkNewAPI(t, a, ""))
	q := wkQueue("hinted")

	claim := c.goClaim(q, "worker-1", 5000, 0)
	enq := make(chan wkEnqueued, 1)
	time.AfterFunc(200*time.Millisecond, func() {
		e := wkEnqueued{waiting: a.Wakeups().Waiting(), sent: time.Now()}
		e.id, e.err = c.tryEnqueue(q, nil)
		e.answer = time.Now()
		enq <- e
	})
	r := wkAwaitClaim(t, claim, 6*time.Second)
	var e wkEnqueued
	select {
	case e = <-enq:
	case <-time.After(5 * time.Second):
		t.Fatal("enqueue did not finish")
	}
	if e.err != nil {
		t.Fatal(e.err)
	}
	if e.waiting != 1 {
		t.Fatalf("%d claims were waiting when the job was enqueued, want 1 (the test would not test waking)", e.waiting)
	}
	if len(r.jobs) != 1 || r.jobs[0].ID != e.id {
		t.Fatalf("claim returned %v, want [%s]", r.ids(), e.id)
	}
	latency := r.returned.Sub(e.sent)
	t.Logf("hint wake-up: claim returned %s after the enqueue was sent (%s after its 201); claim lasted %s",
		wkMS(latency), wkMS(r.returned.Sub(e.answer)), wkMS(r.returned.Sub(r.started)))
	if latency > wkHintLate {
		t.Fatalf("claim returned %s after the enqueue; want within %s (the fallback poll is 30s)", latency, wkHintLate)
	}
	wkEventually(t, 2*time.Second, "waiter released", func() bool { return a.Wakeups().Waiting() == 0 })
}

// wkHintLate is the most a waiting claim may return after the enqueue that
// hints it: far below the fallback polls and claim deadlines the tests set,
// and loose enough for two cores shared with the rest of the suite under
// the race detector (a stall of over 600 ms has been seen there).
const wkHintLate = 2 * time.Second

// wkShiftedClock runs at real speed, shifted by an offset the test moves: it
// makes a minute of retry backoff pass in a moment while the claim's due
// time timer still counts real time.
type wkShiftedClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *wkShiftedClock) Now() *time.Time {
	c.mu.Lock()
	t := time.Now().Add(c.off).UTC().Truncate(time.Microsecond)
	c.mu.Unlock()
	return &t
}

func (c *wkShiftedClock) shift(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

func (c *wkShiftedClock) offset() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.off
}

// wkDueTolerance allows for the Go and Postgres clocks reading a little apart
// (same host) and timestamp truncation.
const wkDueTolerance = 20 * time.Millisecond

// wkDueWait is the wait_ms of TestWakeWhenDue's claims and wkDueLate the
// most a claim may return after its job fell due. The job falls due about
// 1.5 s into the wait: a claim that had no timer for it would come back
// empty at its own deadline, 6.5 s after the due time (the fallback poll is
// 30 s), so any bound well short of that tells the timer from the deadline.
// It is loose on purpose: the timer fires at the due time, and what follows
// (a probe, a claim, the HTTP answer) has taken over 600 ms on two cores
// shared with the rest of the suite under the race detector. How fast a
// woken claim starts its job is the benchmark's to measure, not a test's.
const (
	wkDueWait = 8000
	wkDueLate = 3 * time.Second
)

// TestWakeWhenDue: with the fallback poll at 30 s, a waiting claim still
// returns a job soon after its due time, long before its own deadline: the
// claim sets a timer for the queue's next due job.
func TestWakeWhenDue(t *testing.T) {
	t.Parallel()
	_, dbURL := testdb.NewWithURL(t, testdb.Options{})
	a := wkStartApp(t, dbURL, nil, nil)
	c := wkNewOrg(t, wkNewAPI(t, a, ""))

	checkDue := func(t *testing.T, r wkClaimResult, id string, due time.Time) {
		t.Helper()
		if len(r.jobs) != 1 || r.jobs[0].ID != id {
			t.Fatalf("claim returned %v, want [%s]", r.ids(), id)
		}
		late := r.returned.Sub(due)
		t.Logf("claim returned %s after the job fell due (claim lasted %s)", wkMS(late), wkMS(r.returned.Sub(r.started)))
		if late < -wkDueTolerance {
			t.Fatalf("claim returned the job %s before it was due", -late)
		}
		if late > wkDueLate {
			t.Fatalf("claim returned %s after the job fell due; want within %s (its deadline was %s after)",
				late, wkDueLate, wkMS(r.started.Add(wkDueWait*time.Millisecond).Sub(due)))
		}
	}

	t.Run("scheduled before the claim", func(t *testing.T) {
		t.Parallel()
		q := wkQueue("scheduled")
		due := time.Now().Add(1500 * time.Millisecond)
		id := c.enqueue(t, q, map[string]any{"scheduled_at": due.UTC().Format(time.RFC3339Nano)})
		r := wkAwaitClaim(t, c.goClaim(q, "worker-1", wkDueWait, 0), 12*time.Second)
		checkDue(t, r, id, due)
	})

	t.Run("scheduled while the claim waits", func(t *testing.T) {
		t.Parallel()
		// The claim first sleeps with no due time (30 s fallback); the
		// enqueue's hint makes it read the new job's due time.
		q := wkQueue("scheduled-later")
		claim := c.goClaim(q, "worker-1", wkDueWait, 0)
		enq := make(chan wkEnqueued, 1)
		time.AfterFunc(200*time.Millisecond, func() {
			e := wkEnqueued{waiting: a.Wakeups().Waiting(), sent: time.Now()}
			e.due = e.sent.Add(1500 * time.Millisecond)
			e.id, e.err = c.tryEnqueue(q, map[string]any{"scheduled_at": e.due.UTC().Format(time.RFC3339Nano)})
			enq <- e
		})
		r := wkAwaitClaim(t, claim, 12*time.Second)
		e := <-enq
		if e.err != nil {
			t.Fatal(e.err)
		}
		if e.waiting < 1 {
			t.Fatal("the claim was not waiting when the job was enqueued")
		}
		checkDue(t, r, e.id, e.due)
	})

	t.Run("retry after backoff", func(t *testing.T) {
		t.Parallel()
		// Backoff is at least a minute; a clock shifted forward makes the
		// retry fall due 1.5 s from now without waiting that minute.
		_, dbURL := testdb.NewWithURL(t, testdb.Options{})
		clk := &wkShiftedClock{}
		a := wkStartApp(t, dbURL, clk, func(c *config.Config) { c.LeaseReaperInterval = time.Hour })
		c := wkNewOrg(t, wkNewAPI(t, a, ""))
		q := wkQueue("retry")
		id := c.enqueue(t, q, nil)
		first := wkAwaitClaim(t, c.goClaim(q, "worker-1", 0, 0), 5*time.Second)
		if len(first.jobs) != 1 || first.jobs[0].ID != id {
			t.Fatalf("first claim: %v, want [%s]", first.ids(), id)
		}
		failed := c.must(t, 200, "POST", "/api/v1/jobs/"+id+"/fail", map[string]any{"worker_id": "worker-1", "error": "boom"})
		if failed["will_retry"] != true {
			t.Fatalf("fail: %v, want will_retry", failed)
		}
		next, err := time.Parse(time.RFC3339Nano, failed["next_retry_at"].(string))
		if err != nil {
			t.Fatalf("next_retry_at: %v", err)
		}
		// Not claimable during the backoff.
		if r := c.claim(q, "worker-2", 0, 0); r.err != nil || len(r.jobs) != 0 {
			t.Fatalf("claim during backoff: %v %v", r.ids(), r.err)
		}
		clk.shift(next.Sub(*clk.Now()) - 1500*time.Millisecond)
		due := next.Add(-clk.offset()) // in real time
		r := wkAwaitClaim(t, c.goClaim(q, "worker-2", wkDueWait, 0), 12*time.Second)
		checkDue(t, r, id, due)
		job := c.must(t, 200, "GET", "/api/v1/jobs/"+id, nil)
		if job["retry_count"] != float64(1) || job["assigned_worker_id"] != "worker-2" {
			t.Fatalf("job after retry claim: retry_count=%v worker=%v", job["retry_count"], job["assigned_worker_id"])
		}
	})
}

// TestWakeWaitMSBadInput: wait_ms outside 0..30000 or not an integer is a
// 400 with Spooled's error body, and leaves nothing waiting.
func TestWakeWaitMSBadInput(t *testing.T) {
	t.Parallel()
	_, dbURL := testdb.NewWithURL(t, testdb.Options{})
	a := wkStartApp(t, dbURL, nil, nil)
	c := wkNewOrg(t, wkNewAPI(t, a, ""))
	q := wkQueue("bad")

	const rangeMsg = "wait_ms: must be between 0 and 30000"
	const typeMsg = "Invalid JSON format: wait_ms must be a number"
	for _, tc := range []struct {
		name, waitMS, code, message, detailCode string
	}{
		{"negative", `-1`, "VALIDATION_ERROR", rangeMsg, "range"},
		{"over 30000", `30001`, "VALIDATION_ERROR", rangeMsg, "range"},
		{"string", `"abc"`, "INVALID_JSON", typeMsg, "PARSE_ERROR"},
		{"fraction", `1.5`, "INVALID_JSON", typeMsg, "PARSE_ERROR"},
		{"huge", `1e400`, "INVALID_JSON", "", "PARSE_ERROR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(`{"queue_name":"` + q + `","worker_id":"w","wait_ms":` + tc.waitMS + `}`)
			start := time.Now()
			st, raw, err := c.call("POST", "/api/v1/jobs/claim", body)
			if err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Fatalf("a refused claim took %s (it must not wait)", took)
			}
			var out struct {
				Code    string `json:"code"`
				Message string `json:"message"`
				Details []struct {
					Field, Code string
				} `json:"details"`
			}
			if st != 400 || json.Unmarshal(raw, &out) != nil {
				t.Fatalf("status %d body %s, want 400 JSON", st, raw)
			}
			if out.Code != tc.code || (tc.message != "" && out.Message != tc.message) || out.Message == "" {
				t.Fatalf("got {code:%q message:%q}, want {code:%q message:%q}", out.Code, out.Message, tc.code, tc.message)
			}
			if len(out.Details) != 1 || out.Details[0].Code != tc.detailCode {
				t.Fatalf("details %s, want one with code %s", raw, tc.detailCode)
			}
			if tc.code == "VALIDATION_ERROR" && out.Details[0].Field != "wait_ms" {
				t.Fatalf("details field %q, want wait_ms", out.Details[0].Field)
			}
		})
	}

	// The bounds themselves are accepted: 0 answers at once, and 30000
	// answers at once when there is a job.
	if r := c.claim(q, "w", 0, 0); r.err != nil || len(r.jobs) != 0 || r.returned.Sub(r.started) > 2*time.Second {
		t.Fatalf("wait_ms 0 on an empty queue: %v %v after %s", r.ids(), r.err, r.returned.Sub(r.started))
	}
	id := c.enqueue(t, q, nil)
	if r := c.claim(q, "w", 30000, 0); r.err != nil || len(r.ids()) != 1 || r.ids()[0] != id || r.returned.Sub(r.started) > 2*time.Second {
		t.Fatalf("wait_ms 30000 with a job: %v %v after %s", r.ids(), r.err, r.returned.Sub(r.started))
	}
	if n := a.Wakeups().Waiting(); n != 0 {
		t.Fatalf("%d claims still waiting", n)
	}
}

// TestWakeStopReleasesWaitingClaims: stopping the server (SIGTERM) answers
// a waiting claim at once with no jobs, instead of draining for the rest of
// its wait_ms (up to 30 s).
func TestWakeStopReleasesWaitingClaims(t *testing.T) {
	t.Parallel()
	_, dbURL := testdb.NewWithURL(t, testdb.Options{})
	a, stop := wkStartAppStoppable(t, dbURL, nil, nil)
	c := wkNewOrg(t, wkNewAPI(t, a, ""))
	claim := c.goClaim(wkQueue("drain"), "worker-1", 30000, 0)
	wkEventually(t, 2*time.Second, "claim waiting", func() bool { return a.Wakeups().Waiting() == 1 })
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	took := time.Since(start)
	t.Logf("stop with a claim waiting (wait_ms 30000) took %s", wkMS(took))
	if took > 3*time.Second {
		t.Fatalf("stop took %s with a claim waiting; want the claim released at once", took)
	}
	r := wkAwaitClaim(t, claim, 2*time.Second)
	if len(r.jobs) != 0 {
		t.Fatalf("claim released at shutdown returned %v, want no jobs", r.ids())
	}
	if n := a.Wakeups().Waiting(); n != 0 {
		t.Fatalf("%d claims still waiting after stop", n)
	}
}
