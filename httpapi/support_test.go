package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// as is the harness reporting to t, for subtests: a subtest must not fail
// through its parent's T.
func (h *harness) as(t *testing.T) *harness {
	c := *h
	c.t = t
	return &c
}

// rowCounts fingerprints everything a request could write: row counts of
// every table and the sum of job versions (every job transition bumps its
// job's version) and of active keys.
type rowCounts struct {
	Orgs, Keys, ActiveKeys, Jobs, Pending, Processing, Events, JobVersions int64
}

func (h *harness) counts() rowCounts {
	h.t.Helper()
	var c rowCounts
	err := h.pool.QueryRow(context.Background(), `SELECT
		(SELECT count(*) FROM organizations),
		(SELECT count(*) FROM api_keys),
		(SELECT count(*) FROM api_keys WHERE is_active),
		(SELECT count(*) FROM jobs),
		(SELECT count(*) FROM pending_jobs),
		(SELECT count(*) FROM processing_jobs),
		(SELECT count(*) FROM job_events),
		(SELECT coalesce(sum(version), 0) FROM jobs)`).Scan(
		&c.Orgs, &c.Keys, &c.ActiveKeys, &c.Jobs, &c.Pending, &c.Processing, &c.Events, &c.JobVersions)
	if err != nil {
		h.t.Fatalf("count rows: %v", err)
	}
	return c
}

// unchanged fails the test if anything was written since before was taken.
func (h *harness) unchanged(before rowCounts, what string) {
	h.t.Helper()
	if after := h.counts(); after != before {
		h.t.Fatalf("%s wrote to the database: before %+v, after %+v", what, before, after)
	}
}

// refused sends a request that must be refused with status and code, and
// checks that nothing was written. It returns the response for more checks.
func (h *harness) refused(method, path, key string, body any, status int, code string) response {
	h.t.Helper()
	before := h.counts()
	res := h.do(method, path, key, body).expectError(status, code)
	h.unchanged(before, method+" "+path)
	return res
}

// detailField is details[0].field of an error body.
func (r response) detailField() string {
	d, _ := r.json["details"].([]any)
	if len(d) == 0 {
		return ""
	}
	m, _ := d[0].(map[string]any)
	f, _ := m["field"].(string)
	return f
}

// expectField checks details[0].field.
func (r response) expectField(field string) response {
	r.t.Helper()
	if got := r.detailField(); got != field {
		r.t.Fatalf("details[0].field = %q, want %q; body %s", got, field, r.raw)
	}
	return r
}

// enqueue creates a job and returns its id.
func (h *harness) enqueue(key, queue string, extra map[string]any) string {
	h.t.Helper()
	body := map[string]any{"queue_name": queue, "payload": map[string]any{"n": 1}}
	for k, v := range extra {
		body[k] = v
	}
	res := h.do("POST", "/api/v1/jobs", key, body).expect(201)
	id, _ := res.json["id"].(string)
	if id == "" {
		h.t.Fatalf("enqueue answered without id: %s", res.raw)
	}
	return id
}

// claimed is a job a claim returned.
type claimed struct{ ID, Lease string }

// claim claims up to limit jobs of queue for worker.
func (h *harness) claim(key, queue, worker string, limit int) []claimed {
	h.t.Helper()
	res := h.do("POST", "/api/v1/jobs/claim", key,
		map[string]any{"queue_name": queue, "worker_id": worker, "limit": limit}).expect(200)
	jobs, ok := res.json["jobs"].([]any)
	if !ok {
		h.t.Fatalf("claim answered without jobs: %s", res.raw)
	}
	out := make([]claimed, len(jobs))
	for i, j := range jobs {
		m := j.(map[string]any)
		out[i] = claimed{ID: m["id"].(string), Lease: m["lease_id"].(string)}
	}
	return out
}

// claimOne claims exactly one job.
func (h *harness) claimOne(key, queue, worker string) claimed {
	h.t.Helper()
	c := h.claim(key, queue, worker, 1)
	if len(c) != 1 {
		h.t.Fatalf("claim of %s returned %d jobs, want 1", queue, len(c))
	}
	return c[0]
}

// deadLetter makes a job of queue that is dead-lettered and returns its id.
func (h *harness) deadLetter(key, queue string) string {
	h.t.Helper()
	id := h.enqueue(key, queue, map[string]any{"max_retries": 0})
	c := h.claimOne(key, queue, "w-dl")
	if c.ID != id {
		h.t.Fatalf("claimed %s, want %s", c.ID, id)
	}
	h.do("POST", "/api/v1/jobs/"+id+"/fail", key, map[string]any{"worker_id": "w-dl", "lease_id": c.Lease, "error": "boom"}).expect(200)
	if st := h.jobStatus(key, id); st != "deadletter" {
		h.t.Fatalf("job is %s, want deadletter", st)
	}
	return id
}

// completed makes a completed job of queue and returns its id.
func (h *harness) completed(key, queue string) string {
	h.t.Helper()
	id := h.enqueue(key, queue, nil)
	c := h.claimOne(key, queue, "w-done")
	if c.ID != id {
		h.t.Fatalf("claimed %s, want %s", c.ID, id)
	}
	h.do("POST", "/api/v1/jobs/"+id+"/complete", key, map[string]any{"worker_id": "w-done", "lease_id": c.Lease}).expect(200)
	return id
}

func (h *harness) jobStatus(key, id string) string {
	h.t.Helper()
	res := h.do("GET", "/api/v1/jobs/"+id, key, nil).expect(200)
	return res.json["status"].(string)
}

func (h *harness) historyLen(key, id string) int {
	h.t.Helper()
	res := h.do("GET", "/api/v1/jobs/"+id+"/history", key, nil).expect(200)
	return len(res.json["events"].([]any))
}

// stats is GET /jobs/stats.
func (h *harness) stats(key string) map[string]any {
	h.t.Helper()
	h.catchUp()
	return h.do("GET", "/api/v1/jobs/stats", key, nil).expect(200).json
}

// total is the job count GET /jobs/stats reports.
func (h *harness) total(key string) int {
	h.t.Helper()
	n, ok := h.stats(key)["total"].(float64)
	if !ok {
		h.t.Fatal("stats without total")
	}
	return int(n)
}

// jobIDs lists the ids GET /jobs shows (first 100).
func (h *harness) jobIDs(key string) []string {
	h.t.Helper()
	res := h.do("GET", "/api/v1/jobs?limit=100", key, nil).expect(200)
	ids := make([]string, len(res.list))
	for i, j := range res.list {
		ids[i] = j.(map[string]any)["id"].(string)
	}
	return ids
}

// listen serves the harness's app on a real socket (for what only a real
// connection shows, like the body limit) and returns its address.
func (h *harness) listen() string {
	h.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		h.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = h.srv.App().Listener(ln)
	}()
	h.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = h.srv.Shutdown(ctx)
		<-done
	})
	return ln.Addr().String()
}

// rawExchange writes raw bytes on a new connection to addr and reads one
// response.
func rawExchange(t *testing.T, addr string, raw []byte) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Write(raw); err != nil {
		t.Fatalf("write: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// send is a request safe to make from any goroutine: it reports instead of
// failing the test.
func (h *harness) send(method, path, key, body string) (int, []byte, error) {
	req := httptest.NewRequestWithContext(context.Background(), method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := h.srv.App().Test(req, -1)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

// concat joins byte slices (for bodies built around invalid bytes).
func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
