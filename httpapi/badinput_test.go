package httpapi_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/spooled-go/spooled/internal/config"
)

// bodyCase is one request body that must be refused.
type bodyCase struct {
	name   string
	body   any // string or []byte, sent as is
	status int
	code   string
	field  string // details[0].field, when the contract names one
}

// TestMalformedBodiesAreRefused sends broken, mistyped and incomplete bodies
// to every route that reads one. Each must be refused with the exact status
// and code and write nothing; at the end each route's valid body is sent and
// accepted, so the refusals were about the bodies and not the fixtures.
func TestMalformedBodiesAreRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	waiting := h.enqueue(key, "prio", nil)
	h.enqueue(key, "work", nil)
	h.enqueue(key, "work", nil)
	held := h.claim(key, "work", "w1", 2)
	if len(held) != 2 {
		t.Fatalf("claimed %d jobs, want 2", len(held))
	}
	c1, c2 := held[0], held[1]
	h.enqueue(key, "ready", nil) // what a wrongly accepted claim would take

	type endpoint struct {
		name, method, path, key, valid string
		ok                             int
		cases                          []bodyCase
	}
	inv := func(name, body, field string) bodyCase { return bodyCase{name, body, 400, "INVALID_JSON", field} }
	val := func(name, body, field string) bodyCase { return bodyCase{name, body, 400, "VALIDATION_ERROR", field} }
	long := func(n int) string { return strings.Repeat("w", n) }

	eps := []endpoint{
		{"heartbeat", "POST", "/api/v1/jobs/" + c1.ID + "/heartbeat", key,
			fmt.Sprintf(`{"worker_id":"w1","lease_id":%q,"lease_duration_secs":60}`, c1.Lease), 200, []bodyCase{
				inv("worker_id missing", `{"lease_duration_secs":60}`, "worker_id"),
				inv("worker_id null", `{"worker_id":null,"lease_duration_secs":60}`, "worker_id"),
				inv("worker_id a number", `{"worker_id":1,"lease_duration_secs":60}`, "worker_id"),
				inv("lease_duration_secs a string", `{"worker_id":"w1","lease_duration_secs":"60"}`, "lease_duration_secs"),
				inv("lease_duration_secs 1.5", `{"worker_id":"w1","lease_duration_secs":1.5}`, "lease_duration_secs"),
				inv("lease_duration_secs 1e30", `{"worker_id":"w1","lease_duration_secs":1e30}`, "lease_duration_secs"),
				inv("lease_id a number", `{"worker_id":"w1","lease_id":7,"lease_duration_secs":60}`, "lease_id"),
				val("lease_duration_secs 4", `{"worker_id":"w1","lease_duration_secs":4}`, "lease_duration_secs"),
				val("lease_duration_secs 3601", `{"worker_id":"w1","lease_duration_secs":3601}`, "lease_duration_secs"),
				val("lease_id not a UUID", `{"worker_id":"w1","lease_id":"not-a-uuid","lease_duration_secs":60}`, "lease_id"),
				val("worker_id empty", `{"worker_id":"","lease_duration_secs":60}`, "worker_id"),
			}},
		{"complete", "POST", "/api/v1/jobs/" + c1.ID + "/complete", key,
			fmt.Sprintf(`{"worker_id":"w1","lease_id":%q,"result":{"ok":true}}`, c1.Lease), 200, []bodyCase{
				inv("worker_id missing", `{"result":{}}`, "worker_id"),
				inv("worker_id a number", `{"worker_id":1}`, "worker_id"),
				inv("worker_id an object", `{"worker_id":{"id":"w1"}}`, "worker_id"),
				inv("lease_id a number", `{"worker_id":"w1","lease_id":7}`, "lease_id"),
				val("lease_id not a UUID", `{"worker_id":"w1","lease_id":"nope"}`, "lease_id"),
				val("lease_id SQL", `{"worker_id":"w1","lease_id":"x' OR '1'='1"}`, "lease_id"),
				val("worker_id empty", `{"worker_id":""}`, "worker_id"),
				val("worker_id 256 characters", `{"worker_id":"`+long(256)+`"}`, "worker_id"),
			}},
		{"fail", "POST", "/api/v1/jobs/" + c2.ID + "/fail", key,
			fmt.Sprintf(`{"worker_id":"w1","lease_id":%q,"error":"boom"}`, c2.Lease), 200, []bodyCase{
				inv("error missing", `{"worker_id":"w1"}`, "error"),
				inv("error null", `{"worker_id":"w1","error":null}`, "error"),
				inv("error a number", `{"worker_id":"w1","error":5}`, "error"),
				inv("worker_id missing", `{"error":"boom"}`, "worker_id"),
				val("error empty", `{"worker_id":"w1","error":""}`, "error"),
				val("error 2049 characters", `{"worker_id":"w1","error":"`+long(2049)+`"}`, "error"),
				val("lease_id not a UUID", `{"worker_id":"w1","lease_id":"123","error":"boom"}`, "lease_id"),
			}},
		{"priority", "PUT", "/api/v1/jobs/" + waiting + "/priority", key, `{"priority":5}`, 200, []bodyCase{
			inv("priority missing", `{}`, "priority"),
			inv("priority null", `{"priority":null}`, "priority"),
			inv("priority a string", `{"priority":"5"}`, "priority"),
			inv("priority 1.5", `{"priority":1.5}`, "priority"),
			inv("priority 1e30", `{"priority":1e30}`, "priority"),
			inv("priority beyond int64", `{"priority":9223372036854775808}`, "priority"),
			val("priority 101", `{"priority":101}`, "priority"),
			val("priority -101", `{"priority":-101}`, "priority"),
			val("priority 2^32 (no int32 wrap-around)", `{"priority":4294967296}`, "priority"),
		}},
		{"enqueue", "POST", "/api/v1/jobs", key, `{"queue_name":"emails","payload":{"to":"a@example.com"}}`, 201, []bodyCase{
			inv("queue_name missing", `{"payload":{}}`, "queue_name"),
			inv("queue_name null", `{"queue_name":null,"payload":{}}`, "queue_name"),
			inv("payload missing", `{"queue_name":"emails"}`, "payload"),
			inv("empty object", `{}`, "queue_name"),
			inv("queue_name a number", `{"queue_name":5,"payload":{}}`, "queue_name"),
			inv("queue_name an array", `{"queue_name":["emails"],"payload":{}}`, "queue_name"),
			inv("priority a string", `{"queue_name":"emails","payload":{},"priority":"high"}`, "priority"),
			inv("priority 1.5", `{"queue_name":"emails","payload":{},"priority":1.5}`, "priority"),
			inv("priority 1e30", `{"queue_name":"emails","payload":{},"priority":1e30}`, "priority"),
			inv("priority -1e30", `{"queue_name":"emails","payload":{},"priority":-1e30}`, "priority"),
			inv("priority beyond int64", `{"queue_name":"emails","payload":{},"priority":99999999999999999999}`, "priority"),
			inv("max_retries a string", `{"queue_name":"emails","payload":{},"max_retries":"3"}`, "max_retries"),
			inv("timeout_seconds a boolean", `{"queue_name":"emails","payload":{},"timeout_seconds":true}`, "timeout_seconds"),
			inv("idempotency_key a number", `{"queue_name":"emails","payload":{},"idempotency_key":7}`, "idempotency_key"),
			inv("scheduled_at not a time", `{"queue_name":"emails","payload":{},"scheduled_at":"tomorrow"}`, "scheduled_at"),
			inv("scheduled_at a number", `{"queue_name":"emails","payload":{},"scheduled_at":1700000000}`, "scheduled_at"),
			inv("expires_at without a zone", `{"queue_name":"emails","payload":{},"expires_at":"2030-01-01T00:00:00"}`, "expires_at"),
			val("priority 101", `{"queue_name":"emails","payload":{},"priority":101}`, "priority"),
			val("priority 2^32", `{"queue_name":"emails","payload":{},"priority":4294967296}`, "priority"),
			val("max_retries 101", `{"queue_name":"emails","payload":{},"max_retries":101}`, "max_retries"),
			val("max_retries -1", `{"queue_name":"emails","payload":{},"max_retries":-1}`, "max_retries"),
			val("timeout_seconds 0", `{"queue_name":"emails","payload":{},"timeout_seconds":0}`, "timeout_seconds"),
			val("timeout_seconds 86401", `{"queue_name":"emails","payload":{},"timeout_seconds":86401}`, "timeout_seconds"),
			val("idempotency_key empty", `{"queue_name":"emails","payload":{},"idempotency_key":""}`, "idempotency_key"),
			val("completion_webhook not http", `{"queue_name":"emails","payload":{},"completion_webhook":"javascript:alert(1)"}`, "completion_webhook"),
			val("parent_job_id not a UUID", `{"queue_name":"emails","payload":{},"parent_job_id":"x' OR '1'='1"}`, "parent_job_id"),
			val("parent_job_id unknown", `{"queue_name":"emails","payload":{},"parent_job_id":"`+uuid.NewString()+`"}`, "parent_job_id"),
		}},
		{"bulk", "POST", "/api/v1/jobs/bulk", key, `{"queue_name":"emails","jobs":[{"payload":{"n":1}}]}`, 200, []bodyCase{
			inv("jobs missing", `{"queue_name":"emails"}`, "jobs"),
			inv("jobs null", `{"queue_name":"emails","jobs":null}`, "jobs"),
			inv("queue_name missing", `{"jobs":[{"payload":1}]}`, "queue_name"),
			inv("jobs a string", `{"queue_name":"emails","jobs":"x"}`, "jobs"),
			inv("jobs an object", `{"queue_name":"emails","jobs":{"payload":1}}`, "jobs"),
			inv("jobs of numbers", `{"queue_name":"emails","jobs":[1,2]}`, ""),
			inv("item payload missing", `{"queue_name":"emails","jobs":[{"payload":1},{}]}`, "jobs"),
			inv("item priority a string", `{"queue_name":"emails","jobs":[{"payload":1,"priority":"1"}]}`, "jobs.priority"),
			inv("item scheduled_at not a time", `{"queue_name":"emails","jobs":[{"payload":1,"scheduled_at":"later"}]}`, "jobs.scheduled_at"),
			inv("default_priority a string", `{"queue_name":"emails","jobs":[{"payload":1}],"default_priority":"x"}`, "default_priority"),
			inv("queue_name a number", `{"queue_name":5,"jobs":[{"payload":1}]}`, "queue_name"),
			val("jobs empty", `{"queue_name":"emails","jobs":[]}`, "jobs"),
			val("item priority 101", `{"queue_name":"emails","jobs":[{"payload":1,"priority":101}]}`, "jobs.priority"),
			val("second item bad (first not written)", `{"queue_name":"emails","jobs":[{"payload":1},{"payload":2,"priority":500}]}`, "jobs.priority"),
			val("item idempotency_key 256 characters", `{"queue_name":"emails","jobs":[{"payload":1,"idempotency_key":"`+long(256)+`"}]}`, "jobs[0].idempotency_key"),
		}},
		{"claim", "POST", "/api/v1/jobs/claim", key, `{"queue_name":"ready","worker_id":"w9"}`, 200, []bodyCase{
			inv("worker_id missing", `{"queue_name":"ready"}`, "worker_id"),
			inv("queue_name missing", `{"worker_id":"w9"}`, "queue_name"),
			inv("worker_id a number", `{"queue_name":"ready","worker_id":9}`, "worker_id"),
			inv("limit a string", `{"queue_name":"ready","worker_id":"w9","limit":"5"}`, "limit"),
			inv("limit 1e30", `{"queue_name":"ready","worker_id":"w9","limit":1e30}`, "limit"),
			inv("limit 2.5", `{"queue_name":"ready","worker_id":"w9","limit":2.5}`, "limit"),
			val("limit 0", `{"queue_name":"ready","worker_id":"w9","limit":0}`, "limit"),
			val("limit 101", `{"queue_name":"ready","worker_id":"w9","limit":101}`, "limit"),
			val("lease_duration_secs 4", `{"queue_name":"ready","worker_id":"w9","lease_duration_secs":4}`, "lease_duration_secs"),
			val("lease_duration_secs 3601", `{"queue_name":"ready","worker_id":"w9","lease_duration_secs":3601}`, "lease_duration_secs"),
			inv("wait_ms a string", `{"queue_name":"ready","worker_id":"w9","wait_ms":"5"}`, "wait_ms"),
			inv("wait_ms 1e30", `{"queue_name":"ready","worker_id":"w9","wait_ms":1e30}`, "wait_ms"),
			val("wait_ms -1", `{"queue_name":"ready","worker_id":"w9","wait_ms":-1}`, "wait_ms"),
			val("wait_ms 30001", `{"queue_name":"ready","worker_id":"w9","wait_ms":30001}`, "wait_ms"),
			val("worker_id empty", `{"queue_name":"ready","worker_id":""}`, "worker_id"),
			val("worker_id 256 characters", `{"queue_name":"ready","worker_id":"`+long(256)+`"}`, "worker_id"),
		}},
		{"organization", "POST", "/api/v1/organizations", "", `{"name":"Other Org","slug":"other-org"}`, 201, []bodyCase{
			inv("name missing", `{"slug":"other-org"}`, "name"),
			inv("slug missing", `{"name":"Other Org"}`, "slug"),
			inv("name a number", `{"name":5,"slug":"other-org"}`, "name"),
			inv("slug an array", `{"name":"Other Org","slug":["other-org"]}`, "slug"),
			val("name too short", `{"name":"ab","slug":"other-org"}`, "name"),
			val("name 101 characters", `{"name":"`+long(101)+`","slug":"other-org"}`, "name"),
			val("slug too short", `{"name":"Other Org","slug":"ab"}`, "slug"),
			val("slug 51 characters", `{"name":"Other Org","slug":"`+strings.Repeat("s", 51)+`"}`, "slug"),
			val("slug with a space", `{"name":"Other Org","slug":"other org"}`, "slug"),
			val("slug upper case", `{"name":"Other Org","slug":"Other-Org"}`, "slug"),
			val("slug SQL", `{"name":"Other Org","slug":"x' OR '1'='1"}`, "slug"),
			val("billing_email not an email", `{"name":"Other Org","slug":"other-org","billing_email":"nope"}`, "billing_email"),
		}},
		{"api key", "POST", "/api/v1/api-keys", key, `{"name":"ci key"}`, 201, []bodyCase{
			inv("name missing", `{"queues":["a"]}`, "name"),
			inv("name a number", `{"name":5}`, "name"),
			inv("queues a string", `{"name":"ci key","queues":"a"}`, "queues"),
			inv("rate_limit a string", `{"name":"ci key","rate_limit":"10"}`, "rate_limit"),
			inv("expires_at not a time", `{"name":"ci key","expires_at":"soon"}`, "expires_at"),
			val("name empty", `{"name":""}`, "name"),
			val("name with markup", `{"name":"<script>alert(1)</script>"}`, "name"),
			val("name 101 characters", `{"name":"`+long(101)+`"}`, "name"),
			val("queue name with a space", `{"name":"ci key","queues":["a b"]}`, "queues"),
			val("51 queues", `{"name":"ci key","queues":["`+strings.Repeat(`q","`, 50)+`q"]}`, "queues"),
			val("rate_limit 0", `{"name":"ci key","rate_limit":0}`, "rate_limit"),
			val("rate_limit 10001", `{"name":"ci key","rate_limit":10001}`, "rate_limit"),
			val("expires_at in the past", `{"name":"ci key","expires_at":"2001-01-01T00:00:00Z"}`, "expires_at"),
		}},
	}

	for _, ep := range eps {
		v := ep.valid
		generic := []bodyCase{
			inv("syntax error", `{"a": }`, "body"),
			inv("missing colon", `{"queue_name" "q"}`, "body"),
			inv("single quotes", `{'queue_name': 'q'}`, "body"),
			inv("truncated by one byte", v[:len(v)-1], "body"),
			inv("truncated in the middle", v[:len(v)/2], "body"),
			inv("empty body", "", "body"),
			inv("whitespace body", " \n\t ", "body"),
			inv("an array of the object", "["+v+"]", "body"),
			inv("two JSON values", v+v, "body"),
			inv("two JSON values on two lines", v+"\n"+v, "body"),
			inv("trailing garbage", v+" x", "body"),
			inv("trailing ]", v+"]", "body"),
			inv("trailing }", v+"}", "body"),
			inv("a string", `"hello"`, "body"),
			inv("a number", `42`, "body"),
			inv("a boolean", `true`, "body"),
			{"invalid UTF-8 (0xff)", concat([]byte(v[:2]), []byte{0xff}, []byte(v[2:])), 400, "INVALID_JSON", "body"},
			{"invalid UTF-8 (overlong /)", concat([]byte(v[:2]), []byte{0xc0, 0xaf}, []byte(v[2:])), 400, "INVALID_JSON", "body"},
			{"invalid UTF-8 (cut sequence)", concat([]byte(v[:2]), []byte{0xe2, 0x82}, []byte(v[2:])), 400, "INVALID_JSON", "body"},
			{"byte order mark", concat([]byte{0xef, 0xbb, 0xbf}, []byte(v)), 400, "INVALID_JSON", "body"},
			{"NUL escape", v[:2] + `\u0000` + v[2:], 400, "VALIDATION_ERROR", "body"},
		}
		for _, bc := range append(generic, ep.cases...) {
			t.Run(ep.name+"/"+bc.name, func(t *testing.T) {
				h := h.as(t)
				res := h.refused(ep.method, ep.path, ep.key, bc.body, bc.status, bc.code)
				if bc.field != "" {
					res.expectField(bc.field)
				}
			})
		}
	}
	if t.Failed() {
		return
	}
	// The fixtures were fine: each route accepts its valid body.
	for _, ep := range eps {
		h.do(ep.method, ep.path, ep.key, ep.valid).expect(ep.ok)
	}
	if st := h.jobStatus(key, c1.ID); st != "completed" {
		t.Fatalf("completed job is %s", st)
	}
}

