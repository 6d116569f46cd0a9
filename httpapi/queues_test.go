package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/spooled-go/spooled/internal/clock"
)

// The exact key sets of the queue routes' answers.
var (
	queueConfigKeys = []string{"id", "organization_id", "queue_name", "max_retries", "default_timeout",
		"rate_limit", "rate_limit_per_second", "max_concurrent_jobs", "enabled", "paused", "paused_at",
		"paused_reason", "settings", "created_at", "updated_at"}
	queueListKeys = []string{"queue_name", "max_retries", "default_timeout", "rate_limit",
		"max_concurrent_jobs", "enabled", "paused"}
	queueStatsKeys = []string{"queue_name", "pending_jobs", "scheduled_jobs", "processing_jobs",
		"completed_jobs", "deadletter_jobs", "completed_jobs_24h", "failed_jobs_24h", "deadlettered_jobs_24h",
		"avg_processing_time_ms", "max_job_age_seconds", "active_workers"}
	pauseKeys  = []string{"queue_name", "paused", "paused_at", "reason"}
	resumeKeys = []string{"queue_name", "resumed", "paused_duration_secs"}
)

// expectKeys fails unless m has exactly keys.
func expectKeys(t *testing.T, what string, m map[string]any, keys []string) {
	t.Helper()
	got := make([]string, 0, len(m))
	for k := range m {
		got = append(got, k)
	}
	want := slices.Clone(keys)
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Fatalf("%s: keys %v, want %v", what, got, want)
	}
}

