package httpapi_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/internal/clock"
)

// wrClaim claims through the API and returns the claimed job ids.
func (h *harness) wrClaim(key, queue, worker string, limit int, extra map[string]any) []string {
	h.t.Helper()
	body := map[string]any{"queue_name": queue, "worker_id": worker, "limit": limit}
	for k, v := range extra {
		body[k] = v
	}
	res := h.do("POST", "/api/v1/jobs/claim", key, body).expect(200)
	var ids []string
	for _, j := range res.json["jobs"].([]any) {
		ids = append(ids, j.(map[string]any)["id"].(string))
	}
	return ids
}

// wrJob is GET /jobs/{id}.
func (h *harness) wrJob(key, id string) map[string]any {
	h.t.Helper()
	return h.do("GET", "/api/v1/jobs/"+id, key, nil).expect(200).json
}

// wrHistory is the job's event list.
func (h *harness) wrHistory(key, id string) []map[string]any {
	h.t.Helper()
	evs := h.do("GET", "/api/v1/jobs/"+id+"/history", key, nil).expect(200).json["events"].([]any)
	out := make([]map[string]any, len(evs))
	for i, e := range evs {
		out[i] = e.(map[string]any)
	}
	return out
}

// wrLeases counts the leases a worker holds.
func (h *harness) wrLeases(worker string) int {
	h.t.Helper()
	var n int
	if err := h.pool.QueryRow(context.Background(),
		`SELECT count(*) FROM processing_jobs WHERE worker_id = $1`, worker).Scan(&n); err != nil {
		h.t.Fatal(err)
	}
	return n
}

func wrSameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestWorkerHealthSweep: with the clock pinned, a worker that stops
// heartbeating is degraded after two intervals and offline after five; going
// offline takes back its leases through the lease-expiry path (retried, or
// dead-lettered when out of retries) so other workers can claim them; a
// later heartbeat brings it back to healthy.
func TestWorkerHealthSweep(t *testing.T) {
	t.Parallel()
	const interval = 10 * time.Second
	clk := clock.NewPinned(time.Now())
	h := newHarnessClock(t, clk)
	ctx := context.Background()
	_, key := h.org("acme")
	_, otherKey := h.org("other")

	w := h.wrRegister(key, map[string]any{"queue_name": "q", "hostname": "h"})
	retryable := h.do("POST", "/api/v1/jobs", key, map[string]any{"queue_name": "q", "payload": map[string]any{}, "max_retries": 3, "priority": 2}).expect(201).json["id"].(string)
	exhausted := h.do("POST", "/api/v1/jobs", key, map[string]any{"queue_name": "q", "payload": map[string]any{}, "max_retries": 0, "priority": 1}).expect(201).json["id"].(string)
	// Leases far longer than the sweep, so only the worker's health can end
	// them.
	if got := h.wrClaim(key, "q", w, 10, map[string]any{"lease_duration_secs": 3600}); !wrSameSet(got, []string{retryable, exhausted}) {
		t.Fatalf("worker claimed %v", got)
	}
	// A job leased by an unregistered worker id, which the sweep must not
	// touch.
	bystander := h.do("POST", "/api/v1/jobs", key, map[string]any{"queue_name": "q", "payload": map[string]any{}}).expect(201).json["id"].(string)
	if got := h.wrClaim(key, "q", "free-text-worker", 1, map[string]any{"lease_duration_secs": 3600}); !slices.Equal(got, []string{bystander}) {
		t.Fatalf("bystander claimed %v", got)
	}

	h.do("POST", "/api/v1/workers/"+w+"/heartbeat", key, map[string]any{"current_jobs": 2}).expect(200)

	sweep := func() []commands.WorkerHealthChange {
		t.Helper()
		ch, err := h.cmd.SweepWorkerHealth(ctx, interval)
		if err != nil {
			t.Fatal(err)
		}
		return ch
	}
	status := func(id string) string {
		t.Helper()
		return h.wrGet(key, id)["status"].(string)
	}

	clk.Advance(2*interval - time.Second)
	if ch := sweep(); len(ch) != 0 {
		t.Fatalf("sweep before two intervals changed %+v", ch)
	}
	clk.Advance(time.Second)
	ch := sweep()
	if len(ch) != 1 || ch[0].WorkerID != w || ch[0].OldStatus != "healthy" || ch[0].NewStatus != "degraded" || ch[0].Recovered != 0 {
		t.Fatalf("sweep at two intervals: %+v", ch)
	}
	if s := status(w); s != "degraded" {
		t.Fatalf("status %s, want degraded", s)
	}
	ev := h.wrEvents(w)
	if last := ev[len(ev)-1]; last.Type != "worker.status_changed" || last.Actor != "system:worker_health" ||
		last.Data["old_status"] != "healthy" || last.Data["new_status"] != "degraded" {
		t.Fatalf("worker events %+v", ev)
	}
	if n := h.wrLeases(w); n != 2 {
		t.Fatalf("a degraded worker lost leases: holds %d, want 2", n)
	}
	if ch := sweep(); len(ch) != 0 {
		t.Fatalf("second sweep at the same time changed %+v", ch)
	}

	clk.Advance(3*interval - time.Second)
	fresh := h.wrRegister(otherKey, map[string]any{"queue_name": "q", "hostname": "h2"})
	if ch := sweep(); len(ch) != 0 {
		t.Fatalf("sweep before five intervals changed %+v", ch)
	}
	clk.Advance(time.Second)
	ch = sweep()
	if len(ch) != 1 || ch[0].WorkerID != w || ch[0].OldStatus != "degraded" || ch[0].NewStatus != "offline" || ch[0].Recovered != 2 {
		t.Fatalf("sweep at five intervals: %+v", ch)
	}
	if s := status(w); s != "offline" {
		t.Fatalf("status %s, want offline", s)
	}
	ev = h.wrEvents(w)
	if last := ev[len(ev)-1]; last.Type != "worker.status_changed" || last.Actor != "system:worker_health" ||
		last.Data["old_status"] != "degraded" || last.Data["new_status"] != "offline" {
		t.Fatalf("worker events %+v", ev)
	}
	if n := h.wrLeases(w); n != 0 {
		t.Fatalf("an offline worker still holds %d leases", n)
	}
	if g := h.wrGet(key, w); wrNum(t, g, "current_job_count") != 0 {
		t.Fatalf("offline worker %v", g)
	}
	// The other organization's worker, one second behind, stays healthy.
	if s := h.wrGet(otherKey, fresh)["status"]; s != "healthy" {
		t.Fatalf("a worker with recent heartbeats is %v", s)
	}
	if j := h.wrJob(key, bystander); j["status"] != "processing" || j["assigned_worker_id"] != "free-text-worker" {
		t.Fatalf("another worker's job was taken back: %v", j)
	}

	for _, c := range []struct {
		id, status, lastError, then string
		retries                     int
	}{
		{retryable, "pending", "Worker went offline", "job.retry_scheduled", 1},
		{exhausted, "deadletter", "Max retries exceeded after worker went offline", "job.deadlettered", 0},
	} {
		j := h.wrJob(key, c.id)
		if j["status"] != c.status || j["last_error"] != c.lastError || wrNum(t, j, "retry_count") != c.retries || j["lease_id"] != nil {
			t.Fatalf("job %s after its worker went offline: %v; want %s, %q, retry_count %d, no lease", c.id, j, c.status, c.lastError, c.retries)
		}
		hist := h.wrHistory(key, c.id)
		if len(hist) < 2 {
			t.Fatalf("history %v", hist)
		}
		exp, next := hist[len(hist)-2], hist[len(hist)-1]
		data, _ := exp["data"].(map[string]any)
		if exp["type"] != "job.lease_expired" || data["reason"] != "worker_offline" || data["worker_id"] != w ||
			exp["actor"] != "system:worker_health" {
			t.Fatalf("job %s: event %v, want job.lease_expired for worker_offline", c.id, exp)
		}
		if next["type"] != c.then {
			t.Fatalf("job %s: last event %v, want %s", c.id, next, c.then)
		}
	}

	// The retried job is claimable by another worker at once.
	if got := h.wrClaim(key, "q", "w2", 10, nil); !slices.Equal(got, []string{retryable}) {
		t.Fatalf("another worker claimed %v, want %s", got, retryable)
	}

	// A heartbeat revives the worker.
	clk.Advance(time.Second)
	h.do("POST", "/api/v1/workers/"+w+"/heartbeat", key, map[string]any{"current_jobs": 0}).expect(200)
	if s := status(w); s != "healthy" {
		t.Fatalf("after a heartbeat, status %s, want healthy", s)
	}
	ev = h.wrEvents(w)
	if last := ev[len(ev)-1]; last.Type != "worker.status_changed" || last.Data["old_status"] != "offline" ||
		last.Data["new_status"] != "healthy" {
		t.Fatalf("worker events %+v", ev)
	}
	if ch := sweep(); len(ch) != 0 {
		t.Fatalf("sweep right after the heartbeat changed %+v", ch)
	}
}

