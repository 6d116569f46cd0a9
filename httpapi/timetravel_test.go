package httpapi_test

import (
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/spooled-go/spooled/internal/clock"
)

// TestJobAsOf reads a job as it stood at moments of its life: each answer
// is the fold of its events up to then, and matches what GET /jobs/{id}
// said at that moment.
func TestJobAsOf(t *testing.T) {
	t.Parallel()
	clk := clock.NewPinned(time.Now())
	h := newHarnessClock(t, clk)
	_, key := h.org("timetravel")
	_, other := h.org("timetravel-other")

	t0 := clk.Now().Add(-time.Second)
	id := h.do("POST", "/api/v1/jobs", key, map[string]any{"queue_name": "tt", "payload": map[string]any{"v": 1}, "priority": 3}).expect(201).json["id"].(string)
	pending := h.do("GET", "/api/v1/jobs/"+id, key, nil).expect(200).json
	clk.Advance(time.Minute)
	tPending := clk.Now().Add(-time.Second)

	h.do("PUT", "/api/v1/jobs/"+id+"/priority", key, map[string]any{"priority": 9}).expect(200)
	clk.Advance(time.Minute)
	claim := h.do("POST", "/api/v1/jobs/claim", key, map[string]any{"queue_name": "tt", "worker_id": "w"}).expect(200)
	lease := claim.json["jobs"].([]any)[0].(map[string]any)["lease_id"].(string)
	processing := h.do("GET", "/api/v1/jobs/"+id, key, nil).expect(200).json
	clk.Advance(10 * time.Second) // within the 30 s lease
	tProcessing := clk.Now().Add(-time.Second)
	h.do("POST", "/api/v1/jobs/"+id+"/complete", key, map[string]any{"worker_id": "w", "lease_id": lease, "result": 42}).expect(200)
	done := h.do("GET", "/api/v1/jobs/"+id, key, nil).expect(200).json

	asOf := func(at time.Time) response {
		return h.do("GET", "/api/v1/jobs/"+id+"?as_of="+url.QueryEscape(at.UTC().Format(time.RFC3339Nano)), key, nil)
	}
	same := func(what string, got, want map[string]any) {
		t.Helper()
		for k, v := range want {
			if got[k] != nil && v != nil {
				if g, w := got[k], v; toString(g) != toString(w) {
					t.Errorf("%s: %s = %v, want %v", what, k, g, w)
				}
			} else if (got[k] == nil) != (v == nil) {
				t.Errorf("%s: %s = %v, want %v", what, k, got[k], v)
			}
		}
	}
	same("as of pending", asOf(tPending).expect(200).json, pending)
	same("as of processing", asOf(tProcessing).expect(200).json, processing)
	same("as of now", asOf(clk.Now().Add(time.Hour)).expect(200).json, done)
	if p := asOf(tProcessing).json["priority"]; p != float64(9) {
		t.Fatalf("priority as of processing = %v, want 9", p)
	}
	asOf(t0).expectError(404, "NOT_FOUND")

	// Bad input and tenancy.
	h.do("GET", "/api/v1/jobs/"+id+"?as_of=yesterday", key, nil).expectError(400, "VALIDATION_ERROR")
	h.do("GET", "/api/v1/jobs/"+id+"?as_of="+url.QueryEscape(clk.Now().Format(time.RFC3339)), other, nil).expectError(404, "NOT_FOUND")
	h.do("GET", "/api/v1/jobs/not-a-uuid?as_of="+url.QueryEscape(clk.Now().Format(time.RFC3339)), key, nil).expectError(404, "NOT_FOUND")
}

