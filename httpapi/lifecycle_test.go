package httpapi_test

import (
	"testing"
)

func TestJobLifecycleOverREST(t *testing.T) {
	h := newHarness(t)
	_, key := h.org("acme")

	created := h.do("POST", "/api/v1/jobs", key, map[string]any{"queue_name": "emails", "payload": map[string]any{"to": "x"}}).expect(201)
	id := created.json["id"].(string)
	if created.json["created"] != true {
		t.Fatalf("created = %v", created.json["created"])
	}

	claim := h.do("POST", "/api/v1/jobs/claim", key, map[string]any{"queue_name": "emails", "worker_id": "w1", "limit": 5}).expect(200)
	jobs := claim.json["jobs"].([]any)
	if len(jobs) != 1 || jobs[0].(map[string]any)["id"] != id {
		t.Fatalf("claim returned %s", claim.raw)
	}
	lease := jobs[0].(map[string]any)["lease_id"].(string)

	h.do("POST", "/api/v1/jobs/"+id+"/heartbeat", key, map[string]any{"worker_id": "w1", "lease_id": lease, "lease_duration_secs": 60}).expect(200)
	done := h.do("POST", "/api/v1/jobs/"+id+"/complete", key, map[string]any{"worker_id": "w1", "lease_id": lease, "result": map[string]any{"ok": true}}).expect(200)
	if string(done.raw) != `{"success":true}` || done.header.Get("Content-Type") != "application/json" {
		t.Fatalf("complete answered %s %q, want {\"success\":true} as application/json", done.header.Get("Content-Type"), done.raw)
	}

	job := h.do("GET", "/api/v1/jobs/"+id, key, nil).expect(200)
	if job.json["status"] != "completed" {
		t.Fatalf("status %v", job.json["status"])
	}
	for _, k := range []string{"id", "organization_id", "queue_name", "status", "payload", "result", "retry_count",
		"max_retries", "last_error", "created_at", "scheduled_at", "started_at", "completed_at", "expires_at",
		"priority", "tags", "timeout_seconds", "parent_job_id", "completion_webhook", "assigned_worker_id",
		"lease_id", "lease_expires_at", "idempotency_key", "updated_at", "workflow_id", "dependency_mode",
		"dependencies_met"} {
		if _, ok := job.json[k]; !ok {
			t.Errorf("job JSON lacks %q", k)
		}
	}

	hist := h.do("GET", "/api/v1/jobs/"+id+"/history", key, nil).expect(200)
	evs := hist.json["events"].([]any)
	want := []string{"job.enqueued", "job.claimed", "job.lease_renewed", "job.completed"}
	if len(evs) != len(want) {
		t.Fatalf("history %s", hist.raw)
	}
	var last float64
	for i, e := range evs {
		m := e.(map[string]any)
		if m["type"] != want[i] {
			t.Fatalf("event %d is %v, want %s", i, m["type"], want[i])
		}
		for _, k := range []string{"position", "type", "occurred_at", "actor", "data"} {
			if _, ok := m[k]; !ok {
				t.Fatalf("event lacks %q: %v", k, m)
			}
		}
		if p := m["position"].(float64); p <= last {
			t.Fatalf("positions not increasing: %v after %v", p, last)
		} else {
			last = p
		}
	}
}
