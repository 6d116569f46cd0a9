package httpapi_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestTenantIsolation: organization B, holding every id of organization A,
// can neither see nor change anything of A's. Each refusal is the same 404
// an unknown id gets (or the worker routes' own refusals), nothing is
// written, and A's jobs are unchanged afterwards.
func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	orgA, keyA := h.org("org-a")
	orgB, keyB := h.org("org-b")

	// A's jobs: waiting, leased, dead-lettered; plus a second key.
	waitingA := h.enqueue(keyA, "shared", map[string]any{"idempotency_key": "order-1"})
	h.enqueue(keyA, "shared", nil)
	h.enqueue(keyA, "leased", nil)
	leasedA := h.claimOne(keyA, "leased", "w1")
	deadA := h.deadLetter(keyA, "shared-dl")
	keyA2ID, keyA2 := h.newKey(keyA, "second", nil)
	aJobs := []string{waitingA, leasedA.ID, deadA}
	// B has a job of its own in the same queue, so empty answers are not
	// trivially empty.
	jobB := h.enqueue(keyB, "shared", nil)

	type snapshot struct {
		status  map[string]string
		history map[string]int
		stats   map[string]any
	}
	snap := func() snapshot {
		s := snapshot{status: map[string]string{}, history: map[string]int{}, stats: h.stats(keyA)}
		for _, id := range aJobs {
			s.status[id] = h.jobStatus(keyA, id)
			s.history[id] = h.historyLen(keyA, id)
		}
		return s
	}
	beforeA := snap()

	t.Run("job routes", func(t *testing.T) {
		h := h.as(t)
		for _, id := range aJobs {
			h.refused("GET", "/api/v1/jobs/"+id, keyB, nil, 404, "NOT_FOUND")
			h.refused("GET", "/api/v1/jobs/"+id+"/history", keyB, nil, 404, "NOT_FOUND")
			h.refused("DELETE", "/api/v1/jobs/"+id, keyB, nil, 404, "NOT_FOUND")
			h.refused("POST", "/api/v1/jobs/"+id+"/retry", keyB, nil, 404, "NOT_FOUND")
			h.refused("PUT", "/api/v1/jobs/"+id+"/priority", keyB, map[string]any{"priority": 50}, 404, "NOT_FOUND")
		}
	})

	t.Run("worker routes", func(t *testing.T) {
		h := h.as(t)
		// Even with the right worker id and lease id.
		for _, lease := range []any{leasedA.Lease, nil} {
			body := map[string]any{"worker_id": "w1", "error": "stolen", "lease_duration_secs": 60, "result": map[string]any{"x": 1}}
			if lease != nil {
				body["lease_id"] = lease
			}
			for _, id := range aJobs {
				h.refused("POST", "/api/v1/jobs/"+id+"/complete", keyB, body, 400, "VALIDATION_ERROR")
				for _, route := range []string{"fail", "heartbeat"} {
					res := h.refused("POST", "/api/v1/jobs/"+id+"/"+route, keyB, body, 404, "NOT_FOUND")
					if res.json["success"] != false || res.json["error"] != "job_not_found_or_not_owned" {
						t.Fatalf("%s of another organization's job: %s", route, res.raw)
					}
				}
			}
		}
	})

	t.Run("keys and organization", func(t *testing.T) {
		h := h.as(t)
		h.refused("GET", "/api/v1/api-keys/"+keyA2ID, keyB, nil, 404, "NOT_FOUND")
		h.refused("PUT", "/api/v1/api-keys/"+keyA2ID, keyB, map[string]any{"name": "pwned"}, 404, "NOT_FOUND")
		h.refused("PUT", "/api/v1/api-keys/"+keyA2ID, keyB, map[string]any{"is_active": false}, 404, "NOT_FOUND")
		h.refused("DELETE", "/api/v1/api-keys/"+keyA2ID, keyB, nil, 404, "NOT_FOUND")
		h.refused("GET", "/api/v1/organizations/"+orgA, keyB, nil, 404, "NOT_FOUND")
		h.refused("GET", "/api/v1/organizations/default-org", keyB, nil, 404, "NOT_FOUND")

		keys := h.do("GET", "/api/v1/api-keys", keyB, nil).expect(200)
		if len(keys.list) != 1 || strings.Contains(string(keys.raw), keyA2ID) {
			t.Fatalf("B's key list: %s", keys.raw)
		}
		orgs := h.do("GET", "/api/v1/organizations", keyB, nil).expect(200)
		if len(orgs.list) != 1 || orgs.list[0].(map[string]any)["id"] != orgB {
			t.Fatalf("B's organization list: %s", orgs.raw)
		}
		// A's second key still works and is unchanged.
		k := h.do("GET", "/api/v1/api-keys/"+keyA2ID, keyA, nil).expect(200)
		if k.json["name"] != "second" || k.json["is_active"] != true {
			t.Fatalf("A's key after B's attempts: %s", k.raw)
		}
		h.do("GET", "/api/v1/jobs", keyA2, nil).expect(200)
	})

	t.Run("reads", func(t *testing.T) {
		h := h.as(t)
		if ids := h.jobIDs(keyB); !slices.Equal(ids, []string{jobB}) {
			t.Fatalf("B's job list %v, want only %s", ids, jobB)
		}
		for _, q := range []string{"", "?queue_name=shared", "?status=pending", "?status=deadletter", "?queue_name=leased&status=processing"} {
			res := h.do("GET", "/api/v1/jobs"+q, keyB, nil).expect(200)
			for _, id := range aJobs {
				if strings.Contains(string(res.raw), id) {
					t.Fatalf("GET /jobs%s with B's key shows A's job %s", q, id)
				}
			}
		}
		st := h.stats(keyB)
		if st["total"] != float64(1) || st["pending"] != float64(1) || st["deadletter"] != float64(0) || st["processing"] != float64(0) {
			t.Fatalf("B's stats count A's jobs: %v", st)
		}
		status := h.do("GET", "/api/v1/jobs/status?ids="+strings.Join(append(slices.Clone(aJobs), jobB), ","), keyB, nil).expect(200)
		if len(status.list) != 1 || status.list[0].(map[string]any)["id"] != jobB {
			t.Fatalf("B's status of A's ids: %s", status.raw)
		}
		if dlq := h.do("GET", "/api/v1/jobs/dlq", keyB, nil).expect(200); len(dlq.list) != 0 {
			t.Fatalf("B's dead-letter queue shows %s", dlq.raw)
		}
	})

	t.Run("writes by id and by queue", func(t *testing.T) {
		h := h.as(t)
		before := h.counts()
		res := h.do("POST", "/api/v1/jobs/dlq/retry", keyB, map[string]any{"job_ids": aJobs}).expect(200)
		if res.json["retried_count"] != float64(0) {
			t.Fatalf("B retried A's dead letters: %s", res.raw)
		}
		res = h.do("POST", "/api/v1/jobs/dlq/retry", keyB, map[string]any{"queue_name": "shared-dl"}).expect(200)
		if res.json["retried_count"] != float64(0) {
			t.Fatalf("B retried A's dead-letter queue: %s", res.raw)
		}
		res = h.do("POST", "/api/v1/jobs/dlq/purge", keyB, map[string]any{"confirm": true}).expect(200)
		if res.json["purged_count"] != float64(0) {
			t.Fatalf("B purged A's dead letters: %s", res.raw)
		}
		h.unchanged(before, "B's dead-letter calls")

		// A parent job must be in the caller's organization.
		h.refused("POST", "/api/v1/jobs", keyB, map[string]any{"queue_name": "shared", "payload": 1, "parent_job_id": waitingA},
			400, "VALIDATION_ERROR").expectField("parent_job_id")

		// Idempotency keys are per organization: B's "order-1" is B's own job.
		res = h.do("POST", "/api/v1/jobs", keyB, map[string]any{"queue_name": "shared", "payload": 1, "idempotency_key": "order-1"}).expect(201)
		if res.json["id"] == waitingA {
			t.Fatal("B's idempotency key resolved to A's job")
		}

		// B's claim on the shared queue name only ever gets B's jobs.
		got := h.claim(keyB, "shared", "w1", 100)
		if len(got) != 2 {
			t.Fatalf("B claimed %d jobs, want its own 2", len(got))
		}
		for _, c := range got {
			if slices.Contains(aJobs, c.ID) {
				t.Fatalf("B claimed A's job %s", c.ID)
			}
		}
		if more := h.claim(keyB, "shared", "w2", 100); len(more) != 0 {
			t.Fatalf("second claim by B returned %v", more)
		}
		if dl := h.claim(keyB, "shared-dl", "w1", 100); len(dl) != 0 {
			t.Fatalf("B claimed from A's dead-letter queue: %v", dl)
		}
	})

	// A's jobs are exactly as they were.
	afterA := snap()
	if fmt.Sprint(afterA) != fmt.Sprint(beforeA) {
		t.Fatalf("A's jobs changed:\nbefore %v\nafter  %v", beforeA, afterA)
	}
	// And A can still use them: the lease B tried to use is A's worker's.
	h.do("POST", "/api/v1/jobs/"+leasedA.ID+"/complete", keyA, map[string]any{"worker_id": "w1", "lease_id": leasedA.Lease}).expect(200)
	h.do("POST", "/api/v1/jobs/"+deadA+"/retry", keyA, nil).expect(200)
	h.do("DELETE", "/api/v1/jobs/"+waitingA, keyA, nil).expect(204)
	if got := h.claim(keyA, "shared", "w1", 100); len(got) != 1 || got[0].ID == waitingA {
		t.Fatalf("A's claim on its queue returned %v, want its one remaining job", got)
	}
	if got := h.claim(keyA, "shared-dl", "w1", 100); len(got) != 1 || got[0].ID != deadA {
		t.Fatalf("A's claim after the retry returned %v, want %s", got, deadA)
	}
}