// TestOversizedInput checks every size limit at its boundary: one over is
// refused with the contract's status and writes nothing, the limit itself
// is accepted.
func TestOversizedInput(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	// str is a JSON string of exactly n bytes.
	str := func(n int) string { return `"` + strings.Repeat("x", n-2) + `"` }
	max := h.cfg.MaxPayloadSize
	if max != 1<<20 {
		t.Fatalf("MAX_PAYLOAD_SIZE default is %d, want 1 MiB", max)
	}

	h.refused("POST", "/api/v1/jobs", key, `{"queue_name":"big","payload":`+str(max+1)+`}`, 413, "PAYLOAD_TOO_LARGE")
	h.refused("POST", "/api/v1/jobs/bulk", key,
		`{"queue_name":"big","jobs":[{"payload":1},{"payload":`+str(max+1)+`}]}`, 413, "PAYLOAD_TOO_LARGE")
	h.do("POST", "/api/v1/jobs", key, `{"queue_name":"big","payload":`+str(max)+`}`).expect(201)

	// Bulk: at most 100 jobs.
	items := func(n int) []map[string]any {
		out := make([]map[string]any, n)
		for i := range out {
			out[i] = map[string]any{"payload": map[string]any{"i": i}}
		}
		return out
	}
	h.refused("POST", "/api/v1/jobs/bulk", key, map[string]any{"queue_name": "many", "jobs": items(101)},
		400, "VALIDATION_ERROR").expectField("jobs")
	res := h.do("POST", "/api/v1/jobs/bulk", key, map[string]any{"queue_name": "many", "jobs": items(100)}).expect(200)
	if res.json["success_count"] != float64(100) {
		t.Fatalf("bulk of 100: %s", res.raw)
	}

	// GET /jobs/status: at most 100 ids.
	ids := make([]string, 101)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	h.refused("GET", "/api/v1/jobs/status?ids="+strings.Join(ids, ","), key, nil, 400, "BAD_REQUEST")
	h.do("GET", "/api/v1/jobs/status?ids="+strings.Join(ids[:100], ","), key, nil).expect(200)

	// Tags: at most 64 KiB.
	h.refused("POST", "/api/v1/jobs", key, `{"queue_name":"tagged","payload":1,"tags":`+str(64*1024+1)+`}`,
		400, "VALIDATION_ERROR").expectField("tags")
	h.do("POST", "/api/v1/jobs", key, `{"queue_name":"tagged","payload":1,"tags":`+str(64*1024)+`}`).expect(201)

	// Idempotency keys: at most 255 characters (characters, not bytes).
	h.refused("POST", "/api/v1/jobs", key, map[string]any{"queue_name": "idem", "payload": 1,
		"idempotency_key": strings.Repeat("k", 256)}, 400, "VALIDATION_ERROR").expectField("idempotency_key")
	h.do("POST", "/api/v1/jobs", key, map[string]any{"queue_name": "idem", "payload": 1,
		"idempotency_key": strings.Repeat("k", 255)}).expect(201)
	h.do("POST", "/api/v1/jobs", key, map[string]any{"queue_name": "idem", "payload": 1,
		"idempotency_key": strings.Repeat("é", 255)}).expect(201)

	// Worker ids: at most 255 characters.
	h.refused("POST", "/api/v1/jobs/claim", key, map[string]any{"queue_name": "big",
		"worker_id": strings.Repeat("w", 256)}, 400, "VALIDATION_ERROR").expectField("worker_id")
	if got := h.claim(key, "big", strings.Repeat("w", 255), 1); len(got) != 1 {
		t.Fatalf("claim with a 255-character worker id returned %d jobs", len(got))
	}
}

