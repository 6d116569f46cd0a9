package httpapi_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
)

// TestEnqueueIdempotency: a new job is 201 {id, created: true}; the same
// idempotency key again is 200 with the same id and created: false, whatever
// the second body says and whatever became of the job; nothing new is
// written.
func TestEnqueueIdempotency(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")

	first := h.do("POST", "/api/v1/jobs", key, map[string]any{"queue_name": "emails", "payload": map[string]any{"v": 1}, "idempotency_key": "order-42"}).expect(201)
	id, _ := first.json["id"].(string)
	if id == "" || first.json["created"] != true || len(first.json) != 2 {
		t.Fatalf("first enqueue: %s", first.raw)
	}
	before := h.counts()
	for _, body := range []map[string]any{
		{"queue_name": "emails", "payload": map[string]any{"v": 1}, "idempotency_key": "order-42"},
		{"queue_name": "other", "payload": map[string]any{"v": 2}, "idempotency_key": "order-42", "priority": 100},
	} {
		again := h.do("POST", "/api/v1/jobs", key, body).expect(200)
		if again.json["id"] != id || again.json["created"] != false {
			t.Fatalf("repeat: %s, want id %s created false", again.raw, id)
		}
	}
	h.unchanged(before, "idempotent repeats")
	job := h.do("GET", "/api/v1/jobs/"+id, key, nil).expect(200)
	if job.json["queue_name"] != "emails" || job.json["priority"] != float64(0) || job.json["payload"].(map[string]any)["v"] != float64(1) {
		t.Fatalf("the repeat changed the job: %s", job.raw)
	}

	// Still the same job once it is completed.
	c := h.claimOne(key, "emails", "w1")
	h.do("POST", "/api/v1/jobs/"+c.ID+"/complete", key, map[string]any{"worker_id": "w1", "lease_id": c.Lease}).expect(200)
	again := h.do("POST", "/api/v1/jobs", key, map[string]any{"queue_name": "emails", "payload": 1, "idempotency_key": "order-42"}).expect(200)
	if again.json["id"] != id || again.json["created"] != false {
		t.Fatalf("repeat after completion: %s", again.raw)
	}

	// Bulk: a taken key resolves to the existing job; a key repeated within
	// one batch makes one job.
	res := h.do("POST", "/api/v1/jobs/bulk", key, map[string]any{"queue_name": "emails", "jobs": []any{
		map[string]any{"payload": 1, "idempotency_key": "order-42"},
		map[string]any{"payload": 2, "idempotency_key": "batch-1"},
		map[string]any{"payload": 3, "idempotency_key": "batch-1"},
	}}).expect(200)
	var out struct {
		Succeeded []struct {
			Index   int    `json:"index"`
			JobID   string `json:"job_id"`
			Created bool   `json:"created"`
		} `json:"succeeded"`
		Failed       []any `json:"failed"`
		Total        int   `json:"total"`
		SuccessCount int   `json:"success_count"`
	}
	if err := json.Unmarshal(res.raw, &out); err != nil {
		t.Fatal(err)
	}
	s := out.Succeeded
	if out.Total != 3 || out.SuccessCount != 3 || len(out.Failed) != 0 || len(s) != 3 ||
		s[0].JobID != id || s[0].Created || s[1].JobID != s[2].JobID || s[1].Created == s[2].Created {
		t.Fatalf("bulk with taken and repeated keys: %s", res.raw)
	}
	if n := h.total(key); n != 2 {
		t.Fatalf("%d jobs, want 2", n)
	}
}

// TestConcurrentIdempotentEnqueue: twenty simultaneous requests with one
// idempotency key make exactly one job; one answer is 201, nineteen are 200,
// all name the same id.
func TestConcurrentIdempotentEnqueue(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	const n = 20
	type answer struct {
		status int
		id     string
		body   string
		err    error
	}
	answers := make([]answer, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			body := fmt.Sprintf(`{"queue_name":"race","payload":{"from":%d},"idempotency_key":"same-key"}`, i)
			status, raw, err := h.send("POST", "/api/v1/jobs", key, body)
			a := answer{status: status, body: string(raw), err: err}
			var m struct {
				ID      string `json:"id"`
				Created bool   `json:"created"`
			}
			if err == nil {
				if jerr := json.Unmarshal(raw, &m); jerr != nil {
					a.err = jerr
				} else if m.Created != (status == 201) {
					a.err = fmt.Errorf("created=%v with status %d", m.Created, status)
				}
			}
			a.id = m.ID
			answers[i] = a
		}()
	}
	close(start)
	wg.Wait()

	created, replayed := 0, 0
	for i, a := range answers {
		if a.err != nil {
			t.Fatalf("request %d: %v (%s)", i, a.err, a.body)
		}
		switch a.status {
		case 201:
			created++
		case 200:
			replayed++
		default:
			t.Fatalf("request %d: status %d: %s", i, a.status, a.body)
		}
		if a.id == "" || a.id != answers[0].id {
			t.Fatalf("request %d answered id %q, request 0 %q", i, a.id, answers[0].id)
		}
	}
	if created != 1 || replayed != n-1 {
		t.Fatalf("%d created and %d replayed, want 1 and %d", created, replayed, n-1)
	}
	if ids := h.jobIDs(key); len(ids) != 1 || ids[0] != answers[0].id {
		t.Fatalf("GET /jobs shows %v, want just %s", ids, answers[0].id)
	}
	if hl := h.historyLen(key, answers[0].id); hl != 1 {
		t.Fatalf("the job has %d events, want 1 (job.enqueued)", hl)
	}
}

