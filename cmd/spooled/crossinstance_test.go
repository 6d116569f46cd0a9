package main_test

import (
	"testing"
	"time"

	"github.com/spooled-go/spooled/internal/testdb"
)

// sharedNATS is the local NATS server every test package may use; each run
// uses its own organization and queue names, so runs never mix.
const sharedNATS = "nats://127.0.0.1:4222"

// TestCrossInstanceWakeUp runs two server processes on one schema and the
// shared NATS, with the fallback poll at 30 s: a claim waiting on one
// instance returns within 1 s of an enqueue made on the other, in both
// directions. Both processes then stop on SIGTERM, promptly, even with a
// claim still waiting.
func TestCrossInstanceWakeUp(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Parallel()
	bin := buildServer(t)
	_, dbURL := testdb.NewWithURL(t, testdb.Options{})

	env := []string{"DATABASE_URL=" + dbURL, "NATS_URL=" + sharedNATS, "WORKER_FALLBACK_POLL_INTERVAL_SECS=30",
		"DATABASE_MAX_CONNECTIONS=5", "SPOOLED_DEV_BOOTSTRAP=false"}
	a := startServer(t, bin, "a", env...)
	b := startServer(t, bin, "b", env...)

	// Created by the admin on the enterprise plan: plan quotas are not what
	// this test is about.
	slug := "xi-" + randHex(6)
	st, out := callAPI(a.base, "", "POST", "/api/v1/admin/organizations",
		map[string]any{"name": "Cross " + slug, "slug": slug, "plan_tier": "enterprise"})
	apiKey, _ := out["api_key"].(map[string]any)
	key, _ := apiKey["key"].(string)
	if st != 201 || key == "" {
		t.Fatalf("create organization on a: %d %v", st, out)
	}

	// waitThenEnqueue claims on one instance and enqueues on the other 200
	// ms later.
	waitThenEnqueue := func(claimOn, enqueueOn *serverProc, queue string) {
		t.Helper()
		type result struct {
			st       int
			body     map[string]any
			returned time.Time
		}
		claimed := make(chan result, 1)
		go func() {
			st, body := callAPI(claimOn.base, key, "POST", "/api/v1/jobs/claim",
				map[string]any{"queue_name": queue, "worker_id": "worker-" + claimOn.name, "wait_ms": 10000})
			claimed <- result{st, body, time.Now()}
		}()
		type enq struct {
			id           string
			st           int
			sent, answer time.Time
		}
		enqueued := make(chan enq, 1)
		time.AfterFunc(200*time.Millisecond, func() {
			e := enq{sent: time.Now()}
			st, body := callAPI(enqueueOn.base, key, "POST", "/api/v1/jobs", map[string]any{"queue_name": queue, "payload": map[string]any{"x": 1}})
			e.st, e.answer = st, time.Now()
			e.id, _ = body["id"].(string)
			enqueued <- e
		})
		var r result
		select {
		case r = <-claimed:
		case <-time.After(12 * time.Second):
			t.Fatalf("claim on %s did not return", claimOn.name)
		}
		e := <-enqueued
		if e.st != 201 || e.id == "" {
			t.Fatalf("enqueue on %s: %d", enqueueOn.name, e.st)
		}
		jobs, _ := r.body["jobs"].([]any)
		if r.st != 200 || len(jobs) != 1 || jobs[0].(map[string]any)["id"] != e.id {
			t.Fatalf("claim on %s: %d %v, want job %s", claimOn.name, r.st, r.body, e.id)
		}
		latency := r.returned.Sub(e.sent)
		t.Logf("claim waiting on %s returned the job enqueued on %s %s after the enqueue was sent (%s after its 201)",
			claimOn.name, enqueueOn.name, latency.Round(100*time.Microsecond), r.returned.Sub(e.answer).Round(100*time.Microsecond))
		// The bound only has to tell a hint from the 30 s fallback poll and
		// the claim's own 10 s deadline; a hint takes milliseconds on an idle
		// machine, and far longer has been seen on two cores shared with the
		// rest of the suite under the race detector.
		if latency > 2*time.Second {
			t.Fatalf("claim on %s returned %s after the enqueue on %s; want within 2s (the fallback poll is 30s)", claimOn.name, latency, enqueueOn.name)
		}
	}
	queue := "xi.orders." + randHex(6)
	waitThenEnqueue(a, b, queue)
	waitThenEnqueue(b, a, queue)

	// SIGTERM with a claim waiting (up to 30 s) on a: the drain must not
	// wait for it to run out.
	claimed := make(chan int, 1)
	go func() {
		st, _ := callAPI(a.base, key, "POST", "/api/v1/jobs/claim",
			map[string]any{"queue_name": queue + ".idle", "worker_id": "worker-idle", "wait_ms": 30000})
		claimed <- st
	}()
	select {
	case st := <-claimed:
		t.Fatalf("claim on an empty queue returned at once (%d), want it waiting", st)
	case <-time.After(500 * time.Millisecond):
	}
	termed := time.Now()
	a.term(t)
	b.term(t)
	a.waitExit(t, 10*time.Second)
	b.waitExit(t, 10*time.Second)
	t.Logf("both processes exited %s after SIGTERM", time.Since(termed).Round(time.Millisecond))
	select {
	case st := <-claimed:
		if st != 200 && st != 0 {
			t.Fatalf("the claim waiting at shutdown answered %d", st)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the claim waiting at shutdown never returned")
	}
}