// TestBodyOverMaxContentLength needs a real socket: the limit is enforced
// while the server reads the request, before any handler runs.
func TestBodyOverMaxContentLength(t *testing.T) {
	t.Parallel()
	const limit = 64 * 1024
	h := newHarness(t, func(c *config.Config) { c.MaxContentLength = limit })
	_, key := h.org("acme")
	addr := h.listen()
	before := h.counts()

	check := func(what string, raw string) {
		t.Helper()
		resp, body := rawExchange(t, addr, []byte(raw))
		if resp.StatusCode != 413 {
			t.Fatalf("%s: status %d, want 413; body %s", what, resp.StatusCode, body)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Fatalf("%s: Content-Type %q, want JSON", what, ct)
		}
		var e map[string]any
		if err := json.Unmarshal(body, &e); err != nil || e["code"] != "PAYLOAD_TOO_LARGE" || e["message"] == "" {
			t.Fatalf("%s: body %s, want a PAYLOAD_TOO_LARGE error", what, body)
		}
	}
	head := func(path, auth, framing string) string {
		s := "POST " + path + " HTTP/1.1\r\nHost: spooled\r\nContent-Type: application/json\r\n"
		if auth != "" {
			s += "Authorization: Bearer " + auth + "\r\n"
		}
		return s + framing + "\r\n"
	}
	// Announced length over the limit: refused before the body is sent.
	check("content-length", head("/api/v1/jobs", key, fmt.Sprintf("Content-Length: %d\r\n", limit+1)))
	check("content-length, public route", head("/api/v1/organizations", "", fmt.Sprintf("Content-Length: %d\r\n", limit+1)))
	check("content-length, no key", head("/api/v1/jobs", "", "Content-Length: 10000000\r\n"))
	// Chunked: refused when a chunk would pass the limit.
	check("chunked", head("/api/v1/jobs", key, "Transfer-Encoding: chunked\r\n")+fmt.Sprintf("%x\r\n", limit+1))
	h.unchanged(before, "bodies over MAX_CONTENT_LENGTH")

	// Under the limit the same socket path works.
	body := `{"queue_name":"q","payload":` + `"` + strings.Repeat("x", limit-100) + `"}`
	resp, out := rawExchange(t, addr, []byte(head("/api/v1/jobs", key, fmt.Sprintf("Content-Length: %d\r\n", len(body)))+body))
	if resp.StatusCode != 201 {
		t.Fatalf("body under the limit: status %d; %s", resp.StatusCode, out)
	}
}

