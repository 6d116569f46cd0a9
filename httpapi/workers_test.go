package httpapi_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/spooled-go/spooled/internal/clock"
)

// wrRegister registers a worker and returns its id.
func (h *harness) wrRegister(key string, body map[string]any) string {
	h.t.Helper()
	res := h.do("POST", "/api/v1/workers/register", key, body).expect(201)
	id, _ := res.json["id"].(string)
	if _, err := uuid.Parse(id); err != nil {
		h.t.Fatalf("register answered id %q, not a UUID: %s", id, res.raw)
	}
	return id
}

// wrGet is GET /workers/{id}.
func (h *harness) wrGet(key, id string) map[string]any {
	h.t.Helper()
	return h.do("GET", "/api/v1/workers/"+id, key, nil).expect(200).json
}

// wrList is GET /workers.
func (h *harness) wrList(key string) []map[string]any {
	h.t.Helper()
	res := h.do("GET", "/api/v1/workers", key, nil).expect(200)
	if res.list == nil && string(res.raw) != "[]" {
		h.t.Fatalf("list is not a JSON array: %s", res.raw)
	}
	out := make([]map[string]any, len(res.list))
	for i, w := range res.list {
		out[i] = w.(map[string]any)
	}
	return out
}

// wrEvent is one event of a worker's stream.
type wrEvent struct {
	Type  string
	Actor string
	Data  map[string]any
}

