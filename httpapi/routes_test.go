package httpapi_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// TestUnknownRoutesAndMethods: the router's own refusals are JSON errors
// like every other.
func TestUnknownRoutesAndMethods(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	job := h.enqueue(key, "q", nil)

	for _, tc := range []struct{ method, path, key string }{
		{"GET", "/nope", ""},
		{"GET", "/api", ""},
		{"GET", "/api/v2/jobs", key},
		{"GET", "/api/v1/nope", key},
		{"GET", "/api/v1/jobs/" + job + "/nope", key},
		{"POST", "/api/v1/jobs/" + job + "/cancel", key},
		{"GET", "/api/v1/jobs/" + job + "/history/extra", key},
		{"GET", "/health/nope", ""},
		// A job id position takes any string: these name no job.
		{"GET", "/api/v1/jobs/claim", key},
		{"DELETE", "/api/v1/jobs/stats", key},
	} {
		res := h.refused(tc.method, tc.path, tc.key, nil, 404, "NOT_FOUND")
		if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Fatalf("%s %s: Content-Type %q", tc.method, tc.path, ct)
		}
	}
	for _, tc := range []struct{ method, path, key string }{
		{"PATCH", "/api/v1/jobs", key},
		{"PUT", "/api/v1/jobs", key},
		{"DELETE", "/api/v1/jobs", key},
		{"PATCH", "/api/v1/jobs/" + job, key},
		{"PUT", "/api/v1/jobs/" + job, key},
		{"GET", "/api/v1/jobs/" + job + "/retry", key},
		{"POST", "/api/v1/jobs/stats", key},
		{"PUT", "/api/v1/jobs/bulk", key},
		{"DELETE", "/health", ""},
		{"POST", "/health/ready", ""},
	} {
		res := h.refused(tc.method, tc.path, tc.key, nil, 405, "METHOD_NOT_ALLOWED")
		if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Fatalf("%s %s: Content-Type %q", tc.method, tc.path, ct)
		}
	}
	allow := h.do("PATCH", "/api/v1/jobs", key, nil).header.Get("Allow")
	if !strings.Contains(allow, "GET") || !strings.Contains(allow, "POST") {
		t.Fatalf("405 on /api/v1/jobs: Allow %q, want GET and POST", allow)
	}
	// Methods the server does not know at all: 501, JSON, with the headers
	// every response carries (the router never sees them).
	for _, method := range []string{"PROPFIND", "FOO", "BREW"} {
		for _, path := range []string{"/api/v1/jobs", "/api/v1/jobs/" + job, "/health", "/nope"} {
			res := h.refused(method, path, key, nil, 501, "NOT_IMPLEMENTED")
			if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Fatalf("%s %s: Content-Type %q", method, path, ct)
			}
			if res.header.Get("X-Content-Type-Options") != "nosniff" || res.header.Get("X-Frame-Options") != "DENY" {
				t.Fatalf("%s %s: no security headers: %v", method, path, res.header)
			}
		}
	}
	if st := h.jobStatus(key, job); st != "pending" {
		t.Fatalf("job is %s after the refused requests", st)
	}
}

