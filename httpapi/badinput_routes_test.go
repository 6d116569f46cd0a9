package httpapi_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// hostileIDs are ids for path positions that must name nothing: not
// UUIDs, SQL-looking text, escaped NUL and other bytes in the path, the
// all-zero UUID and 1000 characters.
var hostileIDs = []string{
	"not-a-uuid", "%00", "x'%20OR%20'1'='1", "1;DROP%20TABLE%20jobs;--", "%27", "%22", "..%2F..%2Fetc",
	"00000000-0000-0000-0000-000000000000", "ffffffff-ffff-7fff-bfff-ffffffffffff", "%E2%80%AE", "%ff",
	strings.Repeat("a", 1000),
}

// rbName shortens an id for a subtest name.
func rbName(id string) string {
	if len(id) > 40 {
		return id[:40]
	}
	return id
}

// rbRefusedStream sends a GET that must be refused before any stream
// opens: it gives up after 10 s, so a stream wrongly opened fails the test
// instead of hanging it. The refusal must be a JSON error, not an event
// stream, and write nothing.
func (h *harness) rbRefusedStream(path, key string, headers map[string]string, status int, code string) response {
	h.t.Helper()
	before := h.counts()
	out := h.elRequest(path, key, headers)
	out.expectError(status, code)
	if ct := out.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		h.t.Fatalf("GET %s: Content-Type %q, want a JSON error", path, ct)
	}
	h.unchanged(before, "GET "+path)
	return out
}

// rbJob fingerprints what a refused request must not change about a job:
// its status, lease and length of history.
func (h *harness) rbJob(key, id string) string {
	h.t.Helper()
	j := h.do("GET", "/api/v1/jobs/"+id, key, nil).expect(200).json
	return fmt.Sprintf("status=%v lease=%v until=%v worker=%v retries=%v history=%d",
		j["status"], j["lease_id"], j["lease_expires_at"], j["assigned_worker_id"], j["retry_count"], h.historyLen(key, id))
}

// TestRouteBadInputAdminOrganizations: the admin route refuses a missing,
// mistyped, too long or unstorable name and creates nothing.
func TestRouteBadInputAdminOrganizations(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	admin := map[string]string{"X-Admin-Key": h.cfg.AdminAPIKey}
	const path = "/api/v1/admin/organizations"

	cases := []bodyCase{
		{"name missing", `{"slug":"x-org"}`, 400, "INVALID_JSON", "name"},
		{"name a number", `{"name":5,"slug":"x-org"}`, 400, "INVALID_JSON", "name"},
		{"name 101 characters", `{"name":"` + strings.Repeat("n", 101) + `","slug":"x-org"}`, 400, "VALIDATION_ERROR", "name"},
		{"name with a NUL escape", `{"name":"X\u0000Org","slug":"x-org"}`, 400, "VALIDATION_ERROR", "body"},
	}
	for _, bc := range cases {
		t.Run(bc.name, func(t *testing.T) {
			h := h.as(t)
			before := h.counts()
			h.doHeaders("POST", path, "", bc.body, admin).expectError(bc.status, bc.code).expectField(bc.field)
			h.unchanged(before, "POST "+path)
		})
	}
	if t.Failed() {
		return
	}
	// No x-org was made (the slug is still free), and a 100-character name
	// is accepted: the refusals were about the bodies.
	before := h.counts()
	res := h.doHeaders("POST", path, "", `{"name":"`+strings.Repeat("n", 100)+`","slug":"x-org"}`, admin).expect(201)
	if org := res.json["organization"].(map[string]any); org["slug"] != "x-org" {
		t.Fatalf("created %s", res.raw)
	}
	if after := h.counts(); after.Orgs != before.Orgs+1 {
		t.Fatalf("organizations %d -> %d, want one more", before.Orgs, after.Orgs)
	}
}