// wrEvents reads a worker's events from the log (no route serves them).
func (h *harness) wrEvents(id string) []wrEvent {
	h.t.Helper()
	rows, err := h.pool.Query(context.Background(),
		`SELECT event_type, actor, data FROM job_events WHERE stream_type = 'worker' AND stream_id = $1 ORDER BY position`, id)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rows.Close()
	var out []wrEvent
	for rows.Next() {
		var e wrEvent
		var data []byte
		if err := rows.Scan(&e.Type, &e.Actor, &data); err != nil {
			h.t.Fatal(err)
		}
		if err := json.Unmarshal(data, &e.Data); err != nil {
			h.t.Fatal(err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		h.t.Fatal(err)
	}
	return out
}

// wrState fingerprints every worker row and the event log, to show that a
// refused request wrote nothing.
func (h *harness) wrState() string {
	h.t.Helper()
	var s string
	err := h.pool.QueryRow(context.Background(), `SELECT
		coalesce((SELECT md5(string_agg(w::text, '|' ORDER BY w.id)) FROM workers w), '') || ':' ||
		(SELECT count(*) FROM job_events)::text`).Scan(&s)
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

func wrKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func wrNum(t *testing.T, m map[string]any, k string) int {
	t.Helper()
	f, ok := m[k].(float64)
	if !ok {
		t.Fatalf("%s is %T %v, want a number (in %v)", k, m[k], m[k], m)
	}
	return int(f)
}

// TestWorkerRegister: registration answers 201 with exactly the four
// documented fields, applies the defaults, mints the id itself and stores
// every optional field.
func TestWorkerRegister(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	orgID, key := h.org("acme")

	res := h.do("POST", "/api/v1/workers/register", key,
		map[string]any{"queue_name": "emails", "hostname": "host-1", "id": "chosen-by-client"}).expect(201)
	if got, want := wrKeys(res.json), []string{"heartbeat_interval_secs", "id", "lease_duration_secs", "queue_name"}; !slices.Equal(got, want) {
		t.Fatalf("register answered keys %v, want %v: %s", got, want, res.raw)
	}
	id := res.json["id"].(string)
	if _, err := uuid.Parse(id); err != nil {
		t.Fatalf("id %q is not a UUID", id)
	}
	if res.json["queue_name"] != "emails" || wrNum(t, res.json, "lease_duration_secs") != 30 ||
		wrNum(t, res.json, "heartbeat_interval_secs") != 10 {
		t.Fatalf("register answered %s", res.raw)
	}

	w := h.wrGet(key, id)
	want := []string{"created_at", "current_job_count", "current_jobs", "hostname", "id", "last_heartbeat",
		"max_concurrency", "max_concurrent_jobs", "metadata", "organization_id", "queue_name", "queue_names",
		"registered_at", "status", "updated_at", "version", "worker_type"}
	if got := wrKeys(w); !slices.Equal(got, want) {
		t.Fatalf("worker keys %v, want %v", got, want)
	}
	if w["id"] != id || w["organization_id"] != orgID || w["queue_name"] != "emails" || w["hostname"] != "host-1" ||
		w["status"] != "healthy" || w["worker_type"] != nil || w["version"] != nil {
		t.Fatalf("worker %v", w)
	}
	if wrNum(t, w, "max_concurrency") != 5 || wrNum(t, w, "max_concurrent_jobs") != 5 {
		t.Fatalf("default max_concurrency: %v / %v, want 5", w["max_concurrency"], w["max_concurrent_jobs"])
	}
	if wrNum(t, w, "current_jobs") != 0 || wrNum(t, w, "current_job_count") != 0 {
		t.Fatalf("a new worker has jobs: %v", w)
	}
	if w["created_at"] == nil || w["created_at"] != w["registered_at"] || w["last_heartbeat"] == nil {
		t.Fatalf("created_at %v, registered_at %v, last_heartbeat %v", w["created_at"], w["registered_at"], w["last_heartbeat"])
	}
	if m, ok := w["metadata"].(map[string]any); !ok || len(m) != 0 {
		t.Fatalf("default metadata %v, want {}", w["metadata"])
	}
	if qs, _ := w["queue_names"].([]any); len(qs) != 1 || qs[0] != "emails" {
		t.Fatalf("queue_names %v, want [emails]", w["queue_names"])
	}
	if ev := h.wrEvents(id); len(ev) != 1 || ev[0].Type != "worker.registered" || !strings.HasPrefix(ev[0].Actor, "api_key:") {
		t.Fatalf("events after register: %+v", ev)
	}

	// Every optional field, and the range limits themselves.
	long := strings.Repeat("h", 255)
	id2 := h.wrRegister(key, map[string]any{
		"queue_name": "emails", "queue_names": []string{"sms", "emails", "push"}, "hostname": long,
		"worker_type": "python", "max_concurrency": 100, "metadata": map[string]any{"region": "eu", "n": 2},
		"version": "1.2.3",
	})
	if id2 == id {
		t.Fatal("two registrations got the same id")
	}
	w2 := h.wrGet(key, id2)
	var qs []string
	for _, q := range w2["queue_names"].([]any) {
		qs = append(qs, q.(string))
	}
	slices.Sort(qs)
	if !slices.Equal(qs, []string{"emails", "push", "sms"}) {
		t.Fatalf("queue_names %v, want emails, push, sms once each", w2["queue_names"])
	}
	if w2["hostname"] != long || w2["worker_type"] != "python" || w2["version"] != "1.2.3" ||
		wrNum(t, w2, "max_concurrency") != 100 || wrNum(t, w2, "max_concurrent_jobs") != 100 {
		t.Fatalf("worker %v", w2)
	}
	if m := w2["metadata"].(map[string]any); m["region"] != "eu" || m["n"] != float64(2) {
		t.Fatalf("metadata %v", m)
	}
	h.wrRegister(key, map[string]any{"queue_name": "emails", "hostname": "a", "max_concurrency": 1})
	h.wrRegister(key, map[string]any{"queue_name": "emails", "hostname": "node_1.example.com", "metadata": nil})
}

// TestWorkerListAndGet: the list is the summary shape, newest heartbeat
// first, and it includes offline workers; GET carries both Spooled's and
// the SDK's field names, current_jobs being what the worker reported and
// current_job_count the leases it holds.
func TestWorkerListAndGet(t *testing.T) {
	t.Parallel()
	clk := clock.NewPinned(time.Now())
	h := newHarnessClock(t, clk)
	_, key := h.org("acme")
	_, otherKey := h.org("other")

	if l := h.wrList(key); len(l) != 0 {
		t.Fatalf("new organization lists workers: %v", l)
	}
	older := h.wrRegister(key, map[string]any{"queue_name": "q", "hostname": "old", "max_concurrency": 4})
	clk.Advance(time.Second)
	newer := h.wrRegister(key, map[string]any{"queue_name": "q", "hostname": "new"})

	order := func() []string {
		t.Helper()
		var ids []string
		for _, w := range h.wrList(key) {
			ids = append(ids, w["id"].(string))
		}
		return ids
	}
	if got := order(); !slices.Equal(got, []string{newer, older}) {
		t.Fatalf("list order %v, want newest heartbeat first %v", got, []string{newer, older})
	}
	clk.Advance(time.Second)
	h.do("POST", "/api/v1/workers/"+older+"/heartbeat", key, map[string]any{"current_jobs": 7}).expect(200)
	if got := order(); !slices.Equal(got, []string{older, newer}) {
		t.Fatalf("after a heartbeat, list order %v, want %v", got, []string{older, newer})
	}

	// Two leases held by the older worker.
	for range 3 {
		h.do("POST", "/api/v1/jobs", key, map[string]any{"queue_name": "q", "payload": map[string]any{}}).expect(201)
	}
	cl := h.do("POST", "/api/v1/jobs/claim", key, map[string]any{"queue_name": "q", "worker_id": older, "limit": 2}).expect(200)
	if n := len(cl.json["jobs"].([]any)); n != 2 {
		t.Fatalf("claimed %d, want 2", n)
	}

	list := h.wrList(key)
	for _, w := range list {
		for _, k := range []string{"id", "queue_name", "hostname", "status", "current_jobs", "max_concurrency", "last_heartbeat"} {
			if _, ok := w[k]; !ok {
				t.Fatalf("list entry lacks %q: %v", k, w)
			}
		}
	}
	lo := list[0]
	if lo["id"] != older || lo["hostname"] != "old" || lo["queue_name"] != "q" || lo["status"] != "healthy" ||
		wrNum(t, lo, "current_jobs") != 7 || wrNum(t, lo, "max_concurrency") != 4 || wrNum(t, lo, "leased_jobs") != 2 {
		t.Fatalf("list entry %v", lo)
	}
	if ln := list[1]; wrNum(t, ln, "current_jobs") != 0 || wrNum(t, ln, "max_concurrency") != 5 {
		t.Fatalf("list entry %v", ln)
	}

	g := h.wrGet(key, older)
	if wrNum(t, g, "current_jobs") != 7 || wrNum(t, g, "current_job_count") != 2 ||
		wrNum(t, g, "max_concurrency") != 4 || wrNum(t, g, "max_concurrent_jobs") != 4 {
		t.Fatalf("get %v", g)
	}
	if g["created_at"] != g["registered_at"] || g["last_heartbeat"] == g["created_at"] {
		t.Fatalf("created_at %v, registered_at %v, last_heartbeat %v", g["created_at"], g["registered_at"], g["last_heartbeat"])
	}
	created, err1 := time.Parse(time.RFC3339Nano, g["created_at"].(string))
	beat, err2 := time.Parse(time.RFC3339Nano, g["last_heartbeat"].(string))
	if err1 != nil || err2 != nil || beat.Sub(created) != 2*time.Second {
		t.Fatalf("created_at %v, last_heartbeat %v: want 2s apart (%v, %v)", g["created_at"], g["last_heartbeat"], err1, err2)
	}

	// Offline workers stay listed.
	h.do("POST", "/api/v1/workers/"+newer+"/deregister", key, nil).expect(204)
	list = h.wrList(key)
	if len(list) != 2 || list[1]["id"] != newer || list[1]["status"] != "offline" {
		t.Fatalf("after deregister, list %v", list)
	}
	if l := h.wrList(otherKey); len(l) != 0 {
		t.Fatalf("another organization lists %v", l)
	}
}

// TestWorkerHeartbeat: a heartbeat moves last_heartbeat, stores the
// reported job count, replaces metadata only when given, takes a reported
// status (unknown ones count as healthy) and logs status changes.
func TestWorkerHeartbeat(t *testing.T) {
	t.Parallel()
	clk := clock.NewPinned(time.Now())
	h := newHarnessClock(t, clk)
	_, key := h.org("acme")
	id := h.wrRegister(key, map[string]any{"queue_name": "q", "hostname": "h", "metadata": map[string]any{"a": 1}})
	before := h.wrGet(key, id)

	clk.Advance(3 * time.Second)
	h.do("POST", "/api/v1/workers/"+id+"/heartbeat", key, map[string]any{"current_jobs": 2}).expect(200)
	w := h.wrGet(key, id)
	if w["last_heartbeat"] == before["last_heartbeat"] || wrNum(t, w, "current_jobs") != 2 || w["status"] != "healthy" {
		t.Fatalf("after heartbeat %v (before %v)", w, before)
	}
	if m := w["metadata"].(map[string]any); len(m) != 1 || m["a"] != float64(1) {
		t.Fatalf("a heartbeat without metadata changed it: %v", m)
	}
	if ev := h.wrEvents(id); len(ev) != 1 {
		t.Fatalf("a heartbeat that changes no status logged events: %+v", ev)
	}

	h.do("POST", "/api/v1/workers/"+id+"/heartbeat", key,
		map[string]any{"current_jobs": 0, "status": "draining", "metadata": map[string]any{"b": "x"}}).expect(200)
	w = h.wrGet(key, id)
	if w["status"] != "draining" || wrNum(t, w, "current_jobs") != 0 {
		t.Fatalf("after draining heartbeat %v", w)
	}
	if m := w["metadata"].(map[string]any); len(m) != 1 || m["b"] != "x" {
		t.Fatalf("metadata %v, want replaced by {b: x}", m)
	}
	ev := h.wrEvents(id)
	if len(ev) != 2 || ev[1].Type != "worker.status_changed" || ev[1].Data["old_status"] != "healthy" ||
		ev[1].Data["new_status"] != "draining" || !strings.HasPrefix(ev[1].Actor, "api_key:") {
		t.Fatalf("events %+v", ev)
	}

	h.do("POST", "/api/v1/workers/"+id+"/heartbeat", key, map[string]any{"current_jobs": 1, "status": "sleepy"}).expect(200)
	if w := h.wrGet(key, id); w["status"] != "healthy" {
		t.Fatalf("unknown status gave %v, want healthy", w["status"])
	}
	ev = h.wrEvents(id)
	if len(ev) != 3 || ev[2].Data["old_status"] != "draining" || ev[2].Data["new_status"] != "healthy" {
		t.Fatalf("events %+v", ev)
	}
}

// TestWorkerDeregister: both routes answer 204 with no body and leave the
// worker offline; its leased jobs go back to pending at once without
// spending a retry, each with job.released in its history.
func TestWorkerDeregister(t *testing.T) {
	t.Parallel()
	clk := clock.NewPinned(time.Now())
	h := newHarnessClock(t, clk)
	_, key := h.org("acme")

	for _, route := range []struct{ method, suffix string }{{"POST", "/deregister"}, {"DELETE", ""}} {
		t.Run(route.method, func(t *testing.T) {
			h := h.as(t)
			id := h.wrRegister(key, map[string]any{"queue_name": "q-" + strings.ToLower(route.method), "hostname": "h"})
			queue := "q-" + strings.ToLower(route.method)

			// One job that already spent a retry, one fresh one, and one
			// leased to somebody else.
			spent := h.do("POST", "/api/v1/jobs", key, map[string]any{"queue_name": queue, "payload": map[string]any{}, "priority": 10}).expect(201).json["id"].(string)
			cl := h.do("POST", "/api/v1/jobs/claim", key, map[string]any{"queue_name": queue, "worker_id": id}).expect(200)
			lease := cl.json["jobs"].([]any)[0].(map[string]any)["lease_id"]
			fr := h.do("POST", "/api/v1/jobs/"+spent+"/fail", key, map[string]any{"worker_id": id, "lease_id": lease, "error": "x"}).expect(200)
			if fr.json["will_retry"] != true {
				t.Fatalf("fail %s", fr.raw)
			}
			retryAt, err := time.Parse(time.RFC3339Nano, fr.json["next_retry_at"].(string))
			if err != nil {
				t.Fatal(err)
			}
			clk.Set(retryAt.Add(time.Second))
			fresh := h.do("POST", "/api/v1/jobs", key, map[string]any{"queue_name": queue, "payload": map[string]any{}}).expect(201).json["id"].(string)
			cl = h.do("POST", "/api/v1/jobs/claim", key, map[string]any{"queue_name": queue, "worker_id": id, "limit": 10}).expect(200)
			if n := len(cl.json["jobs"].([]any)); n != 2 {
				t.Fatalf("worker claimed %d jobs, want 2: %s", n, cl.raw)
			}
			other := h.do("POST", "/api/v1/jobs", key, map[string]any{"queue_name": queue, "payload": map[string]any{}}).expect(201).json["id"].(string)
			h.do("POST", "/api/v1/jobs/claim", key, map[string]any{"queue_name": queue, "worker_id": "someone-else"}).expect(200)

			res := h.do(route.method, "/api/v1/workers/"+id+route.suffix, key, nil).expect(204)
			if len(res.raw) != 0 {
				t.Fatalf("204 with body %q", res.raw)
			}
			w := h.wrGet(key, id)
			if w["status"] != "offline" || wrNum(t, w, "current_job_count") != 0 {
				t.Fatalf("after deregister %v", w)
			}
			ev := h.wrEvents(id)
			if last := ev[len(ev)-1]; last.Type != "worker.deregistered" || last.Data["released_jobs"] != float64(2) {
				t.Fatalf("worker events %+v", ev)
			}

			for _, c := range []struct {
				id      string
				retries int
			}{{spent, 1}, {fresh, 0}} {
				j := h.do("GET", "/api/v1/jobs/"+c.id, key, nil).expect(200).json
				if j["status"] != "pending" || wrNum(t, j, "retry_count") != c.retries || j["lease_id"] != nil || j["lease_expires_at"] != nil {
					t.Fatalf("released job %v; want pending, retry_count %d, no lease", j, c.retries)
				}
				evs := h.do("GET", "/api/v1/jobs/"+c.id+"/history", key, nil).expect(200).json["events"].([]any)
				last := evs[len(evs)-1].(map[string]any)
				data := last["data"].(map[string]any)
				if last["type"] != "job.released" || data["worker_id"] != id || data["reason"] != "worker_deregistered" {
					t.Fatalf("last event of %s: %v", c.id, last)
				}
			}
			if j := h.do("GET", "/api/v1/jobs/"+other, key, nil).expect(200).json; j["status"] != "processing" || j["assigned_worker_id"] != "someone-else" {
				t.Fatalf("another worker's job was touched: %v", j)
			}

			// Released jobs are claimable at once by another worker.
			cl = h.do("POST", "/api/v1/jobs/claim", key, map[string]any{"queue_name": queue, "worker_id": "w2", "limit": 10}).expect(200)
			var got []string
			for _, j := range cl.json["jobs"].([]any) {
				got = append(got, j.(map[string]any)["id"].(string))
			}
			slices.Sort(got)
			want := []string{spent, fresh}
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("another worker claimed %v, want %v", got, want)
			}
		})
	}
}

// TestWorkerBadInput: every malformed request to a worker route is refused
// with its documented status and code, naming the field, and writes
// nothing.
func TestWorkerBadInput(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	id := h.wrRegister(key, map[string]any{"queue_name": "q", "hostname": "h"})

	type tc struct {
		name   string
		method string
		path   string
		body   any
		status int
		code   string
		field  string // details[0].field, when the answer names one
	}
	reg, beat := "/api/v1/workers/register", "/api/v1/workers/"+id+"/heartbeat"
	ok := func(extra map[string]any) map[string]any {
		b := map[string]any{"queue_name": "q", "hostname": "host"}
		for k, v := range extra {
			b[k] = v
		}
		return b
	}
	cases := []tc{
		{"missing queue_name", "POST", reg, map[string]any{"hostname": "h"}, 400, "INVALID_JSON", "queue_name"},
		{"missing hostname", "POST", reg, map[string]any{"queue_name": "q"}, 400, "INVALID_JSON", "hostname"},
		{"empty object", "POST", reg, map[string]any{}, 400, "INVALID_JSON", "queue_name"},
		{"hostname leading dash", "POST", reg, ok(map[string]any{"hostname": "-host"}), 400, "VALIDATION_ERROR", "hostname"},
		{"hostname trailing dash", "POST", reg, ok(map[string]any{"hostname": "host-"}), 400, "VALIDATION_ERROR", "hostname"},
		{"hostname leading dot", "POST", reg, ok(map[string]any{"hostname": ".host"}), 400, "VALIDATION_ERROR", "hostname"},
		{"hostname trailing dot", "POST", reg, ok(map[string]any{"hostname": "host."}), 400, "VALIDATION_ERROR", "hostname"},
		{"hostname with spaces", "POST", reg, ok(map[string]any{"hostname": "my host"}), 400, "VALIDATION_ERROR", "hostname"},
		{"hostname with slash", "POST", reg, ok(map[string]any{"hostname": "a/b"}), 400, "VALIDATION_ERROR", "hostname"},
		{"hostname 256 chars", "POST", reg, ok(map[string]any{"hostname": strings.Repeat("h", 256)}), 400, "VALIDATION_ERROR", "hostname"},
		{"hostname empty", "POST", reg, ok(map[string]any{"hostname": ""}), 400, "VALIDATION_ERROR", "hostname"},
		{"hostname not a string", "POST", reg, ok(map[string]any{"hostname": 5}), 400, "INVALID_JSON", "hostname"},
		{"queue_name empty", "POST", reg, ok(map[string]any{"queue_name": ""}), 400, "VALIDATION_ERROR", "queue_name"},
		{"queue_name bad chars", "POST", reg, ok(map[string]any{"queue_name": "a b"}), 400, "VALIDATION_ERROR", "queue_name"},
		{"queue_name too long", "POST", reg, ok(map[string]any{"queue_name": strings.Repeat("q", 101)}), 400, "VALIDATION_ERROR", "queue_name"},
		{"queue_names bad entry", "POST", reg, ok(map[string]any{"queue_names": []string{"ok", "no way"}}), 400, "VALIDATION_ERROR", "queue_names"},
		{"queue_names not an array", "POST", reg, ok(map[string]any{"queue_names": "q"}), 400, "INVALID_JSON", "queue_names"},
		{"max_concurrency 0", "POST", reg, ok(map[string]any{"max_concurrency": 0}), 400, "VALIDATION_ERROR", "max_concurrency"},
		{"max_concurrency 101", "POST", reg, ok(map[string]any{"max_concurrency": 101}), 400, "VALIDATION_ERROR", "max_concurrency"},
		{"max_concurrency negative", "POST", reg, ok(map[string]any{"max_concurrency": -1}), 400, "VALIDATION_ERROR", "max_concurrency"},
		{"max_concurrency fractional", "POST", reg, ok(map[string]any{"max_concurrency": 2.5}), 400, "INVALID_JSON", "max_concurrency"},
		{"max_concurrency string", "POST", reg, ok(map[string]any{"max_concurrency": "5"}), 400, "INVALID_JSON", "max_concurrency"},
		{"metadata array", "POST", reg, ok(map[string]any{"metadata": []int{1}}), 400, "VALIDATION_ERROR", "metadata"},
		{"metadata string", "POST", reg, ok(map[string]any{"metadata": "x"}), 400, "VALIDATION_ERROR", "metadata"},
		{"metadata number", "POST", reg, ok(map[string]any{"metadata": 3}), 400, "VALIDATION_ERROR", "metadata"},
		{"metadata boolean", "POST", reg, ok(map[string]any{"metadata": true}), 400, "VALIDATION_ERROR", "metadata"},
		{"worker_type 51 chars", "POST", reg, ok(map[string]any{"worker_type": strings.Repeat("t", 51)}), 400, "VALIDATION_ERROR", "worker_type"},
		{"version 51 chars", "POST", reg, ok(map[string]any{"version": strings.Repeat("v", 51)}), 400, "VALIDATION_ERROR", "version"},
		{"register malformed JSON", "POST", reg, `{"queue_name": "q", "hostname": `, 400, "INVALID_JSON", "body"},
		{"register not JSON", "POST", reg, `queue_name=q&hostname=h`, 400, "INVALID_JSON", "body"},
		{"register array body", "POST", reg, `[{"queue_name":"q","hostname":"h"}]`, 400, "INVALID_JSON", "body"},
		{"register two values", "POST", reg, `{"queue_name":"q","hostname":"h"} {}`, 400, "INVALID_JSON", "body"},
		{"register empty body", "POST", reg, "", 400, "INVALID_JSON", "body"},

		{"current_jobs missing", "POST", beat, map[string]any{"status": "healthy"}, 400, "INVALID_JSON", "current_jobs"},
		{"current_jobs negative", "POST", beat, map[string]any{"current_jobs": -1}, 400, "VALIDATION_ERROR", "current_jobs"},
		{"current_jobs string", "POST", beat, map[string]any{"current_jobs": "1"}, 400, "INVALID_JSON", "current_jobs"},
		{"current_jobs fractional", "POST", beat, map[string]any{"current_jobs": 1.5}, 400, "INVALID_JSON", "current_jobs"},
		{"current_jobs null", "POST", beat, map[string]any{"current_jobs": nil}, 400, "INVALID_JSON", "current_jobs"},
		{"heartbeat metadata array", "POST", beat, map[string]any{"current_jobs": 1, "metadata": []int{1}}, 400, "VALIDATION_ERROR", "metadata"},
		{"heartbeat metadata string", "POST", beat, map[string]any{"current_jobs": 1, "metadata": "x"}, 400, "VALIDATION_ERROR", "metadata"},
		{"heartbeat status not a string", "POST", beat, map[string]any{"current_jobs": 1, "status": 3}, 400, "INVALID_JSON", "status"},
		{"heartbeat malformed JSON", "POST", beat, `{"current_jobs": 1`, 400, "INVALID_JSON", "body"},
		{"heartbeat empty body", "POST", beat, "", 400, "INVALID_JSON", "body"},

		{"get unknown id", "GET", "/api/v1/workers/" + uuid.NewString(), nil, 404, "NOT_FOUND", ""},
		{"get id not a UUID", "GET", "/api/v1/workers/not-a-worker", nil, 404, "NOT_FOUND", ""},
		{"heartbeat unknown id", "POST", "/api/v1/workers/" + uuid.NewString() + "/heartbeat", map[string]any{"current_jobs": 0}, 404, "NOT_FOUND", ""},
		{"deregister unknown id", "POST", "/api/v1/workers/" + uuid.NewString() + "/deregister", nil, 404, "NOT_FOUND", ""},
		{"delete unknown id", "DELETE", "/api/v1/workers/" + uuid.NewString(), nil, 404, "NOT_FOUND", ""},
		{"delete id not a UUID", "DELETE", "/api/v1/workers/nope", nil, 404, "NOT_FOUND", ""},
		{"no key", "POST", reg, ok(nil), 401, "UNAUTHORIZED", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := h.as(t)
			k := key
			if c.code == "UNAUTHORIZED" {
				k = ""
			}
			before := h.wrState()
			res := h.do(c.method, c.path, k, c.body).expectError(c.status, c.code)
			if c.field != "" {
				d, _ := res.json["details"].([]any)
				if len(d) == 0 || d[0].(map[string]any)["field"] != c.field {
					t.Fatalf("details %v, want field %q", res.json["details"], c.field)
				}
			}
			if after := h.wrState(); after != before {
				t.Fatalf("refused request wrote: %s -> %s", before, after)
			}
		})
	}
	if w := h.wrGet(key, id); w["status"] != "healthy" || wrNum(t, w, "current_jobs") != 0 {
		t.Fatalf("refused heartbeats changed the worker: %v", w)
	}
}

// TestWorkerKeyQueues: an API key limited to some queues may register
// workers only for those; [] and ["*"] allow every queue.
func TestWorkerKeyQueues(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	keyFor := func(queues []string) string {
		t.Helper()
		res := h.do("POST", "/api/v1/api-keys", key, map[string]any{"name": "k", "queues": queues}).expect(201)
		return res.json["key"].(string)
	}
	onlyA := keyFor([]string{"a"})

	before := h.wrState()
	h.do("POST", "/api/v1/workers/register", onlyA, map[string]any{"queue_name": "b", "hostname": "h"}).expectError(403, "ACCESS_DENIED")
	h.do("POST", "/api/v1/workers/register", onlyA,
		map[string]any{"queue_name": "a", "queue_names": []string{"b"}, "hostname": "h"}).expectError(403, "ACCESS_DENIED")
	if after := h.wrState(); after != before {
		t.Fatal("a refused registration wrote")
	}
	if l := h.wrList(key); len(l) != 0 {
		t.Fatalf("refused registrations are listed: %v", l)
	}
	h.wrRegister(onlyA, map[string]any{"queue_name": "a", "hostname": "h"})
	h.wrRegister(keyFor([]string{"*"}), map[string]any{"queue_name": "b", "hostname": "h"})
	h.wrRegister(keyFor([]string{}), map[string]any{"queue_name": "c", "hostname": "h"})
	h.wrRegister(keyFor([]string{"a", "b"}), map[string]any{"queue_name": "b", "queue_names": []string{"a"}, "hostname": "h"})
	if l := h.wrList(key); len(l) != 4 {
		t.Fatalf("listed %d workers, want 4", len(l))
	}
}

// TestWorkerTenancy: another organization's worker is indistinguishable
// from a missing one, and cannot be touched.
func TestWorkerTenancy(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	_, intruder := h.org("intruder")
	id := h.wrRegister(key, map[string]any{"queue_name": "q", "hostname": "h"})
	h.do("POST", "/api/v1/jobs", key, map[string]any{"queue_name": "q", "payload": map[string]any{}}).expect(201)
	h.do("POST", "/api/v1/jobs/claim", key, map[string]any{"queue_name": "q", "worker_id": id}).expect(200)
	before := h.wrState()

	h.do("GET", "/api/v1/workers/"+id, intruder, nil).expectError(404, "NOT_FOUND")
	h.do("POST", "/api/v1/workers/"+id+"/heartbeat", intruder, map[string]any{"current_jobs": 3, "status": "draining"}).expectError(404, "NOT_FOUND")
	h.do("POST", "/api/v1/workers/"+id+"/deregister", intruder, nil).expectError(404, "NOT_FOUND")
	h.do("DELETE", "/api/v1/workers/"+id, intruder, nil).expectError(404, "NOT_FOUND")
	if after := h.wrState(); after != before {
		t.Fatal("another organization's requests changed the worker or the log")
	}
	if l := h.wrList(intruder); len(l) != 0 {
		t.Fatalf("intruder lists %v", l)
	}
	w := h.wrGet(key, id)
	if w["status"] != "healthy" || wrNum(t, w, "current_job_count") != 1 {
		t.Fatalf("worker after intrusion %v", w)
	}
}