// TestReplay: a replay is a new job with the original's enqueue data,
// linked in both histories; dead-letter replay by queue and time window.
func TestReplay(t *testing.T) {
	t.Parallel()
	clk := clock.NewPinned(time.Now())
	h := newHarnessClock(t, clk)
	_, key := h.org("replays")
	_, other := h.org("replays-other")

	id := h.do("POST", "/api/v1/jobs", key, map[string]any{"queue_name": "rq", "payload": map[string]any{"v": 7},
		"priority": 5, "max_retries": 0, "tags": map[string]any{"t": 1}, "idempotency_key": "once"}).expect(201).json["id"].(string)
	c := h.do("POST", "/api/v1/jobs/claim", key, map[string]any{"queue_name": "rq", "worker_id": "w"}).expect(200)
	lease := c.json["jobs"].([]any)[0].(map[string]any)["lease_id"].(string)
	h.do("POST", "/api/v1/jobs/"+id+"/fail", key, map[string]any{"worker_id": "w", "lease_id": lease, "error": "boom"}).expect(200)

	r := h.do("POST", "/api/v1/jobs/"+id+"/replay", key, nil).expect(201)
	newID := r.json["id"].(string)
	if newID == id || r.json["replay_of"] != id {
		t.Fatalf("replay answer %s", r.raw)
	}
	nj := h.do("GET", "/api/v1/jobs/"+newID, key, nil).expect(200).json
	if nj["status"] != "pending" || nj["priority"] != float64(5) || nj["max_retries"] != float64(0) ||
		nj["payload"].(map[string]any)["v"] != float64(7) || nj["idempotency_key"] != nil || nj["queue_name"] != "rq" {
		t.Fatalf("replayed job %v", nj)
	}
	origHist := h.do("GET", "/api/v1/jobs/"+id+"/history", key, nil).expect(200).json["events"].([]any)
	last := origHist[len(origHist)-1].(map[string]any)
	if last["type"] != "job.replayed" || last["data"].(map[string]any)["replay_job_id"] != newID {
		t.Fatalf("original's history ends %v", last)
	}
	newHist := h.do("GET", "/api/v1/jobs/"+newID+"/history", key, nil).expect(200).json["events"].([]any)
	if d := newHist[0].(map[string]any)["data"].(map[string]any); d["replay_of"] != id {
		t.Fatalf("new job's enqueue data %v", d)
	}
	if st := h.do("GET", "/api/v1/jobs/"+id, key, nil).expect(200).json["status"]; st != "deadletter" {
		t.Fatalf("original is %v after replay, want still deadletter", st)
	}

	// Another organization cannot replay it; unknown ids are 404.
	h.do("POST", "/api/v1/jobs/"+id+"/replay", other, nil).expectError(404, "NOT_FOUND")
	h.do("POST", "/api/v1/jobs/not-a-uuid/replay", key, nil).expectError(404, "NOT_FOUND")

	// Bulk: two more dead letters in queue bulk, one in another queue; replay
	// bulk's dead-lettered since a time window start.
	dead := func(queue string) string {
		jid := h.do("POST", "/api/v1/jobs", key, map[string]any{"queue_name": queue, "payload": 1, "max_retries": 0}).expect(201).json["id"].(string)
		c := h.do("POST", "/api/v1/jobs/claim", key, map[string]any{"queue_name": queue, "worker_id": "w"}).expect(200)
		l := c.json["jobs"].([]any)[0].(map[string]any)["lease_id"].(string)
		h.do("POST", "/api/v1/jobs/"+jid+"/fail", key, map[string]any{"worker_id": "w", "lease_id": l, "error": "x"}).expect(200)
		return jid
	}
	clk.Advance(time.Hour)
	from := clk.Now()
	a, b := dead("bulk"), dead("bulk")
	dead("elsewhere")
	res := h.do("POST", "/api/v1/jobs/dlq/replay", key, map[string]any{"queue_name": "bulk", "from": from.Format(time.RFC3339Nano)}).expect(200)
	if res.json["replayed_count"] != float64(2) {
		t.Fatalf("bulk replay: %s", res.raw)
	}
	got := map[string]bool{}
	for _, j := range res.json["jobs"].([]any) {
		got[j.(map[string]any)["original_id"].(string)] = true
	}
	if !got[a] || !got[b] {
		t.Fatalf("bulk replay replayed %v, want %s and %s", got, a, b)
	}
	h.do("POST", "/api/v1/jobs/dlq/replay", key, map[string]any{"limit": 0}).expectError(400, "VALIDATION_ERROR")
	h.do("POST", "/api/v1/jobs/dlq/replay", key, map[string]any{"queue_name": "bad name"}).expectError(400, "VALIDATION_ERROR")
}

func toString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	default:
		b, _ := jsonMarshal(x)
		return string(b)
	}
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