// TestStateConflicts: changes a job's state does not allow are 409 CONFLICT
// and change nothing.
func TestStateConflicts(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	done := h.completed(key, "q")
	dead := h.deadLetter(key, "dl")
	waiting := h.enqueue(key, "wait", nil)
	h.enqueue(key, "run", nil)
	running := h.claimOne(key, "run", "w1")

	for _, tc := range []struct{ method, path string }{
		{"DELETE", "/api/v1/jobs/" + done},
		{"DELETE", "/api/v1/jobs/" + dead},
		{"DELETE", "/api/v1/jobs/" + running.ID},
		{"POST", "/api/v1/jobs/" + waiting + "/retry"},
		{"POST", "/api/v1/jobs/" + done + "/retry"},
		{"POST", "/api/v1/jobs/" + running.ID + "/retry"},
	} {
		h.refused(tc.method, tc.path, key, nil, 409, "CONFLICT")
	}
	for _, id := range []string{done, dead, running.ID} {
		h.refused("PUT", "/api/v1/jobs/"+id+"/priority", key, map[string]any{"priority": 10}, 409, "CONFLICT")
	}

	// Allowed transitions from the same jobs.
	pr := h.do("PUT", "/api/v1/jobs/"+waiting+"/priority", key, map[string]any{"priority": 7}).expect(200)
	if pr.json["job_id"] != waiting || pr.json["old_priority"] != float64(0) || pr.json["new_priority"] != float64(7) {
		t.Fatalf("priority change: %s", pr.raw)
	}
	h.do("DELETE", "/api/v1/jobs/"+waiting, key, nil).expect(204)
	if st := h.jobStatus(key, waiting); st != "cancelled" {
		t.Fatalf("cancelled job is %s", st)
	}
	h.refused("DELETE", "/api/v1/jobs/"+waiting, key, nil, 409, "CONFLICT")
	h.refused("POST", "/api/v1/jobs/"+waiting+"/retry", key, nil, 409, "CONFLICT")
	r := h.do("POST", "/api/v1/jobs/"+dead+"/retry", key, nil).expect(200)
	if r.json["status"] != "pending" || r.json["id"] != dead {
		t.Fatalf("retry of a dead letter: %s", r.raw)
	}
	if st := h.jobStatus(key, done); st != "completed" {
		t.Fatalf("completed job is %s", st)
	}
}