// TestDegradedWorkerRecovers: a heartbeat from a degraded worker makes it
// healthy again, with the change in its events, and it keeps its leases.
func TestDegradedWorkerRecovers(t *testing.T) {
	t.Parallel()
	clk := clock.NewPinned(time.Now())
	h := newHarnessClock(t, clk)
	_, key := h.org("acme")
	w := h.wrRegister(key, map[string]any{"queue_name": "q", "hostname": "h"})
	h.do("POST", "/api/v1/jobs", key, map[string]any{"queue_name": "q", "payload": map[string]any{}}).expect(201)
	h.wrClaim(key, "q", w, 1, map[string]any{"lease_duration_secs": 3600})

	clk.Advance(30 * time.Second)
	if ch, err := h.cmd.SweepWorkerHealth(context.Background(), 10*time.Second); err != nil || len(ch) != 1 || ch[0].NewStatus != "degraded" {
		t.Fatalf("sweep: %+v, %v", ch, err)
	}
	h.do("POST", "/api/v1/workers/"+w+"/heartbeat", key, map[string]any{"current_jobs": 1}).expect(200)
	if s := h.wrGet(key, w)["status"]; s != "healthy" {
		t.Fatalf("status %v, want healthy", s)
	}
	ev := h.wrEvents(w)
	if last := ev[len(ev)-1]; last.Type != "worker.status_changed" || last.Data["old_status"] != "degraded" ||
		last.Data["new_status"] != "healthy" {
		t.Fatalf("worker events %+v", ev)
	}
	if n := h.wrLeases(w); n != 1 {
		t.Fatalf("worker holds %d leases, want 1", n)
	}
}

// TestWorkerMaxConcurrency: a registered worker never holds more leases
// than its max_concurrency, whatever limit it claims with; an unregistered
// worker id is not capped.
func TestWorkerMaxConcurrency(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	w := h.wrRegister(key, map[string]any{"queue_name": "q", "hostname": "h", "max_concurrency": 3})
	for range 12 {
		h.do("POST", "/api/v1/jobs", key, map[string]any{"queue_name": "q", "payload": map[string]any{}}).expect(201)
	}

	first := h.wrClaim(key, "q", w, 10, nil)
	if len(first) != 3 {
		t.Fatalf("worker with max_concurrency 3 claimed %d", len(first))
	}
	if got := h.wrClaim(key, "q", w, 10, nil); len(got) != 0 {
		t.Fatalf("worker at capacity claimed %d more", len(got))
	}
	// The lease id is optional on complete.
	h.do("POST", "/api/v1/jobs/"+first[0]+"/complete", key, map[string]any{"worker_id": w}).expect(200)
	if got := h.wrClaim(key, "q", w, 10, nil); len(got) != 1 {
		t.Fatalf("after one completion, claimed %d, want 1", len(got))
	}
	if got := h.wrClaim(key, "q", w, 10, nil); len(got) != 0 {
		t.Fatalf("at capacity again, claimed %d", len(got))
	}
	if n := h.wrLeases(w); n != 3 {
		t.Fatalf("worker holds %d leases, want 3", n)
	}
	if got := h.wrClaim(key, "q", "not-registered", 5, nil); len(got) != 5 {
		t.Fatalf("unregistered worker claimed %d, want 5", len(got))
	}
}

// TestWorkerMaxConcurrencyUnderConcurrentClaims: many claims racing for
// one registered worker never lease it more than max_concurrency jobs.
func TestWorkerMaxConcurrencyUnderConcurrentClaims(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	orgID, key := h.org("acme")
	w := h.wrRegister(key, map[string]any{"queue_name": "q", "hostname": "h", "max_concurrency": 3})
	for range 60 {
		h.do("POST", "/api/v1/jobs", key, map[string]any{"queue_name": "q", "payload": map[string]any{}}).expect(201)
	}

	const claimers, rounds = 8, 6
	for round := range rounds {
		start := make(chan struct{})
		var wg sync.WaitGroup
		got := make([]int, claimers)
		errs := make([]error, claimers)
		for i := range claimers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				jobs, err := h.cmd.Claim(ctx, orgID, commands.ClaimRequest{QueueName: "q", WorkerID: w, Limit: 10})
				got[i], errs[i] = len(jobs), err
			}()
		}
		close(start)
		wg.Wait()
		total := 0
		for i := range claimers {
			if errs[i] != nil {
				t.Fatalf("round %d: claim: %v", round, errs[i])
			}
			total += got[i]
		}
		held := h.wrLeases(w)
		if total != 3 || held != 3 {
			t.Fatalf("round %d: concurrent claims leased %d jobs (claims got %v); worker holds %d; want 3",
				round, total, got, held)
		}
		// Complete everything it holds before the next round.
		ids := wrLeasedBy(t, h, w)
		for _, id := range ids {
			h.do("POST", "/api/v1/jobs/"+id+"/complete", key, map[string]any{"worker_id": w}).expect(200)
		}
	}
}

func wrLeasedBy(t *testing.T, h *harness, worker string) []string {
	t.Helper()
	rows, err := h.pool.Query(context.Background(), `SELECT job_id::text FROM processing_jobs WHERE worker_id = $1`, worker)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(ids) == 0 {
		t.Fatalf("worker %s holds no leases", worker)
	}
	return ids
}