// TestAPIVersionHeader: X-API-Version 1 (or absent, or malformed) is
// served; any other well-formed version is a 400 that writes nothing.
// /api/v1 responses carry x-api-version; root routes do not.
func TestAPIVersionHeader(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	ver := func(v string) map[string]string { return map[string]string{"X-API-Version": v} }

	for _, v := range []string{"2", "0", "v2", "1.1", "2.0", "99"} {
		for _, tc := range []struct {
			method, path, key string
			body              any
		}{
			{"GET", "/api/v1/jobs", key, nil},
			{"POST", "/api/v1/jobs", key, `{"queue_name":"q","payload":1}`},
			{"POST", "/api/v1/organizations", "", `{"name":"Versioned","slug":"versioned"}`},
			{"GET", "/api/v1/jobs", "", nil}, // the version is checked before the key
		} {
			before := h.counts()
			res := h.doHeaders(tc.method, tc.path, tc.key, tc.body, ver(v)).expectError(400, "BAD_REQUEST")
			h.unchanged(before, "X-API-Version "+v)
			if !strings.Contains(res.json["message"].(string), "Unsupported API version: "+v) {
				t.Fatalf("message %q", res.json["message"])
			}
			if got := res.header.Get("X-API-Version"); got != "1" {
				t.Fatalf("refused version %s answered x-api-version %q, want 1", v, got)
			}
		}
	}
	for _, tc := range []struct{ sent, echoed string }{
		{"", "1"}, {"1", "1"}, {"1.0", "1.0"},
		{"2; DROP TABLE jobs", "1"}, {"11111111111111111", "1"}, {"2_0", "1"}, {"ü", "1"},
	} {
		var hdr map[string]string
		if tc.sent != "" {
			hdr = ver(tc.sent)
		}
		res := h.doHeaders("GET", "/api/v1/jobs", key, nil, hdr).expect(200)
		if got := res.header.Get("X-API-Version"); got != tc.echoed {
			t.Fatalf("X-API-Version %q: answered %q, want %q", tc.sent, got, tc.echoed)
		}
	}
	// Error responses under /api/v1 carry it too; root routes do not.
	if got := h.do("GET", "/api/v1/jobs", "", nil).expectError(401, "UNAUTHORIZED").header.Get("X-API-Version"); got != "1" {
		t.Fatalf("401 answered x-api-version %q", got)
	}
	if got := h.do("GET", "/api/v1/nope", key, nil).expectError(404, "NOT_FOUND").header.Get("X-API-Version"); got != "1" {
		t.Fatalf("404 answered x-api-version %q", got)
	}
	if got := h.doHeaders("GET", "/health", "", nil, ver("2")).expect(200).header.Get("X-API-Version"); got != "" {
		t.Fatalf("/health answered x-api-version %q", got)
	}
}

// TestRequestID: X-Request-ID is echoed on every answer, errors included,
// and minted (a fresh UUID) when absent or unreasonable.
func TestRequestID(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	rid := func(v string) map[string]string { return map[string]string{"X-Request-ID": v} }

	for _, tc := range []struct {
		method, path, key string
		status            int
	}{
		{"GET", "/api/v1/jobs", key, 200},
		{"GET", "/api/v1/jobs", "", 401},
		{"GET", "/api/v1/nope", key, 404},
		{"PATCH", "/api/v1/jobs", key, 405},
		{"POST", "/api/v1/jobs", key, 400},
		{"GET", "/health", "", 200},
	} {
		res := h.doHeaders(tc.method, tc.path, tc.key, nil, rid("req-123")).expect(tc.status)
		if got := res.header.Get("X-Request-ID"); got != "req-123" {
			t.Fatalf("%s %s: X-Request-ID %q, want req-123", tc.method, tc.path, got)
		}
	}
	seen := map[string]bool{}
	for _, hdr := range []map[string]string{nil, nil, rid(strings.Repeat("r", 201))} {
		got := h.doHeaders("GET", "/api/v1/jobs", key, nil, hdr).expect(200).header.Get("X-Request-ID")
		if _, err := uuid.Parse(got); err != nil {
			t.Fatalf("minted X-Request-ID %q is not a UUID", got)
		}
		if seen[got] {
			t.Fatalf("X-Request-ID %s minted twice", got)
		}
		seen[got] = true
	}
}

// TestOversizedHeaders: a request line or headers beyond the read buffer
// answer a JSON error, not a dropped connection or a 500.
func TestOversizedHeaders(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	addr := h.listen()
	before := h.counts()
	for _, raw := range []string{
		"GET /api/v1/jobs/" + strings.Repeat("a", 10000) + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key + "\r\n\r\n",
		"GET /api/v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key + "\r\nX-Big: " + strings.Repeat("b", 10000) + "\r\n\r\n",
	} {
		resp, body := rawExchange(t, addr, []byte(raw))
		if resp.StatusCode != 431 {
			t.Fatalf("status %d, want 431; body %s", resp.StatusCode, body)
		}
		var e map[string]any
		if err := json.Unmarshal(body, &e); err != nil || e["code"] == nil || e["message"] == "" {
			t.Fatalf("431 body %q is not a JSON error", body)
		}
	}
	h.unchanged(before, "oversized headers")
	resp, body := rawExchange(t, addr, []byte("GET /api/v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+key+"\r\n\r\n"))
	if resp.StatusCode != 200 {
		t.Fatalf("normal request on the socket: %d %s", resp.StatusCode, body)
	}
}