// TestRouteBadInputAPIKeyUpdate: PUT /api-keys/{id} on the caller's own key
// refuses mistyped, broken and out-of-range bodies, and the key keeps its
// name, rate limit and active flag.
func TestRouteBadInputAPIKeyUpdate(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	keys := h.do("GET", "/api/v1/api-keys", key, nil).expect(200)
	if len(keys.list) != 1 {
		t.Fatalf("a new organization lists %d keys: %s", len(keys.list), keys.raw)
	}
	id := keys.list[0].(map[string]any)["id"].(string)
	path := "/api/v1/api-keys/" + id
	h.do("PUT", path, key, map[string]any{"name": "primary key", "rate_limit": 50}).expect(200)
	state := func(h *harness) string {
		h.t.Helper()
		k := h.do("GET", path, key, nil).expect(200).json
		return fmt.Sprint(k["name"], "|", k["rate_limit"], "|", k["is_active"], "|", k["queues"])
	}
	want := state(h)
	if want != "primary key|50|true|[*]" {
		t.Fatalf("key before the refusals: %s", want)
	}

	cases := []bodyCase{
		{"name a number", `{"name":5}`, 400, "INVALID_JSON", "name"},
		{"is_active a string", `{"is_active":"no"}`, 400, "INVALID_JSON", "is_active"},
		{"truncated", `{`, 400, "INVALID_JSON", "body"},
		{"empty body", "", 400, "INVALID_JSON", "body"},
		{"name 101 characters", `{"name":"` + strings.Repeat("k", 101) + `"}`, 400, "VALIDATION_ERROR", "name"},
		{"rate_limit 10001", `{"rate_limit":10001}`, 400, "VALIDATION_ERROR", "rate_limit"},
		{"rate_limit 0", `{"rate_limit":0}`, 400, "VALIDATION_ERROR", "rate_limit"},
	}
	for _, bc := range cases {
		t.Run(bc.name, func(t *testing.T) {
			h := h.as(t)
			h.refused("PUT", path, key, bc.body, bc.status, bc.code).expectField(bc.field)
			if got := state(h); got != want {
				t.Fatalf("key changed: %s, want %s", got, want)
			}
		})
	}
	if t.Failed() {
		return
	}
	// The bounds themselves are accepted, and the key still works.
	long := strings.Repeat("k", 100)
	h.do("PUT", path, key, map[string]any{"name": long, "rate_limit": 10000}).expect(200)
	h.do("PUT", path, key, map[string]any{"rate_limit": 1}).expect(200)
	if got := state(h); got != long+"|1|true|[*]" {
		t.Fatalf("key after valid updates: %s", got)
	}
}

