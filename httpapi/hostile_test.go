package httpapi_test

import (
	"fmt"
	"strings"
	"testing"
)

// TestNULIsRefused: Postgres cannot store the NUL character in text or
// jsonb, so a \u0000 escape anywhere in a body is a 400 that writes nothing,
// never a database error.
func TestNULIsRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	c := func() claimed { h.enqueue(key, "work", nil); return h.claimOne(key, "work", "w1") }()

	cases := []struct{ name, method, path, key, body string }{
		{"payload value", "POST", "/api/v1/jobs", key, `{"queue_name":"q","payload":{"s":"a\u0000b"}}`},
		{"payload key", "POST", "/api/v1/jobs", key, `{"queue_name":"q","payload":{"\u0000":1}}`},
		{"payload nested", "POST", "/api/v1/jobs", key, `{"queue_name":"q","payload":[[{"x":["\u0000"]}]]}`},
		{"queue_name", "POST", "/api/v1/jobs", key, `{"queue_name":"q\u0000","payload":1}`},
		{"idempotency_key", "POST", "/api/v1/jobs", key, `{"queue_name":"q","payload":1,"idempotency_key":"k\u0000"}`},
		{"tags", "POST", "/api/v1/jobs", key, `{"queue_name":"q","payload":1,"tags":["\u0000"]}`},
		{"bulk item", "POST", "/api/v1/jobs/bulk", key, `{"queue_name":"q","jobs":[{"payload":1},{"payload":"\u0000"}]}`},
		{"claim worker_id", "POST", "/api/v1/jobs/claim", key, `{"queue_name":"work","worker_id":"w\u0000"}`},
		{"complete result", "POST", "/api/v1/jobs/" + c.ID + "/complete", key,
			fmt.Sprintf(`{"worker_id":"w1","lease_id":%q,"result":"\u0000"}`, c.Lease)},
		{"fail error", "POST", "/api/v1/jobs/" + c.ID + "/fail", key,
			fmt.Sprintf(`{"worker_id":"w1","lease_id":%q,"error":"bad\u0000"}`, c.Lease)},
		{"organization name", "POST", "/api/v1/organizations", "", `{"name":"Evil\u0000Org","slug":"evil-org"}`},
		{"api key name", "POST", "/api/v1/api-keys", key, `{"name":"k\u0000"}`},
		{"api key update", "PUT", "/api/v1/api-keys/00000000-0000-0000-0000-000000000000", key, `{"queues":["\u0000"]}`},
		{"escape at the very end", "POST", "/api/v1/jobs", key, `{"queue_name":"q","payload":1,"x":"\u0000"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h.as(t).refused(tc.method, tc.path, tc.key, tc.body, 400, "VALIDATION_ERROR").expectField("body")
		})
	}
	if t.Failed() {
		return
	}
	// An escaped backslash before "u0000" is the six characters \u0000,
	// which are storable text.
	id := h.do("POST", "/api/v1/jobs", key, `{"queue_name":"q","payload":{"s":"\\u0000"}}`).expect(201).json["id"].(string)
	job := h.do("GET", "/api/v1/jobs/"+id, key, nil).expect(200)
	if got := job.json["payload"].(map[string]any)["s"]; got != `\u0000` {
		t.Fatalf("payload.s = %q, want the six characters \\u0000", got)
	}
	// The leased job was untouched by the refused calls.
	h.do("POST", "/api/v1/jobs/"+c.ID+"/complete", key, map[string]any{"worker_id": "w1", "lease_id": c.Lease}).expect(200)
}

// TestUnstorableJSONIsRefused: JSON that Go parses but Postgres jsonb cannot
// hold (lone UTF-16 surrogates, numbers outside numeric's range) is 400
// INVALID_JSON, never a 500, and writes nothing. The accepted boundary cases
// are stored and read back.
func TestUnstorableJSONIsRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	c := func() claimed { h.enqueue(key, "work", nil); return h.claimOne(key, "work", "w1") }()
	enq := func(payload string) string { return `{"queue_name":"q","payload":` + payload + `}` }

	refused := []struct{ name, path, body string }{
		{"lone high surrogate", "/api/v1/jobs", enq(`"\ud800"`)},
		{"lone low surrogate", "/api/v1/jobs", enq(`"\udfff"`)},
		{"high surrogate then letter", "/api/v1/jobs", enq(`"\ud83dx"`)},
		{"high surrogate then non-surrogate escape", "/api/v1/jobs", enq(`"\ud83d\u0041"`)},
		{"high surrogate at end of string", "/api/v1/jobs", enq(`"a\ud83d"`)},
		{"two high surrogates", "/api/v1/jobs", enq(`"\ud83d\ud83d"`)},
		{"reversed pair", "/api/v1/jobs", enq(`"\ude00\ud83d"`)},
		{"surrogate in a key", "/api/v1/jobs", enq(`{"\udc00":1}`)},
		{"surrogate in tags", "/api/v1/jobs", `{"queue_name":"q","payload":1,"tags":["\ud800"]}`},
		{"surrogate in a bulk item", "/api/v1/jobs/bulk", `{"queue_name":"q","jobs":[{"payload":1},{"payload":"\ud800"}]}`},
		{"surrogate in a result", "/api/v1/jobs/" + c.ID + "/complete",
			fmt.Sprintf(`{"worker_id":"w1","lease_id":%q,"result":"\ud800"}`, c.Lease)},
		{"number 1e1000000", "/api/v1/jobs", enq(`1e1000000`)},
		{"number -1e1000000", "/api/v1/jobs", enq(`-1e1000000`)},
		{"number 1e131072", "/api/v1/jobs", enq(`1e131072`)},
		{"number 123.45e131070", "/api/v1/jobs", enq(`123.45e131070`)},
		{"number -0.00012e131076", "/api/v1/jobs", enq(`-0.00012e131076`)},
		{"number 1e-16384", "/api/v1/jobs", enq(`1e-16384`)},
		{"number 0e-16384", "/api/v1/jobs", enq(`0e-16384`)},
		{"number 0.5e-16383", "/api/v1/jobs", enq(`0.5e-16383`)},
		{"number 0e1073741823", "/api/v1/jobs", enq(`0e1073741823`)},
		{"number with a huge exponent", "/api/v1/jobs", enq(`[1, 2, 1e99999999999999999999]`)},
		{"16384 fraction digits", "/api/v1/jobs", enq(`0.` + strings.Repeat("0", 16383) + `1`)},
		{"number in tags", "/api/v1/jobs", `{"queue_name":"q","payload":1,"tags":[1e-20000]}`},
		{"number in a result", "/api/v1/jobs/" + c.ID + "/complete",
			fmt.Sprintf(`{"worker_id":"w1","lease_id":%q,"result":{"n":1e400000}}`, c.Lease)},
		{"number in a bulk item", "/api/v1/jobs/bulk", `{"queue_name":"q","jobs":[{"payload":{"n":1E+200000}}]}`},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			h.as(t).refused("POST", tc.path, key, tc.body, 400, "INVALID_JSON")
		})
	}
	if t.Failed() {
		return
	}

	// Each accepted payload is read back; numbers beyond float64 are checked
	// in the raw response, as Postgres prints them.
	accepted := []struct{ name, payload, want string }{
		{"surrogate pair", `"\ud83d\ude00"`, `"payload":"😀"`},
		{"upper-case surrogate pair", `"\uD83D\uDE00"`, `"payload":"😀"`},
		{"escaped backslash before a surrogate", `"\\ud800"`, `"payload":"\\ud800"`},
		{"1e308", `1e308`, `"payload":1` + strings.Repeat("0", 308) + `,`},
		{"1e131071", `1e131071`, `"payload":1` + strings.Repeat("0", 131071) + `,`},
		{"-0.00012e131075", `-0.00012e131075`, `"payload":-12` + strings.Repeat("0", 131070) + `,`},
		{"1e-16383", `1e-16383`, `"payload":0.` + strings.Repeat("0", 16382) + `1,`},
		{"0.5e-16382", `0.5e-16382`, `"payload":0.` + strings.Repeat("0", 16382) + `5,`},
		{"0e1073741822", `0e1073741822`, `"payload":0,`},
		{"negative zero", `-0`, `"payload":0,`},
		{"digits in strings are not numbers", `"1e99999999"`, `"payload":"1e99999999"`},
	}
	for _, tc := range accepted {
		id := h.do("POST", "/api/v1/jobs", key, enq(tc.payload)).expect(201).json["id"].(string)
		job := h.do("GET", "/api/v1/jobs/"+id, key, nil).expect(200)
		if !strings.Contains(string(job.raw), tc.want) {
			t.Errorf("%s: stored payload does not read back as %.60s...: %.200s", tc.name, tc.want, job.raw)
		}
	}
	h.do("POST", "/api/v1/jobs/"+c.ID+"/complete", key,
		fmt.Sprintf(`{"worker_id":"w1","lease_id":%q,"result":{"n":1e300}}`, c.Lease)).expect(200)
}

// TestDeeplyNestedJSON: nesting beyond the decoder's limit is a 400, never a
// crash or a 500; deep nesting within it is stored and read back.
func TestDeeplyNestedJSON(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	arrays := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	objects := func(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }

	for _, tc := range []struct{ name, body string }{
		{"10,000 arrays", `{"queue_name":"q","payload":` + arrays(10000) + `}`},
		{"100,000 arrays", `{"queue_name":"q","payload":` + arrays(100000) + `}`},
		{"10,000 objects", `{"queue_name":"q","payload":` + objects(10000) + `}`},
		{"10,000 arrays in an unknown field", `{"queue_name":"q","payload":1,"extra":` + arrays(10000) + `}`},
		{"10,000 arrays, unclosed", `{"queue_name":"q","payload":` + strings.Repeat("[", 10000)},
		{"10,000 arrays in tags", `{"queue_name":"q","payload":1,"tags":` + arrays(10000) + `}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.as(t).refused("POST", "/api/v1/jobs", key, tc.body, 400, "INVALID_JSON")
		})
	}
	h.refused("POST", "/api/v1/jobs/bulk", key, `{"queue_name":"q","jobs":[{"payload":`+arrays(10000)+`}]}`, 400, "INVALID_JSON")
	h.refused("POST", "/api/v1/organizations", "", `{"name":"Deep Org","slug":"deep-org","x":`+arrays(20000)+`}`, 400, "INVALID_JSON")

	id := h.do("POST", "/api/v1/jobs", key, `{"queue_name":"q","payload":`+arrays(5000)+`}`).expect(201).json["id"].(string)
	job := h.do("GET", "/api/v1/jobs/"+id, key, nil).expect(200)
	depth := 0
	for v := job.json["payload"]; ; depth++ {
		a, ok := v.([]any)
		if !ok {
			break
		}
		if len(a) == 0 {
			depth++
			break
		}
		v = a[0]
	}
	if depth != 5000 {
		t.Fatalf("stored payload has depth %d, want 5000", depth)
	}
	got := h.claimOne(key, "q", "w1")
	if got.ID != id {
		t.Fatalf("claimed %s, want %s", got.ID, id)
	}
}

