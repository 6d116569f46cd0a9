package httpapi_test

import (
	"testing"
)

// TestCompleteBatch: POST /jobs/complete finishes a worker's leased jobs in
// one call; items it cannot complete (another worker's lease, another
// organization's job, an unknown id, a duplicate) are refused one by one
// and the rest still complete.
func TestCompleteBatch(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("batcher")
	_, other := h.org("batcher-other")
	for i := 0; i < 4; i++ {
		h.do("POST", "/api/v1/jobs", key, map[string]any{"queue_name": "cb", "payload": i}).expect(201)
	}
	foreign := h.do("POST", "/api/v1/jobs", other, map[string]any{"queue_name": "cb", "payload": 0}).expect(201).json["id"].(string)
	claim := h.do("POST", "/api/v1/jobs/claim", key, map[string]any{"queue_name": "cb", "worker_id": "w1", "limit": 3}).expect(200)
	mine := claim.json["jobs"].([]any)
	stale := h.do("POST", "/api/v1/jobs/claim", key, map[string]any{"queue_name": "cb", "worker_id": "w2"}).expect(200).json["jobs"].([]any)[0].(map[string]any)

	var items []any
	for i, j := range mine {
		m := j.(map[string]any)
		items = append(items, map[string]any{"job_id": m["id"], "lease_id": m["lease_id"], "result": map[string]any{"n": i}})
	}
	first := mine[0].(map[string]any)
	items = append(items,
		map[string]any{"job_id": stale["id"], "lease_id": stale["lease_id"]}, // w2's lease, sent as w1
		map[string]any{"job_id": foreign},
		map[string]any{"job_id": "not-a-job"},
		map[string]any{"job_id": first["id"], "lease_id": first["lease_id"]}, // listed twice
	)
	res := h.do("POST", "/api/v1/jobs/complete", key, map[string]any{"worker_id": "w1", "jobs": items}).expect(200)
	done := res.json["completed"].([]any)
	failed := res.json["failed"].([]any)
	if len(done) != 3 || len(failed) != 4 {
		t.Fatalf("batch complete: %s", res.raw)
	}
	for _, j := range mine {
		id := j.(map[string]any)["id"].(string)
		job := h.do("GET", "/api/v1/jobs/"+id, key, nil).expect(200).json
		if job["status"] != "completed" || job["result"] == nil {
			t.Fatalf("job %s after batch complete: %v", id, job)
		}
	}
	if st := h.do("GET", "/api/v1/jobs/"+stale["id"].(string), key, nil).json["status"]; st != "processing" {
		t.Fatalf("w2's job is %v, want still processing", st)
	}
	hist := h.do("GET", "/api/v1/jobs/"+stale["id"].(string)+"/history", key, nil).expect(200).json["events"].([]any)
	if last := hist[len(hist)-1].(map[string]any); last["type"] != "job.attempt_rejected" {
		t.Fatalf("stale item not recorded: %v", last)
	}
	if st := h.do("GET", "/api/v1/jobs/"+foreign, other, nil).json["status"]; st != "pending" {
		t.Fatalf("foreign job is %v", st)
	}

	// Bad input.
	h.do("POST", "/api/v1/jobs/complete", key, map[string]any{"worker_id": "w1"}).expectError(400, "INVALID_JSON")
	h.do("POST", "/api/v1/jobs/complete", key, map[string]any{"worker_id": "w1", "jobs": []any{}}).expectError(400, "VALIDATION_ERROR")
	h.do("POST", "/api/v1/jobs/complete", key, map[string]any{"jobs": []any{map[string]any{"job_id": foreign}}}).expectError(400, "INVALID_JSON")
	many := make([]any, 101)
	for i := range many {
		many[i] = map[string]any{"job_id": foreign}
	}
	h.do("POST", "/api/v1/jobs/complete", key, map[string]any{"worker_id": "w1", "jobs": many}).expectError(400, "VALIDATION_ERROR")
}