// TestRouteBadInputDeadLetterRoutes: the dead-letter routes refuse
// oversized, mistyped and unstorable bodies without touching a
// dead-lettered job; another organization replaying the queue name
// replays nothing.
func TestRouteBadInputDeadLetterRoutes(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, keyA := h.org("org-a")
	_, keyB := h.org("org-b")
	dead := h.deadLetter(keyA, "dl-q")
	h.enqueue(keyB, "dl-q", nil) // B has a job of its own in the queue
	beforeA := h.rbJob(keyA, dead)

	ids := make([]string, 101)
	ids[0] = dead
	for i := 1; i < len(ids); i++ {
		ids[i] = uuid.NewString()
	}
	idsJSON, _ := json.Marshal(ids)
	long := strings.Repeat("q", 101)
	const retry, purge, replay = "/api/v1/jobs/dlq/retry", "/api/v1/jobs/dlq/purge", "/api/v1/jobs/dlq/replay"

	cases := []struct {
		name, path, body string
		status           int
		code, field      string
	}{
		{"retry 101 job_ids", retry, `{"job_ids":` + string(idsJSON) + `}`, 400, "VALIDATION_ERROR", "job_ids"},
		{"retry queue_name 101 characters", retry, `{"queue_name":"` + long + `"}`, 400, "VALIDATION_ERROR", "queue_name"},
		{"purge queue_name 101 characters", purge, `{"confirm":true,"queue_name":"` + long + `"}`, 400, "VALIDATION_ERROR", "queue_name"},
		{"purge limit 1e30", purge, `{"confirm":true,"limit":1e30}`, 400, "INVALID_JSON", "limit"},
		{"purge queue_name with NUL", purge, `{"confirm":true,"queue_name":"dl-q\u0000"}`, 400, "VALIDATION_ERROR", "body"},
		{"replay limit a string", replay, `{"limit":"5"}`, 400, "INVALID_JSON", "limit"},
		{"replay from not a time", replay, `{"from":"yesterday"}`, 400, "INVALID_JSON", "from"},
		{"replay to a number", replay, `{"to":1700000000}`, 400, "INVALID_JSON", "to"},
		{"purge older_than not a time", purge, `{"confirm":true,"older_than":"2026-13-45T00:00:00Z"}`, 400, "INVALID_JSON", "older_than"},
		{"replay truncated", replay, `{`, 400, "INVALID_JSON", "body"},
		{"replay limit 101", replay, `{"limit":101}`, 400, "VALIDATION_ERROR", "limit"},
		{"replay limit 0", replay, `{"limit":0}`, 400, "VALIDATION_ERROR", "limit"},
		{"replay queue_name 101 characters", replay, `{"queue_name":"` + long + `"}`, 400, "VALIDATION_ERROR", "queue_name"},
		{"replay queue_name with NUL", replay, `{"queue_name":"dl-q\u0000"}`, 400, "VALIDATION_ERROR", "body"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := h.as(t)
			h.refused("POST", tc.path, keyA, tc.body, tc.status, tc.code).expectField(tc.field)
			if got := h.rbJob(keyA, dead); got != beforeA {
				t.Fatalf("dead-lettered job changed: %s, want %s", got, beforeA)
			}
		})
	}

	t.Run("another organization replays the queue name", func(t *testing.T) {
		h := h.as(t)
		before := h.counts()
		res := h.do("POST", replay, keyB, map[string]any{"queue_name": "dl-q"}).expect(200)
		if res.json["replayed_count"] != float64(0) {
			t.Fatalf("B replayed A's dead letters: %s", res.raw)
		}
		if jobs, ok := res.json["jobs"].([]any); !ok || len(jobs) != 0 {
			t.Fatalf("B's replay lists jobs: %s", res.raw)
		}
		h.unchanged(before, "B's replay")
		if got := h.rbJob(keyA, dead); got != beforeA {
			t.Fatalf("A's job changed: %s, want %s", got, beforeA)
		}
	})
	if t.Failed() {
		return
	}
	// The job was there to be touched: A's own replay takes it, and A's
	// purge removes it.
	res := h.do("POST", replay, keyA, map[string]any{"queue_name": "dl-q", "limit": 100}).expect(200)
	jobs, _ := res.json["jobs"].([]any)
	if res.json["replayed_count"] != float64(1) || len(jobs) != 1 || jobs[0].(map[string]any)["original_id"] != dead {
		t.Fatalf("A's replay: %s", res.raw)
	}
	res = h.do("POST", purge, keyA, map[string]any{"confirm": true, "queue_name": "dl-q"}).expect(200)
	if res.json["purged_count"] != float64(1) {
		t.Fatalf("A's purge: %s", res.raw)
	}
}

// TestRouteBadInputCompleteBatch: POST /jobs/complete refuses a malformed
// batch as a whole; the leased jobs, even those named correctly in it,
// stay processing.
func TestRouteBadInputCompleteBatch(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	h.enqueue(key, "cb", nil)
	h.enqueue(key, "cb", nil)
	held := h.claim(key, "cb", "w1", 2)
	if len(held) != 2 {
		t.Fatalf("claimed %d jobs, want 2", len(held))
	}
	c1, c2 := held[0], held[1]
	before := map[string]string{c1.ID: h.rbJob(key, c1.ID), c2.ID: h.rbJob(key, c2.ID)}
	item := func(c claimed) string { return fmt.Sprintf(`{"job_id":%q,"lease_id":%q}`, c.ID, c.Lease) }
	valid := `{"worker_id":"w1","jobs":[` + item(c1) + `,` + item(c2) + `]}`

	cases := []bodyCase{
		{"jobs an object", `{"worker_id":"w1","jobs":` + item(c1) + `}`, 400, "INVALID_JSON", "jobs"},
		{"truncated", valid[:len(valid)-1], 400, "INVALID_JSON", "body"},
		{"truncated in the middle", valid[:len(valid)/2], 400, "INVALID_JSON", "body"},
		{"an item without job_id", `{"worker_id":"w1","jobs":[` + item(c1) + `,{"lease_id":"` + c2.Lease + `"}]}`,
			400, "INVALID_JSON", "jobs[].job_id"},
		{"worker_id with NUL", `{"worker_id":"w1\u0000","jobs":[` + item(c1) + `]}`, 400, "VALIDATION_ERROR", "body"},
		{"lease_id x", `{"worker_id":"w1","jobs":[` + item(c1) + `,{"job_id":"` + c2.ID + `","lease_id":"x"}]}`,
			400, "VALIDATION_ERROR", "lease_id"},
	}
	for _, bc := range cases {
		t.Run(bc.name, func(t *testing.T) {
			h := h.as(t)
			h.refused("POST", "/api/v1/jobs/complete", key, bc.body, bc.status, bc.code).expectField(bc.field)
			for id, want := range before {
				if got := h.rbJob(key, id); got != want {
					t.Fatalf("job %s changed: %s, want %s", id, got, want)
				}
			}
		})
	}
	if t.Failed() {
		return
	}
	for _, c := range held {
		if st := h.jobStatus(key, c.ID); st != "processing" {
			t.Fatalf("job %s is %s, want still processing", c.ID, st)
		}
	}
	res := h.do("POST", "/api/v1/jobs/complete", key, valid).expect(200)
	if done, _ := res.json["completed"].([]any); len(done) != 2 {
		t.Fatalf("valid batch: %s", res.raw)
	}
}