// TestHostileIDs: ids that are not UUIDs, SQL-looking ids and NUL bytes in
// paths name nothing (404, or the worker routes' own refusals), never 400
// or 500, and write nothing.
func TestHostileIDs(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	h.enqueue(key, "q", nil)
	for _, id := range hostileIDs {
		name := rbName(id)
		t.Run(name, func(t *testing.T) {
			h := h.as(t)
			h.refused("GET", "/api/v1/jobs/"+id, key, nil, 404, "NOT_FOUND")
			h.refused("GET", "/api/v1/jobs/"+id+"/history", key, nil, 404, "NOT_FOUND")
			h.refused("DELETE", "/api/v1/jobs/"+id, key, nil, 404, "NOT_FOUND")
			h.refused("POST", "/api/v1/jobs/"+id+"/retry", key, nil, 404, "NOT_FOUND")
			h.refused("PUT", "/api/v1/jobs/"+id+"/priority", key, map[string]any{"priority": 1}, 404, "NOT_FOUND")
			h.refused("POST", "/api/v1/jobs/"+id+"/complete", key, map[string]any{"worker_id": "w1"}, 400, "VALIDATION_ERROR")
			for _, route := range []string{"fail", "heartbeat"} {
				res := h.refused("POST", "/api/v1/jobs/"+id+"/"+route, key,
					map[string]any{"worker_id": "w1", "error": "e", "lease_duration_secs": 30}, 404, "NOT_FOUND")
				if res.json["success"] != false || res.json["error"] != "job_not_found_or_not_owned" {
					t.Fatalf("%s: body %s", route, res.raw)
				}
			}
			h.refused("GET", "/api/v1/api-keys/"+id, key, nil, 404, "NOT_FOUND")
			h.refused("PUT", "/api/v1/api-keys/"+id, key, map[string]any{"is_active": false}, 404, "NOT_FOUND")
			h.refused("DELETE", "/api/v1/api-keys/"+id, key, nil, 404, "NOT_FOUND")
			h.refused("GET", "/api/v1/organizations/"+id, key, nil, 404, "NOT_FOUND")
		})
	}
}