// jsonValue is v as it reads back from JSON (numbers become float64).
func jsonValue(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// expectFields fails unless each key of want has that value in m.
func expectFields(t *testing.T, what string, m map[string]any, want map[string]any) {
	t.Helper()
	for k, w := range want {
		got, ok := m[k]
		if !ok {
			t.Fatalf("%s: no key %q in %v", what, k, m)
		}
		if wv := jsonValue(t, w); !reflect.DeepEqual(got, wv) {
			t.Fatalf("%s: %s = %#v, want %#v (all: %v)", what, k, got, wv, m)
		}
	}
}

// keyID is the id of the organization's first API key (the actor of its
// requests in the log).
func (h *harness) keyID(orgID string) string {
	h.t.Helper()
	var id string
	if err := h.pool.QueryRow(context.Background(),
		`SELECT id::text FROM api_keys WHERE organization_id = $1 ORDER BY created_at LIMIT 1`, orgID).Scan(&id); err != nil {
		h.t.Fatalf("key id: %v", err)
	}
	return id
}

// queueEvent is one event of a queue stream.
type queueEvent struct {
	StreamID, Type, Actor, Queue string
	Seq                          int
	Data                         map[string]any
}

// queueEvents lists an organization's queue-stream events in log order.
func (h *harness) queueEvents(orgID string) []queueEvent {
	h.t.Helper()
	rows, err := h.pool.Query(context.Background(), `
		SELECT stream_id, event_type, actor, coalesce(queue_name, ''), stream_seq, data
		FROM job_events WHERE organization_id = $1 AND stream_type = 'queue' ORDER BY position`, orgID)
	if err != nil {
		h.t.Fatalf("queue events: %v", err)
	}
	defer rows.Close()
	var out []queueEvent
	for rows.Next() {
		var e queueEvent
		var data []byte
		if err := rows.Scan(&e.StreamID, &e.Type, &e.Actor, &e.Queue, &e.Seq, &data); err != nil {
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

// eventTypes lists the types of the events of one queue.
func eventTypes(evs []queueEvent, queue string) []string {
	var out []string
	for _, e := range evs {
		if e.Queue == queue {
			out = append(out, e.Type)
		}
	}
	return out
}

// queueConfigPrint fingerprints every queue_config row (the limiter state
// included), for "nothing written" checks.
func (h *harness) queueConfigPrint() string {
	h.t.Helper()
	var s string
	if err := h.pool.QueryRow(context.Background(),
		`SELECT coalesce(string_agg(q::text, E'\n' ORDER BY organization_id, queue_name), '') FROM queue_config q`).Scan(&s); err != nil {
		h.t.Fatalf("queue_config: %v", err)
	}
	return s
}

// refusedQueue is refused that also checks queue_config is untouched.
func (h *harness) refusedQueue(method, path, key string, body any, status int, code string) response {
	h.t.Helper()
	before := h.queueConfigPrint()
	res := h.refused(method, path, key, body, status, code)
	if after := h.queueConfigPrint(); after != before {
		h.t.Fatalf("%s %s changed queue_config:\nbefore %s\nafter  %s", method, path, before, after)
	}
	return res
}

func num(t *testing.T, m map[string]any, k string) int {
	t.Helper()
	f, ok := m[k].(float64)
	if !ok {
		t.Fatalf("%s is %#v, not a number (all: %v)", k, m[k], m)
	}
	return int(f)
}

// tsOf is the pinned clock's time as the API prints timestamps.
func tsOf(c *clock.Pinned) string { return tsLayout(*c.Now()) }

// TestQueueConfigRoutes: PUT /queues/{name}/config and PUT /queues/{name}
// create and change a configuration; fields left out keep their values, an
// explicit null clears a limit, the path names the queue; GET /queues and
// GET /queues/{name} show it with every key; each change is a
// queue.configured event by the key.
func TestQueueConfigRoutes(t *testing.T) {
	t.Parallel()
	clk := clock.NewPinned(time.Now())
	h := newHarnessClock(t, clk)
	orgID, key := h.org("acme")
	actor := "api_key:" + h.keyID(orgID)

	res := h.do("GET", "/api/v1/queues", key, nil).expect(200)
	if string(res.raw) != "[]" {
		t.Fatalf("GET /queues with nothing configured: %s, want []", res.raw)
	}
	h.refusedQueue("GET", "/api/v1/queues/emails", key, nil, 404, "NOT_FOUND")

	created := tsOf(clk)
	q := h.do("PUT", "/api/v1/queues/emails/config", key, map[string]any{
		"queue_name": "not-this-one", "max_retries": 5, "default_timeout": 120, "rate_limit": 50,
		"max_concurrent_jobs": 4, "settings": map[string]any{"team": "mail"},
	}).expect(200).json
	expectKeys(t, "PUT config", q, queueConfigKeys)
	expectFields(t, "PUT config", q, map[string]any{
		"organization_id": orgID, "queue_name": "emails", "max_retries": 5, "default_timeout": 120,
		"rate_limit": 50, "rate_limit_per_second": 50, "max_concurrent_jobs": 4, "enabled": true, "paused": false,
		"paused_at": nil, "paused_reason": nil, "settings": map[string]any{"team": "mail"},
		"created_at": created, "updated_at": created,
	})
	id, _ := q["id"].(string)
	if id == "" {
		t.Fatalf("config without id: %v", q)
	}
	h.refusedQueue("GET", "/api/v1/queues/not-this-one", key, nil, 404, "NOT_FOUND")

	// Each step: a body and what the configuration is afterwards.
	state := map[string]any{"id": id, "organization_id": orgID, "queue_name": "emails", "max_retries": 5,
		"default_timeout": 120, "rate_limit": 50, "rate_limit_per_second": 50, "max_concurrent_jobs": 4,
		"enabled": true, "paused": false, "paused_at": nil, "paused_reason": nil,
		"settings": map[string]any{"team": "mail"}, "created_at": created}
	steps := []struct {
		path   string
		body   any
		change map[string]any
	}{
		{"/api/v1/queues/emails", map[string]any{"max_retries": 7}, map[string]any{"max_retries": 7}},
		{"/api/v1/queues/emails/config", map[string]any{"default_timeout": 60, "max_retries": 0},
			map[string]any{"default_timeout": 60, "max_retries": 0}},
		{"/api/v1/queues/emails/config", `{"rate_limit":null}`, map[string]any{"rate_limit": nil, "rate_limit_per_second": nil}},
		{"/api/v1/queues/emails", `{"max_concurrent_jobs":null,"settings":{"x":1}}`,
			map[string]any{"max_concurrent_jobs": nil, "settings": map[string]any{"x": 1}}},
		{"/api/v1/queues/emails", map[string]any{"rate_limit_per_second": 20, "max_concurrent_jobs": 9},
			map[string]any{"rate_limit": 20, "rate_limit_per_second": 20, "max_concurrent_jobs": 9}},
		{"/api/v1/queues/emails/config", `{}`, map[string]any{}},
		{"/api/v1/queues/emails", `{"queue_name":"emails","max_retries":null,"default_timeout":null,"settings":null}`, map[string]any{}},
		{"/api/v1/queues/emails/config", `{"rate_limit_per_second":null}`, map[string]any{"rate_limit": nil, "rate_limit_per_second": nil}},
		{"/api/v1/queues/emails", map[string]any{"max_retries": 100, "default_timeout": 86400, "rate_limit": 100000, "max_concurrent_jobs": 100000},
			map[string]any{"max_retries": 100, "default_timeout": 86400, "rate_limit": 100000, "rate_limit_per_second": 100000, "max_concurrent_jobs": 100000}},
	}
	for i, st := range steps {
		clk.Advance(time.Minute)
		for k, v := range st.change {
			state[k] = v
		}
		state["updated_at"] = tsOf(clk)
		what := fmt.Sprintf("step %d: PUT %s %v", i, st.path, st.body)
		got := h.do("PUT", st.path, key, st.body).expect(200).json
		expectKeys(t, what, got, queueConfigKeys)
		expectFields(t, what, got, state)
		again := h.do("GET", "/api/v1/queues/emails", key, nil).expect(200).json
		if !reflect.DeepEqual(again, got) {
			t.Fatalf("%s: GET answers %v, PUT answered %v", what, again, got)
		}
	}

	// A new queue takes the server's defaults for what the body leaves out.
	fresh := h.do("PUT", "/api/v1/queues/zeta", key, `{}`).expect(200).json
	expectFields(t, "new queue", fresh, map[string]any{"queue_name": "zeta", "max_retries": h.cfg.QueueDefaultMaxRetries,
		"default_timeout": h.cfg.QueueDefaultTimeoutSecs, "rate_limit": nil, "max_concurrent_jobs": nil,
		"enabled": true, "settings": map[string]any{}})
	h.do("PUT", "/api/v1/queues/alpha.v2/config", key, map[string]any{"queue_name": "alpha.v2", "rate_limit": 3}).expect(200)

	list := h.do("GET", "/api/v1/queues", key, nil).expect(200).list
	var names []string
	for _, it := range list {
		m := it.(map[string]any)
		expectKeys(t, "GET /queues item", m, queueListKeys)
		names = append(names, m["queue_name"].(string))
		if m["queue_name"] == "alpha.v2" {
			expectFields(t, "alpha.v2 in list", m, map[string]any{"max_retries": 3, "default_timeout": 300,
				"rate_limit": 3, "max_concurrent_jobs": nil, "enabled": true, "paused": false})
		}
		if m["queue_name"] == "emails" {
			expectFields(t, "emails in list", m, map[string]any{"max_retries": 100, "default_timeout": 86400,
				"rate_limit": 100000, "max_concurrent_jobs": 100000, "enabled": true, "paused": false})
		}
	}
	if want := []string{"alpha.v2", "emails", "zeta"}; !slices.Equal(names, want) {
		t.Fatalf("GET /queues lists %v, want %v (by name)", names, want)
	}

	// Every change is in the log, by the key, on the queue's stream.
	evs := h.queueEvents(orgID)
	if got := eventTypes(evs, "emails"); len(got) != 1+len(steps) {
		t.Fatalf("emails has events %v, want %d queue.configured", got, 1+len(steps))
	}
	seq := 0
	for _, e := range evs {
		if e.Type != "queue.configured" || e.Actor != actor {
			t.Fatalf("event %+v: want queue.configured by %s", e, actor)
		}
		if e.Queue != "emails" {
			continue
		}
		seq++
		if e.StreamID != id || e.Seq != seq {
			t.Fatalf("emails event %+v: want stream %s seq %d", e, id, seq)
		}
	}
	last := evs[len(steps)]
	expectFields(t, "last emails event data", last.Data, map[string]any{"max_retries": 100, "default_timeout": 86400,
		"rate_limit_per_second": 100000, "max_concurrent_jobs": 100000})
}

// TestQueueEnabledFlag: enabled false and true in a config body pause and
// resume explicitly; a config update that leaves enabled out never
// un-pauses the queue (Spooled reset it to enabled: the upstream bug).
func TestQueueEnabledFlag(t *testing.T) {
	t.Parallel()
	clk := clock.NewPinned(time.Now())
	h := newHarnessClock(t, clk)
	orgID, key := h.org("acme")
	actor := "api_key:" + h.keyID(orgID)
	job := h.enqueue(key, "q", nil)

	pausedAt := tsOf(clk)
	q := h.do("PUT", "/api/v1/queues/q", key, map[string]any{"max_retries": 2, "enabled": false}).expect(200).json
	expectKeys(t, "PUT enabled false", q, queueConfigKeys)
	expectFields(t, "PUT enabled false", q, map[string]any{"enabled": false, "paused": true, "paused_at": pausedAt,
		"max_retries": 2, "paused_reason": nil})
	if c := h.claim(key, "q", "w1", 5); len(c) != 0 {
		t.Fatalf("claim of a queue paused by config got %d jobs", len(c))
	}

	// Config changes of the paused queue, through both routes, leave it
	// paused with its pause time.
	for i, body := range []any{
		map[string]any{"max_retries": 4},
		`{"settings":{},"rate_limit":null}`,
		map[string]any{"queue_name": "q", "default_timeout": 30, "max_concurrent_jobs": 3, "settings": map[string]any{"a": 1}},
		`{}`,
	} {
		clk.Advance(time.Minute)
		path := "/api/v1/queues/q"
		if i%2 == 1 {
			path += "/config"
		}
		q = h.do("PUT", path, key, body).expect(200).json
		expectFields(t, fmt.Sprintf("PUT %s %v", path, body), q, map[string]any{"enabled": false, "paused": true, "paused_at": pausedAt})
		if got := h.do("GET", "/api/v1/queues/q", key, nil).expect(200).json; got["enabled"] != false {
			t.Fatalf("after PUT %v the queue is enabled: %v", body, got)
		}
		if c := h.claim(key, "q", "w1", 5); len(c) != 0 {
			t.Fatalf("after PUT %v a claim got %d jobs of the paused queue", body, len(c))
		}
	}
	// enabled: false again is no change.
	h.do("PUT", "/api/v1/queues/q", key, map[string]any{"enabled": false}).expect(200)

	clk.Advance(time.Minute)
	q = h.do("PUT", "/api/v1/queues/q/config", key, map[string]any{"enabled": true}).expect(200).json
	expectFields(t, "PUT enabled true", q, map[string]any{"enabled": true, "paused": false, "paused_at": nil,
		"paused_reason": nil, "max_retries": 4, "default_timeout": 30, "max_concurrent_jobs": 3,
		"settings": map[string]any{"a": 1}, "updated_at": tsOf(clk)})
	if c := h.claim(key, "q", "w1", 5); len(c) != 1 || c[0].ID != job {
		t.Fatalf("claim after enabled: true got %v, want job %s", c, job)
	}
	h.do("PUT", "/api/v1/queues/q/config", key, map[string]any{"enabled": true}).expect(200)

	evs := h.queueEvents(orgID)
	want := []string{"queue.configured", "queue.paused", "queue.configured", "queue.configured", "queue.configured",
		"queue.configured", "queue.configured", "queue.configured", "queue.resumed", "queue.configured"}
	if got := eventTypes(evs, "q"); !slices.Equal(got, want) {
		t.Fatalf("queue events %v, want %v", got, want)
	}
	for i, e := range evs {
		if e.Actor != actor || e.StreamID != q["id"] || e.Seq != i+1 {
			t.Fatalf("event %d %+v: want actor %s, stream %v, seq %d", i, e, actor, q["id"], i+1)
		}
	}
	expectFields(t, "resumed data", evs[8].Data, map[string]any{"paused_duration_secs": 5 * 60})
}

// TestQueuePauseResume: a pause stops claims from the next request on while
// enqueues go on; pausing again keeps the first pause; resume lets claims
// take the jobs; both are events by the key; resume of a queue never
// configured is 404.
func TestQueuePauseResume(t *testing.T) {
	t.Parallel()
	clk := clock.NewPinned(time.Now())
	h := newHarnessClock(t, clk)
	orgID, key := h.org("acme")
	actor := "api_key:" + h.keyID(orgID)
	for range 3 {
		h.enqueue(key, "work", nil)
	}
	h.claimOne(key, "work", "w1")

	pausedAt := tsOf(clk)
	p := h.do("POST", "/api/v1/queues/work/pause", key, map[string]any{"reason": "deploy"}).expect(200).json
	expectKeys(t, "pause", p, pauseKeys)
	expectFields(t, "pause", p, map[string]any{"queue_name": "work", "paused": true, "paused_at": pausedAt, "reason": "deploy"})
	if c := h.claim(key, "work", "w1", 10); len(c) != 0 {
		t.Fatalf("the first claim after the pause got %d jobs", len(c))
	}
	late := h.enqueue(key, "work", nil) // enqueue still works
	if c := h.claim(key, "work", "w2", 10); len(c) != 0 {
		t.Fatalf("a claim of the paused queue got %d jobs", len(c))
	}
	h.do("POST", "/api/v1/jobs/bulk", key, map[string]any{"queue_name": "work",
		"jobs": []any{map[string]any{"payload": 1}, map[string]any{"payload": 2}}}).expect(200)
	// Other queues are not paused.
	other := h.enqueue(key, "other", nil)
	if c := h.claimOne(key, "other", "w1"); c.ID != other {
		t.Fatalf("claimed %s from other, want %s", c.ID, other)
	}

	cfg := h.do("GET", "/api/v1/queues/work", key, nil).expect(200).json
	expectFields(t, "paused config", cfg, map[string]any{"enabled": false, "paused": true, "paused_at": pausedAt,
		"paused_reason": "deploy", "max_retries": h.cfg.QueueDefaultMaxRetries,
		"default_timeout": h.cfg.QueueDefaultTimeoutSecs, "settings": map[string]any{},
		"created_at": pausedAt, "updated_at": pausedAt})

	// Pausing again changes nothing: the first pause time and reason stay,
	// and the log records no second pause.
	clk.Advance(30 * time.Second)
	for _, body := range []any{map[string]any{"reason": "again"}, nil, `{}`} {
		p = h.do("POST", "/api/v1/queues/work/pause", key, body).expect(200).json
		expectKeys(t, "second pause", p, pauseKeys)
		expectFields(t, "second pause", p, map[string]any{"paused": true, "paused_at": pausedAt, "reason": "deploy"})
	}
	if again := h.do("GET", "/api/v1/queues/work", key, nil).expect(200).json; !reflect.DeepEqual(again, cfg) {
		t.Fatalf("a pause of the paused queue changed it:\nbefore %v\nafter  %v", cfg, again)
	}

	clk.Advance(60 * time.Second)
	r := h.do("POST", "/api/v1/queues/work/resume", key, nil).expect(200).json
	expectKeys(t, "resume", r, resumeKeys)
	expectFields(t, "resume", r, map[string]any{"queue_name": "work", "resumed": true, "paused_duration_secs": 90})
	got := h.claim(key, "work", "w1", 10)
	if len(got) != 5 {
		t.Fatalf("claim after resume got %d jobs, want the 5 waiting", len(got))
	}
	if !slices.ContainsFunc(got, func(c claimed) bool { return c.ID == late }) {
		t.Fatalf("the job enqueued while paused was not claimed: %v", got)
	}
	cfg = h.do("GET", "/api/v1/queues/work", key, nil).expect(200).json
	expectFields(t, "resumed config", cfg, map[string]any{"enabled": true, "paused": false, "paused_at": nil,
		"paused_reason": nil, "updated_at": tsOf(clk)})

	// Resuming a running queue is no change: 0 paused seconds, no event.
	clk.Advance(time.Minute)
	r = h.do("POST", "/api/v1/queues/work/resume", key, `{}`).expect(200).json
	expectFields(t, "second resume", r, map[string]any{"resumed": true, "paused_duration_secs": 0})
	if again := h.do("GET", "/api/v1/queues/work", key, nil).expect(200).json; !reflect.DeepEqual(again, cfg) {
		t.Fatalf("a resume of the running queue changed it:\nbefore %v\nafter  %v", cfg, again)
	}

	// Pause with no body (the SDK may send none) and a reason of exactly
	// 500 characters (multi-byte) on a new queue.
	p = h.do("POST", "/api/v1/queues/fresh/pause", key, nil).expect(200).json
	expectFields(t, "pause without body", p, map[string]any{"queue_name": "fresh", "paused": true, "reason": nil})
	long := strings.Repeat("é", 500)
	p = h.do("POST", "/api/v1/queues/fresh2/pause", key, map[string]any{"reason": long}).expect(200).json
	expectFields(t, "pause with 500 characters", p, map[string]any{"reason": long})

	// Resume of a queue that was never configured: 404, nothing created.
	h.refusedQueue("POST", "/api/v1/queues/never/resume", key, nil, 404, "NOT_FOUND")
	h.refusedQueue("GET", "/api/v1/queues/never", key, nil, 404, "NOT_FOUND")

	evs := h.queueEvents(orgID)
	if got := eventTypes(evs, "work"); !slices.Equal(got, []string{"queue.paused", "queue.resumed"}) {
		t.Fatalf("work events %v, want one pause and one resume", got)
	}
	for _, e := range evs {
		if e.Actor != actor {
			t.Fatalf("event %+v: actor %q, want %q", e, e.Actor, actor)
		}
		if e.Queue != "work" {
			continue
		}
		if e.StreamID != cfg["id"] {
			t.Fatalf("event %+v on stream %s, want the config's %v", e, e.StreamID, cfg["id"])
		}
		switch e.Type {
		case "queue.paused":
			expectFields(t, "paused data", e.Data, map[string]any{"reason": "deploy"})
		case "queue.resumed":
			expectFields(t, "resumed data", e.Data, map[string]any{"paused_duration_secs": 90})
		}
	}
	if got := eventTypes(evs, "fresh"); !slices.Equal(got, []string{"queue.paused"}) {
		t.Fatalf("fresh events %v", got)
	}
}

// TestQueueDelete: a queue with waiting, scheduled or leased jobs cannot
// be deleted (409); without, its configuration goes (204) and its jobs
// stay; an unknown queue is 404.
func TestQueueDelete(t *testing.T) {
	t.Parallel()
	clk := clock.NewPinned(time.Now())
	h := newHarnessClock(t, clk)
	orgID, key := h.org("acme")
	actor := "api_key:" + h.keyID(orgID)
	cfg := h.do("PUT", "/api/v1/queues/q", key, map[string]any{"max_retries": 1}).expect(200).json

	job := h.enqueue(key, "q", nil)
	res := h.refusedQueue("DELETE", "/api/v1/queues/q", key, nil, 409, "CONFLICT")
	if msg := res.json["message"]; msg != "Cannot delete queue q with 1 pending/processing jobs" {
		t.Fatalf("409 message %q", msg)
	}
	c := h.claimOne(key, "q", "w1")
	sched := h.enqueue(key, "q", map[string]any{"scheduled_at": clk.Now().Add(time.Hour).Format(time.RFC3339Nano)})
	res = h.refusedQueue("DELETE", "/api/v1/queues/q", key, nil, 409, "CONFLICT")
	if msg := res.json["message"]; msg != "Cannot delete queue q with 2 pending/processing jobs" {
		t.Fatalf("409 message %q", msg)
	}
	h.do("DELETE", "/api/v1/jobs/"+sched, key, nil).expect(204)
	h.refusedQueue("DELETE", "/api/v1/queues/q", key, nil, 409, "CONFLICT") // still leased
	h.do("POST", "/api/v1/jobs/"+job+"/complete", key, map[string]any{"worker_id": "w1", "lease_id": c.Lease}).expect(200)

	res = h.do("DELETE", "/api/v1/queues/q", key, nil).expect(204)
	if len(res.raw) != 0 {
		t.Fatalf("204 with a body: %s", res.raw)
	}
	h.refusedQueue("GET", "/api/v1/queues/q", key, nil, 404, "NOT_FOUND")
	h.refusedQueue("DELETE", "/api/v1/queues/q", key, nil, 404, "NOT_FOUND")
	h.refusedQueue("DELETE", "/api/v1/queues/never", key, nil, 404, "NOT_FOUND")
	if st := h.jobStatus(key, job); st != "completed" {
		t.Fatalf("job is %s after its queue was deleted", st)
	}
	if list := h.do("GET", "/api/v1/queues", key, nil).expect(200); string(list.raw) != "[]" {
		t.Fatalf("GET /queues after delete: %s", list.raw)
	}
	// A queue with no configuration but waiting jobs: nothing to delete.
	h.enqueue(key, "bare", nil)
	h.refusedQueue("DELETE", "/api/v1/queues/bare", key, nil, 404, "NOT_FOUND")

	evs := h.queueEvents(orgID)
	if got := eventTypes(evs, "q"); !slices.Equal(got, []string{"queue.configured", "queue.deleted"}) {
		t.Fatalf("events %v", got)
	}
	if e := evs[1]; e.Actor != actor || e.StreamID != cfg["id"] || e.Seq != 2 {
		t.Fatalf("delete event %+v", e)
	}
	// Configured again, the queue is a new stream with the defaults.
	again := h.do("PUT", "/api/v1/queues/q/config", key, `{}`).expect(200).json
	if again["id"] == cfg["id"] || again["max_retries"] != float64(h.cfg.QueueDefaultMaxRetries) {
		t.Fatalf("reconfigured queue %v (old id %v)", again, cfg["id"])
	}
}

// TestQueueDefaultsApplyToNewJobs: a job that names no max_retries or
// timeout_seconds takes its queue's configuration; a job's own values win;
// unconfigured queues (and other organizations' queues of the same name)
// take the server's defaults; a change applies to later jobs only.
func TestQueueDefaultsApplyToNewJobs(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	_, otherKey := h.org("globex")
	h.do("PUT", "/api/v1/queues/mail/config", key, map[string]any{"max_retries": 7, "default_timeout": 42}).expect(200)

	job := func(key, id string) (int, int) {
		t.Helper()
		j := h.do("GET", "/api/v1/jobs/"+id, key, nil).expect(200).json
		return num(t, j, "max_retries"), num(t, j, "timeout_seconds")
	}
	expect := func(what string, gotR, gotT, wantR, wantT int) {
		t.Helper()
		if gotR != wantR || gotT != wantT {
			t.Fatalf("%s: max_retries %d timeout_seconds %d, want %d and %d", what, gotR, gotT, wantR, wantT)
		}
	}
	defR, defT := h.cfg.QueueDefaultMaxRetries, h.cfg.QueueDefaultTimeoutSecs

	plain := h.enqueue(key, "mail", nil)
	r, to := job(key, plain)
	expect("job naming nothing", r, to, 7, 42)
	own := h.enqueue(key, "mail", map[string]any{"max_retries": 1, "timeout_seconds": 9})
	r, to = job(key, own)
	expect("job naming its own", r, to, 1, 9)
	zero := h.enqueue(key, "mail", map[string]any{"max_retries": 0})
	r, to = job(key, zero)
	expect("job naming max_retries 0", r, to, 0, 42)
	bare := h.enqueue(key, "plain", nil)
	r, to = job(key, bare)
	expect("unconfigured queue", r, to, defR, defT)
	foreign := h.enqueue(otherKey, "mail", nil)
	r, to = job(otherKey, foreign)
	expect("another organization's queue of the same name", r, to, defR, defT)

	bulk := h.do("POST", "/api/v1/jobs/bulk", key, map[string]any{"queue_name": "mail",
		"jobs": []any{map[string]any{"payload": 1}}}).expect(200).json
	bulkID := bulk["succeeded"].([]any)[0].(map[string]any)["job_id"].(string)
	r, to = job(key, bulkID)
	expect("bulk job", r, to, 7, 42)
	bulk = h.do("POST", "/api/v1/jobs/bulk", key, map[string]any{"queue_name": "mail", "default_max_retries": 2,
		"default_timeout_seconds": 11, "jobs": []any{map[string]any{"payload": 1}}}).expect(200).json
	bulkID = bulk["succeeded"].([]any)[0].(map[string]any)["job_id"].(string)
	r, to = job(key, bulkID)
	expect("bulk job with batch defaults", r, to, 2, 11)

	// The claim hands the job's values to the worker.
	c := h.do("POST", "/api/v1/jobs/claim", key, map[string]any{"queue_name": "mail", "worker_id": "w", "limit": 1}).expect(200).json
	first := c["jobs"].([]any)[0].(map[string]any)
	if first["id"] != plain || first["max_retries"] != float64(7) || first["timeout_seconds"] != float64(42) {
		t.Fatalf("claimed %v, want %s with 7 and 42", first, plain)
	}

	// A change applies to jobs enqueued after it, not before.
	h.do("PUT", "/api/v1/queues/mail", key, map[string]any{"max_retries": 10}).expect(200)
	later := h.enqueue(key, "mail", nil)
	r, to = job(key, later)
	expect("job after the change", r, to, 10, 42)
	r, to = job(key, own)
	expect("job from before the change", r, to, 1, 9)
	r, to = job(key, zero)
	expect("job from before the change", r, to, 0, 42)
}

// TestQueueMaxConcurrentJobs: max_concurrent_jobs caps the queue's leases
// across workers; completing, failing or a lifted cap frees claims.
func TestQueueMaxConcurrentJobs(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	_, otherKey := h.org("globex")
	h.do("PUT", "/api/v1/queues/q", key, map[string]any{"max_concurrent_jobs": 2}).expect(200)
	for range 6 {
		h.enqueue(key, "q", nil)
	}
	for range 3 {
		h.enqueue(otherKey, "q", nil)
	}

	first := h.claim(key, "q", "w1", 5)
	if len(first) != 2 {
		t.Fatalf("claim under cap 2 got %d jobs", len(first))
	}
	for _, w := range []string{"w1", "w2", "w3"} {
		if c := h.claim(key, "q", w, 5); len(c) != 0 {
			t.Fatalf("claim by %s at the cap got %d jobs", w, len(c))
		}
	}
	// Another organization's queue of the same name has no cap.
	if c := h.claim(otherKey, "q", "w1", 5); len(c) != 3 {
		t.Fatalf("the other organization claimed %d jobs, want 3", len(c))
	}
	h.do("POST", "/api/v1/jobs/"+first[0].ID+"/complete", key, map[string]any{"worker_id": "w1", "lease_id": first[0].Lease}).expect(200)
	next := h.claim(key, "q", "w2", 5)
	if len(next) != 1 {
		t.Fatalf("claim after a complete got %d jobs, want 1", len(next))
	}
	if c := h.claim(key, "q", "w2", 5); len(c) != 0 {
		t.Fatalf("claim at the cap again got %d jobs", len(c))
	}
	// A failed attempt frees its slot too (the job waits for its backoff).
	h.do("POST", "/api/v1/jobs/"+next[0].ID+"/fail", key, map[string]any{"worker_id": "w2", "lease_id": next[0].Lease, "error": "x"}).expect(200)
	if c := h.claim(key, "q", "w3", 5); len(c) != 1 {
		t.Fatalf("claim after a fail got %d jobs, want 1", len(c))
	}
	// Raising the cap frees one more; clearing it frees the rest.
	h.do("PUT", "/api/v1/queues/q/config", key, map[string]any{"max_concurrent_jobs": 3}).expect(200)
	if c := h.claim(key, "q", "w3", 5); len(c) != 1 {
		t.Fatalf("claim under cap 3 got %d jobs, want 1", len(c))
	}
	if c := h.claim(key, "q", "w3", 5); len(c) != 0 {
		t.Fatalf("claim at cap 3 got %d jobs", len(c))
	}
	h.do("PUT", "/api/v1/queues/q", key, `{"max_concurrent_jobs":null}`).expect(200)
	// Five of the six jobs were claimed and one waits for its backoff.
	if c := h.claim(key, "q", "w3", 5); len(c) != 1 {
		t.Fatalf("claim without a cap got %d jobs, want the 1 left", len(c))
	}
}

// TestQueueRateLimit: rate_limit is a token bucket holding a tenth of a
// second's tokens (at least one), refilled by the (pinned) clock.
func TestQueueRateLimit(t *testing.T) {
	t.Parallel()
	clk := clock.NewPinned(time.Now())
	h := newHarnessClock(t, clk)
	_, key := h.org("acme")
	for range 60 {
		h.enqueue(key, "q", nil)
	}
	claimN := func(what string, limit, want int) {
		t.Helper()
		if c := h.claim(key, "q", "w", limit); len(c) != want {
			t.Fatalf("%s: claim of %d got %d jobs, want %d", what, limit, len(c), want)
		}
	}

	// 10/s: a bucket of one token.
	h.do("PUT", "/api/v1/queues/q", key, map[string]any{"rate_limit": 10}).expect(200)
	claimN("full bucket", 10, 1)
	claimN("empty bucket", 10, 0)
	clk.Advance(50 * time.Millisecond)
	claimN("half a token", 10, 0)
	clk.Advance(50 * time.Millisecond)
	claimN("one token after 100ms", 10, 1)
	clk.Advance(10 * time.Second)
	claimN("the bucket holds one token however long it waits", 10, 1)
	claimN("empty again", 1, 0)

	// 100/s: a bucket of ten.
	h.do("PUT", "/api/v1/queues/q/config", key, map[string]any{"rate_limit": 100}).expect(200)
	clk.Advance(time.Second)
	claimN("full bucket of 100/s", 20, 10)
	claimN("empty bucket of 100/s", 20, 0)
	clk.Advance(30 * time.Millisecond)
	claimN("30ms at 100/s", 20, 3)
	clk.Advance(20 * time.Millisecond)
	claimN("a claim takes no more than its limit", 1, 1)
	claimN("what it left stays in the bucket", 20, 1)

	// 25/s: ceil(2.5) = 3 tokens.
	h.do("PUT", "/api/v1/queues/q", key, map[string]any{"rate_limit": 25}).expect(200)
	clk.Advance(time.Second)
	claimN("full bucket of 25/s", 20, 3)
	clk.Advance(40 * time.Millisecond)
	claimN("40ms at 25/s", 20, 1)

	// No limit: everything left.
	h.do("PUT", "/api/v1/queues/q", key, `{"rate_limit":null}`).expect(200)
	claimN("no limit", 100, 60-1-1-1-10-3-1-1-3-1)
}

// TestQueueRoutesBadInput: every queue route refuses a bad path name, and
// the config and pause routes bad bodies, with the exact status and code,
// writing nothing.
func TestQueueRoutesBadInput(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	h.do("PUT", "/api/v1/queues/q", key, map[string]any{"max_retries": 5, "rate_limit": 7, "max_concurrent_jobs": 2}).expect(200)
	h.do("POST", "/api/v1/queues/q/pause", key, map[string]any{"reason": "kept"}).expect(200)
	h.enqueue(key, "q", nil)

	badNames := []string{"-lead", ".lead", "a*b", "a%20b", "a,b", "caf%C3%A9", "a%00b", "a;b", "a%2Fb", strings.Repeat("n", 101)}
	for _, name := range badNames {
		for _, r := range []struct {
			method, suffix string
			body           any
		}{
			{"GET", "", nil}, {"PUT", "", `{"max_retries":1}`}, {"PUT", "/config", `{"max_retries":1}`},
			{"GET", "/stats", nil}, {"POST", "/pause", `{}`}, {"POST", "/resume", nil}, {"DELETE", "", nil},
		} {
			h.refusedQueue(r.method, "/api/v1/queues/"+name+r.suffix, key, r.body, 400, "BAD_REQUEST")
		}
	}

	for _, path := range []string{"/api/v1/queues/q", "/api/v1/queues/q/config", "/api/v1/queues/newq"} {
		for _, bc := range []bodyCase{
			{"max_retries 101", `{"max_retries":101}`, 400, "VALIDATION_ERROR", "max_retries"},
			{"max_retries -1", `{"max_retries":-1}`, 400, "VALIDATION_ERROR", "max_retries"},
			{"default_timeout 0", `{"default_timeout":0}`, 400, "VALIDATION_ERROR", "default_timeout"},
			{"default_timeout 86401", `{"default_timeout":86401}`, 400, "VALIDATION_ERROR", "default_timeout"},
			{"rate_limit 0", `{"rate_limit":0}`, 400, "VALIDATION_ERROR", "rate_limit"},
			{"rate_limit 100001", `{"rate_limit":100001}`, 400, "VALIDATION_ERROR", "rate_limit"},
			{"rate_limit_per_second 0", `{"rate_limit_per_second":0}`, 400, "VALIDATION_ERROR", "rate_limit"},
			{"max_concurrent_jobs -1", `{"max_concurrent_jobs":-1}`, 400, "VALIDATION_ERROR", "max_concurrent_jobs"},
			{"max_concurrent_jobs 0", `{"max_concurrent_jobs":0}`, 400, "VALIDATION_ERROR", "max_concurrent_jobs"},
			{"settings an array", `{"settings":[1]}`, 400, "VALIDATION_ERROR", "settings"},
			{"settings a string", `{"settings":"x"}`, 400, "VALIDATION_ERROR", "settings"},
			{"settings a number", `{"settings":5}`, 400, "VALIDATION_ERROR", "settings"},
			{"settings over 64 KiB", `{"settings":{"a":"` + strings.Repeat("s", 64*1024) + `"}}`, 400, "VALIDATION_ERROR", "settings"},
			{"a valid field beside a bad one", `{"max_retries":5,"default_timeout":0,"enabled":false}`, 400, "VALIDATION_ERROR", "default_timeout"},
			{"malformed JSON", `{"max_retries":`, 400, "INVALID_JSON", "body"},
			{"not JSON", `max_retries=5`, 400, "INVALID_JSON", "body"},
			{"two values", `{} {}`, 400, "INVALID_JSON", "body"},
			{"empty body", ``, 400, "INVALID_JSON", "body"},
			{"an array", `[1]`, 400, "INVALID_JSON", ""},
			{"max_retries a string", `{"max_retries":"5"}`, 400, "INVALID_JSON", ""},
			{"max_retries 1.5", `{"max_retries":1.5}`, 400, "INVALID_JSON", ""},
			{"rate_limit a string", `{"rate_limit":"5"}`, 400, "INVALID_JSON", ""},
			{"max_concurrent_jobs true", `{"max_concurrent_jobs":true}`, 400, "INVALID_JSON", ""},
			{"enabled a string", `{"enabled":"yes"}`, 400, "INVALID_JSON", ""},
			{"NUL in settings", `{"settings":{"a":"\u0000"}}`, 400, "VALIDATION_ERROR", "body"},
		} {
			res := h.refusedQueue("PUT", path, key, bc.body, bc.status, bc.code)
			if bc.field != "" {
				res.expectField(bc.field)
			}
		}
	}

	for _, path := range []string{"/api/v1/queues/q/pause", "/api/v1/queues/newq/pause"} {
		for _, bc := range []bodyCase{
			{"reason over 500 characters", map[string]any{"reason": strings.Repeat("r", 501)}, 400, "VALIDATION_ERROR", "reason"},
			{"reason over 500 multi-byte characters", map[string]any{"reason": strings.Repeat("é", 501)}, 400, "VALIDATION_ERROR", "reason"},
			{"reason a number", `{"reason":5}`, 400, "INVALID_JSON", ""},
			{"malformed JSON", `{"reason":`, 400, "INVALID_JSON", "body"},
			{"an array", `["deploy"]`, 400, "INVALID_JSON", ""},
		} {
			res := h.refusedQueue("POST", path, key, bc.body, bc.status, bc.code)
			if bc.field != "" {
				res.expectField(bc.field)
			}
		}
	}

	// The configuration is as it was, still paused with its reason.
	q := h.do("GET", "/api/v1/queues/q", key, nil).expect(200).json
	expectFields(t, "config after the refusals", q, map[string]any{"max_retries": 5, "rate_limit": 7,
		"max_concurrent_jobs": 2, "enabled": false, "paused_reason": "kept"})
	h.refusedQueue("GET", "/api/v1/queues/newq", key, nil, 404, "NOT_FOUND")

	// The edges of the name rule are accepted.
	for _, name := range []string{strings.Repeat("n", 100), "a", "A-b_c.9", "9.lead", "_lead"} {
		h.do("PUT", "/api/v1/queues/"+name, key, `{}`).expect(200)
		h.do("GET", "/api/v1/queues/"+name+"/stats", key, nil).expect(200)
		h.do("POST", "/api/v1/queues/"+name+"/pause", key, nil).expect(200)
		h.do("POST", "/api/v1/queues/"+name+"/resume", key, nil).expect(200)
		h.do("DELETE", "/api/v1/queues/"+name, key, nil).expect(204)
	}
}

// TestQueuesOfAnotherOrganization: a queue configured by one organization
// does not exist for another, even under the same name: not listed, 404 on
// get, resume and delete, its jobs not counted; the other organization's
// own configuration and pause are independent.
func TestQueuesOfAnotherOrganization(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	_, other := h.org("globex")
	h.do("PUT", "/api/v1/queues/shared", key, map[string]any{"max_retries": 9}).expect(200)
	h.do("POST", "/api/v1/queues/shared/pause", key, map[string]any{"reason": "mine"}).expect(200)
	h.do("PUT", "/api/v1/queues/private", key, map[string]any{"rate_limit": 5}).expect(200)
	for range 2 {
		h.enqueue(key, "shared", nil)
	}

	if res := h.do("GET", "/api/v1/queues", other, nil).expect(200); string(res.raw) != "[]" {
		t.Fatalf("the other organization lists %s", res.raw)
	}
	for _, name := range []string{"shared", "private"} {
		h.refusedQueue("GET", "/api/v1/queues/"+name, other, nil, 404, "NOT_FOUND")
		h.refusedQueue("POST", "/api/v1/queues/"+name+"/resume", other, nil, 404, "NOT_FOUND")
		h.refusedQueue("DELETE", "/api/v1/queues/"+name, other, nil, 404, "NOT_FOUND")
	}
	st := h.do("GET", "/api/v1/queues/shared/stats", other, nil).expect(200).json
	expectKeys(t, "stats", st, queueStatsKeys)
	expectFields(t, "the other organization's stats of shared", st, map[string]any{"queue_name": "shared",
		"pending_jobs": 0, "scheduled_jobs": 0, "processing_jobs": 0, "max_job_age_seconds": nil})

	// Its own configuration of the same name is its own: enabled, defaults.
	o := h.do("PUT", "/api/v1/queues/shared/config", other, `{}`).expect(200).json
	expectFields(t, "the other organization's shared", o, map[string]any{"max_retries": 3, "enabled": true, "paused_reason": nil})
	job := h.enqueue(other, "shared", nil)
	if c := h.claimOne(other, "shared", "w"); c.ID != job {
		t.Fatalf("claimed %s, want %s", c.ID, job)
	}
	h.do("POST", "/api/v1/jobs/"+job+"/complete", other, map[string]any{"worker_id": "w"}).expect(200)
	// The first organization's waiting jobs do not block the delete.
	h.do("DELETE", "/api/v1/queues/shared", other, nil).expect(204)
	h.do("POST", "/api/v1/queues/private/pause", other, nil).expect(200)

	mine := h.do("GET", "/api/v1/queues/shared", key, nil).expect(200).json
	expectFields(t, "the first organization's shared", mine, map[string]any{"max_retries": 9, "enabled": false, "paused_reason": "mine"})
	if c := h.claim(key, "shared", "w", 5); len(c) != 0 {
		t.Fatalf("claim of the paused queue got %d jobs", len(c))
	}
	priv := h.do("GET", "/api/v1/queues/private", key, nil).expect(200).json
	expectFields(t, "the first organization's private", priv, map[string]any{"rate_limit": 5, "enabled": true})
	var names []string
	for _, it := range h.do("GET", "/api/v1/queues", key, nil).expect(200).list {
		names = append(names, it.(map[string]any)["queue_name"].(string))
	}
	if !slices.Equal(names, []string{"private", "shared"}) {
		t.Fatalf("the first organization lists %v", names)
	}
}

// TestQueueStatsRoute: GET /queues/{name}/stats answers for any queue name,
// configured or not, with every key.
func TestQueueStatsRoute(t *testing.T) {
	t.Parallel()
	clk := clock.NewPinned(time.Now())
	h := newHarnessClock(t, clk)
	_, key := h.org("acme")

	st := h.do("GET", "/api/v1/queues/nothing-here/stats", key, nil).expect(200).json
	expectKeys(t, "stats of an unknown queue", st, queueStatsKeys)
	expectFields(t, "stats of an unknown queue", st, map[string]any{"queue_name": "nothing-here", "pending_jobs": 0,
		"scheduled_jobs": 0, "processing_jobs": 0, "completed_jobs": 0, "deadletter_jobs": 0, "completed_jobs_24h": 0,
		"failed_jobs_24h": 0, "deadlettered_jobs_24h": 0, "avg_processing_time_ms": nil, "max_job_age_seconds": nil,
		"active_workers": 0})

	h.enqueue(key, "q", nil)
	clk.Advance(90 * time.Second)
	h.enqueue(key, "q", map[string]any{"scheduled_at": clk.Now().Add(time.Hour).Format(time.RFC3339Nano)})
	c := h.claimOne(key, "q", "w")
	clk.Advance(1500 * time.Millisecond)
	h.do("POST", "/api/v1/jobs/"+c.ID+"/complete", key, map[string]any{"worker_id": "w"}).expect(200)
	h.enqueue(key, "q", nil)
	clk.Advance(10 * time.Second)
	h.do("POST", "/api/v1/workers/register", key, map[string]any{"queue_name": "q", "hostname": "h1"}).expect(201)
	h.catchUp()
	st = h.do("GET", "/api/v1/queues/q/stats", key, nil).expect(200).json
	expectKeys(t, "stats", st, queueStatsKeys)
	expectFields(t, "stats", st, map[string]any{"queue_name": "q", "pending_jobs": 1, "scheduled_jobs": 1,
		"processing_jobs": 0, "completed_jobs": 1, "deadletter_jobs": 0, "completed_jobs_24h": 1,
		"failed_jobs_24h": 0, "deadlettered_jobs_24h": 0, "avg_processing_time_ms": 1500,
		"max_job_age_seconds": 11, "active_workers": 1})
}

// TestQueuePauseResumeConcurrent: many clients pausing (then resuming) a
// queue at once change it once: one queue.paused and one queue.resumed in
// the log, whoever wins.
func TestQueuePauseResumeConcurrent(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	orgID, key := h.org("acme")
	h.do("PUT", "/api/v1/queues/q", key, `{}`).expect(200)

	const clients = 8
	for _, action := range []string{"pause", "resume"} {
		errs := make(chan error, clients)
		for range clients {
			go func() {
				status, raw, err := h.send("POST", "/api/v1/queues/q/"+action, key, `{}`)
				if err == nil && status != 200 {
					err = fmt.Errorf("%s: status %d: %s", action, status, raw)
				}
				errs <- err
			}()
		}
		for range clients {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := eventTypes(h.queueEvents(orgID), "q"); !slices.Equal(got, []string{"queue.configured", "queue.paused", "queue.resumed"}) {
		t.Fatalf("events %v, want one pause and one resume", got)
	}
	if q := h.do("GET", "/api/v1/queues/q", key, nil).expect(200).json; q["enabled"] != true {
		t.Fatalf("queue after the resumes: %v", q)
	}
}