// TestRouteBadInputWorkers: the worker routes refuse unstorable, oversized
// and out-of-range bodies and hostile ids, and the registered worker is
// unchanged.
func TestRouteBadInputWorkers(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	id := h.wrRegister(key, map[string]any{"queue_name": "q", "hostname": "h", "metadata": map[string]any{"a": 1}})
	worker := fmt.Sprint(h.wrGet(key, id))

	// meta is a metadata object of exactly n bytes.
	meta := func(n int) string { return `{"k":"` + strings.Repeat("m", n-8) + `"}` }
	reg, beat := "/api/v1/workers/register", "/api/v1/workers/"+id+"/heartbeat"
	cases := []struct {
		name, path, body string
		status           int
		code, field      string
	}{
		{"register metadata with NUL", reg, `{"queue_name":"q","hostname":"h","metadata":{"k":"a\u0000b"}}`, 400, "VALIDATION_ERROR", "body"},
		{"register max_concurrency 1e30", reg, `{"queue_name":"q","hostname":"h","max_concurrency":1e30}`, 400, "INVALID_JSON", "max_concurrency"},
		{"register metadata 10,000 arrays deep", reg,
			`{"queue_name":"q","hostname":"h","metadata":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`,
			400, "INVALID_JSON", "body"},
		{"heartbeat metadata over 64 KiB", beat, `{"current_jobs":1,"metadata":` + meta(64*1024+1) + `}`, 400, "VALIDATION_ERROR", "metadata"},
		{"heartbeat current_jobs 100001", beat, `{"current_jobs":100001}`, 400, "VALIDATION_ERROR", "current_jobs"},
		{"heartbeat current_jobs 1e30", beat, `{"current_jobs":1e30}`, 400, "INVALID_JSON", "current_jobs"},
		{"heartbeat metadata with NUL", beat, `{"current_jobs":1,"metadata":{"k":"\u0000"}}`, 400, "VALIDATION_ERROR", "body"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := h.as(t)
			before := h.wrState()
			h.refused("POST", tc.path, key, tc.body, tc.status, tc.code).expectField(tc.field)
			if after := h.wrState(); after != before {
				t.Fatalf("refused request wrote: %s -> %s", before, after)
			}
		})
	}

	for _, hid := range hostileIDs {
		t.Run("id "+rbName(hid), func(t *testing.T) {
			h := h.as(t)
			before := h.wrState()
			h.refused("GET", "/api/v1/workers/"+hid, key, nil, 404, "NOT_FOUND")
			h.refused("POST", "/api/v1/workers/"+hid+"/heartbeat", key, map[string]any{"current_jobs": 3, "status": "draining"}, 404, "NOT_FOUND")
			h.refused("POST", "/api/v1/workers/"+hid+"/deregister", key, nil, 404, "NOT_FOUND")
			h.refused("DELETE", "/api/v1/workers/"+hid, key, nil, 404, "NOT_FOUND")
			if after := h.wrState(); after != before {
				t.Fatalf("requests for id %q wrote: %s -> %s", hid, before, after)
			}
		})
	}

	if got := fmt.Sprint(h.wrGet(key, id)); got != worker {
		t.Fatalf("worker changed:\n%s\nwant\n%s", got, worker)
	}
	if t.Failed() {
		return
	}
	// The limits themselves are accepted.
	h.do("POST", beat, key, `{"current_jobs":100000,"metadata":`+meta(64*1024)+`}`).expect(200)
	w := h.wrGet(key, id)
	if wrNum(t, w, "current_jobs") != 100000 || len(w["metadata"].(map[string]any)["k"].(string)) != 64*1024-8 {
		t.Fatalf("worker after a heartbeat at the limits: current_jobs %v", w["current_jobs"])
	}
}