// TestQueueNameRules refuses every forbidden queue name on every route that
// takes one, naming queue_name, and accepts the edge cases the rule allows.
func TestQueueNameRules(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	bad := []string{
		"", " ", "has space", "a/b", "../etc", "a*", "*", "q?", "q#1", "ñandú", "队列", "é", "q\u00a0",
		".hidden", "-dash", strings.Repeat("q", 101), "x' OR '1'='1", "q;DROP TABLE jobs;--",
		"tab\tq", "new\nline", `back\slash`, "%00", "q:1", "a,b",
	}
	for _, q := range bad {
		t.Run(fmt.Sprintf("%q", q), func(t *testing.T) {
			h := h.as(t)
			h.refused("POST", "/api/v1/jobs", key, map[string]any{"queue_name": q, "payload": 1},
				400, "VALIDATION_ERROR").expectField("queue_name")
			h.refused("POST", "/api/v1/jobs/bulk", key, map[string]any{"queue_name": q, "jobs": []any{map[string]any{"payload": 1}}},
				400, "VALIDATION_ERROR").expectField("queue_name")
			h.refused("POST", "/api/v1/jobs/claim", key, map[string]any{"queue_name": q, "worker_id": "w1"},
				400, "VALIDATION_ERROR").expectField("queue_name")
		})
	}
	for _, q := range []string{"a", "Z", "9lives", "_private", "a.b-c_D9", "ends.", "ends-", strings.Repeat("q", 100)} {
		id := h.enqueue(key, q, nil)
		h.do("POST", "/api/v1/jobs/bulk", key, map[string]any{"queue_name": q, "jobs": []any{map[string]any{"payload": 1}}}).expect(200)
		got := h.claim(key, q, "w1", 1)
		if len(got) != 1 || got[0].ID != id {
			t.Fatalf("queue %q: claim returned %v, want %s", q, got, id)
		}
	}
}