// TestDeadLetterPurgeAndRetryBodies: purge must not run on confirm: false,
// and the dead-letter routes' bodies are validated like the others.
func TestDeadLetterPurgeAndRetryBodies(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	dead := h.deadLetter(key, "dl")

	h.refused("POST", "/api/v1/jobs/dlq/purge", key, `{"confirm": false}`, 400, "BAD_REQUEST")
	h.refused("POST", "/api/v1/jobs/dlq/purge", key, `{"confirm": false, "queue_name": "dl"}`, 400, "BAD_REQUEST")
	h.refused("POST", "/api/v1/jobs/dlq/purge", key, `{"confirm": "yes"}`, 400, "INVALID_JSON")
	h.refused("POST", "/api/v1/jobs/dlq/purge", key, `{"confirm": 1}`, 400, "INVALID_JSON")
	h.refused("POST", "/api/v1/jobs/dlq/purge", key, `{"confirm": true`, 400, "INVALID_JSON")
	h.refused("POST", "/api/v1/jobs/dlq/purge", key, `[{"confirm": true}]`, 400, "INVALID_JSON")
	h.refused("POST", "/api/v1/jobs/dlq/purge", key, `{"confirm": true, "limit": 0}`, 400, "VALIDATION_ERROR").expectField("limit")
	h.refused("POST", "/api/v1/jobs/dlq/purge", key, `{"confirm": true, "limit": 10001}`, 400, "VALIDATION_ERROR").expectField("limit")
	h.refused("POST", "/api/v1/jobs/dlq/purge", key, `{"confirm": true, "older_than": "yesterday"}`, 400, "INVALID_JSON")
	h.refused("POST", "/api/v1/jobs/dlq/retry", key, `{"limit": 0}`, 400, "VALIDATION_ERROR").expectField("limit")
	h.refused("POST", "/api/v1/jobs/dlq/retry", key, `{"job_ids": "all"}`, 400, "INVALID_JSON")
	h.refused("POST", "/api/v1/jobs/dlq/retry", key, `{"job_ids": [1]}`, 400, "INVALID_JSON")
	h.refused("POST", "/api/v1/jobs/dlq/retry", key, `{} {}`, 400, "INVALID_JSON")
	res := h.do("POST", "/api/v1/jobs/dlq/retry", key, map[string]any{"job_ids": []string{"x' OR '1'='1", "%00"}}).expect(200)
	if res.json["retried_count"] != float64(0) {
		t.Fatalf("retry of junk ids: %s", res.raw)
	}
	if dlq := h.do("GET", "/api/v1/jobs/dlq", key, nil).expect(200); len(dlq.list) != 1 {
		t.Fatalf("dead-letter queue after refused purges: %s", dlq.raw)
	}

	res = h.do("POST", "/api/v1/jobs/dlq/purge", key, map[string]any{"confirm": true}).expect(200)
	if res.json["purged_count"] != float64(1) {
		t.Fatalf("purge: %s", res.raw)
	}
	h.refused("GET", "/api/v1/jobs/"+dead, key, nil, 404, "NOT_FOUND")
}

// TestBulkDefaultsOutOfRange: out-of-range batch defaults fail the items
// that use them, each reported in failed, with 200; nothing is written for
// them.
func TestBulkDefaultsOutOfRange(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	jobs := []any{map[string]any{"payload": 1}, map[string]any{"payload": 2}, map[string]any{"payload": 3}}

	for _, defaults := range []map[string]any{
		{"default_max_retries": 500},
		{"default_max_retries": -1},
		{"default_timeout_seconds": 0},
		{"default_timeout_seconds": 86401},
		{"default_priority": 1000},
	} {
		body := map[string]any{"queue_name": "q", "jobs": jobs}
		for k, v := range defaults {
			body[k] = v
		}
		before := h.counts()
		res := h.do("POST", "/api/v1/jobs/bulk", key, body).expect(200)
		h.unchanged(before, fmt.Sprintf("bulk with %v", defaults))
		failed, _ := res.json["failed"].([]any)
		succeeded, _ := res.json["succeeded"].([]any)
		if len(failed) != 3 || len(succeeded) != 0 || res.json["total"] != float64(3) ||
			res.json["success_count"] != float64(0) || res.json["failure_count"] != float64(3) {
			t.Fatalf("bulk with %v: %s", defaults, res.raw)
		}
		for i, f := range failed {
			m := f.(map[string]any)
			if m["index"] != float64(i) || m["error"] == "" {
				t.Fatalf("bulk with %v: failed[%d] = %v", defaults, i, m)
			}
		}
	}

	// An item's own priority overrides an out-of-range default.
	res := h.do("POST", "/api/v1/jobs/bulk", key, map[string]any{"queue_name": "q", "default_priority": 1000,
		"jobs": []any{map[string]any{"payload": 1, "priority": 5}, map[string]any{"payload": 2}}}).expect(200)
	if res.json["success_count"] != float64(1) || res.json["failure_count"] != float64(1) {
		t.Fatalf("mixed bulk: %s", res.raw)
	}
	if n := h.total(key); n != 1 {
		t.Fatalf("%d jobs, want 1", n)
	}
}

// TestOrganizationConflicts: a taken slug is 409, a reserved one 400; the
// first organization is unchanged.
func TestOrganizationConflicts(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	orgID, key := h.org("acme")

	h.refused("POST", "/api/v1/organizations", "", map[string]any{"name": "Acme Again", "slug": "acme"}, 409, "CONFLICT")
	h.refused("POST", "/api/v1/organizations", "", map[string]any{"name": "Default Again", "slug": "default"}, 409, "CONFLICT")
	for _, slug := range []string{"admin", "api", "www", "test", "status", "root"} {
		h.refused("POST", "/api/v1/organizations", "", map[string]any{"name": "Reserved " + slug, "slug": slug},
			400, "VALIDATION_ERROR").expectField("slug")
	}
	got := h.do("GET", "/api/v1/organizations/"+orgID, key, nil).expect(200)
	if got.json["name"] != "Org acme" || got.json["slug"] != "acme" {
		t.Fatalf("first organization after the conflicts: %s", got.raw)
	}
}