// TestRouteBadInputJobHeartbeatAndReplay: a job heartbeat with a worker id
// over 255 characters is refused and leaves the lease alone; replaying a
// hostile id names no job.
func TestRouteBadInputJobHeartbeatAndReplay(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	h.enqueue(key, "hb", nil)
	worker := strings.Repeat("w", 255)
	c := h.claimOne(key, "hb", worker)
	before := h.rbJob(key, c.ID)

	h.refused("POST", "/api/v1/jobs/"+c.ID+"/heartbeat", key,
		map[string]any{"worker_id": worker + "w", "lease_id": c.Lease, "lease_duration_secs": 60},
		400, "VALIDATION_ERROR").expectField("worker_id")
	if got := h.rbJob(key, c.ID); got != before {
		t.Fatalf("refused heartbeat changed the job: %s, want %s", got, before)
	}

	for _, id := range hostileIDs {
		t.Run("replay "+rbName(id), func(t *testing.T) {
			h.as(t).refused("POST", "/api/v1/jobs/"+id+"/replay", key, nil, 404, "NOT_FOUND")
		})
	}
	if t.Failed() {
		return
	}
	// The 255-character worker holds the lease; its heartbeat is accepted,
	// and a real job can be replayed.
	h.do("POST", "/api/v1/jobs/"+c.ID+"/heartbeat", key,
		map[string]any{"worker_id": worker, "lease_id": c.Lease, "lease_duration_secs": 60}).expect(200)
	h.do("POST", "/api/v1/jobs/"+c.ID+"/replay", key, nil).expect(201)
}

// TestRouteBadInputQueries: bad query strings and path names on list and
// streaming routes are 400 before anything is read or any stream opens.
func TestRouteBadInputQueries(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	h.deadLetter(key, "dl-q")

	res := h.refused("GET", "/api/v1/jobs/dlq?offset=abc", key, nil, 400, "BAD_REQUEST")
	if msg := res.json["message"].(string); !strings.Contains(msg, "offset") {
		t.Fatalf("message %q does not name offset", msg)
	}

	for _, name := range []string{"a%2Fb", strings.Repeat("q", 101)} {
		res := h.rbRefusedStream("/api/v1/events/queues/"+name, key, nil, 400, "BAD_REQUEST")
		if msg := res.json["message"].(string); !strings.Contains(msg, "queue name") {
			t.Fatalf("events/queues/%.20s: message %q", name, msg)
		}
	}

	upgrade := map[string]string{
		"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
		"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
	}
	res = h.rbRefusedStream("/api/v1/ws?queue=a%20b", key, upgrade, 400, "BAD_REQUEST")
	if msg := res.json["message"].(string); !strings.Contains(msg, "queue") {
		t.Fatalf("ws: message %q", msg)
	}
	// The 400 is the queue check: the same request is otherwise a socket
	// handshake, which without the upgrade headers is refused differently.
	h.rbRefusedStream("/api/v1/ws?queue=a%20b", key, nil, 426, "BAD_REQUEST")

	// The valid list works.
	if dlq := h.do("GET", "/api/v1/jobs/dlq?offset=0", key, nil).expect(200); len(dlq.list) != 1 {
		t.Fatalf("dead-letter list: %s", dlq.raw)
	}
}