// TestHostileQueryStrings: query parameters are filters or numbers; hostile
// values are ignored or refused with 400, never 500, and never widen what the
// caller sees.
func TestHostileQueryStrings(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	_, other := h.org("other")
	mine := h.enqueue(key, "q", nil)
	theirs := h.enqueue(other, "q", nil)

	sql := "x'%20OR%20'1'='1"
	for _, path := range []string{
		"/api/v1/jobs?queue_name=" + sql, "/api/v1/jobs?queue=" + sql, "/api/v1/jobs?status=" + sql,
		"/api/v1/jobs?tag=" + sql, "/api/v1/jobs?queue_name=%00", "/api/v1/jobs?status=pending%27--",
		"/api/v1/jobs?order_by=" + sql + "&order_dir=" + sql, "/api/v1/jobs?offset=-5&limit=-5",
	} {
		res := h.do("GET", path, key, nil).expect(200)
		seen := map[string]bool{}
		for _, j := range res.list {
			seen[j.(map[string]any)["id"].(string)] = true
		}
		if seen[theirs] {
			t.Fatalf("%s shows another organization's job", path)
		}
		if strings.Contains(path, "tag=") {
			continue // a tag filter that matches nothing is still a filter
		}
		if !seen[mine] {
			t.Fatalf("%s: the ignored filter hid the caller's job: %s", path, res.raw)
		}
	}
	for _, path := range []string{
		"/api/v1/jobs/stats?queue_name=" + sql, "/api/v1/jobs/dlq?queue_name=" + sql,
		"/api/v1/jobs/status?ids=" + sql, "/api/v1/jobs/status?ids=" + theirs + "," + sql,
	} {
		res := h.do("GET", path, key, nil).expect(200)
		if strings.Contains(string(res.raw), theirs) {
			t.Fatalf("%s shows another organization's job: %s", path, res.raw)
		}
	}
	h.catchUp()
	if n := h.do("GET", "/api/v1/jobs/stats?queue_name="+sql, key, nil).json["total"]; n != float64(1) {
		t.Fatalf("stats with an ignored filter: total %v, want 1", n)
	}
	for _, path := range []string{
		"/api/v1/jobs?limit=1;DROP%20TABLE%20jobs", "/api/v1/jobs?offset=" + sql,
		"/api/v1/jobs?limit=99999999999999999999", "/api/v1/jobs/dlq?limit=abc", "/api/v1/jobs/status",
	} {
		h.refused("GET", path, key, nil, 400, "BAD_REQUEST")
	}
	// A tag filter is compared as text, which Postgres refuses with NUL or
	// bytes that are not UTF-8: a clear 400 naming the filter, never a 500.
	for _, path := range []string{
		"/api/v1/jobs?tag=%00", "/api/v1/jobs?tag=a%00b", "/api/v1/jobs?tag=%ff", "/api/v1/jobs?tag=%c3%28",
	} {
		res := h.refused("GET", path, key, nil, 400, "VALIDATION_ERROR")
		if d, _ := res.json["details"].([]any); len(d) != 1 || d[0].(map[string]any)["field"] != "tag" {
			t.Fatalf("%.60s: details %v, want one naming tag", path, res.json["details"])
		}
	}
	h.do("GET", "/api/v1/jobs?tag=%C3%A9t%C3%A9", key, nil).expect(200) // UTF-8 text is fine
}
