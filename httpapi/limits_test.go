package httpapi_test

import (
	"context"
	"encoding/json"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spooled-go/spooled/internal/config"
)

// Every HTTP limit the server answers, with its status, headers and body.
// The request body limit (MAX_CONTENT_LENGTH) and the server-wide payload
// limit (MAX_PAYLOAD_SIZE) are covered in badinput_test.go
// (TestBodyOverMaxContentLength, TestOversizedInput); these tests cover the
// per-client and per-organization request rates, the plan limits, the
// security headers and CORS.

// limCustom sets an organization's custom_limits in the database. The key
// cache holds an organization's limits from the key's first use on, so this
// is only for organizations whose keys have not been used yet.
func (h *harness) limCustom(orgID, custom string) {
	h.t.Helper()
	tag, err := h.pool.Exec(context.Background(),
		`UPDATE organizations SET custom_limits = $1::jsonb WHERE id = $2`, custom, orgID)
	if err != nil {
		h.t.Fatalf("set custom_limits: %v", err)
	}
	if tag.RowsAffected() != 1 {
		h.t.Fatalf("set custom_limits: %d organizations updated, want 1", tag.RowsAffected())
	}
}

// limFast is custom_limits that lift the plan's request rate out of the
// way, for tests about other limits.
const limFast = `"rate_limit_requests_per_second": 100000, "rate_limit_burst": 100000`

// limOrg creates an organization on plan with custom limits (JSON object
// members, may be empty) set before its key is first used.
func (h *harness) limOrg(slug, plan, custom string) (orgID, key string) {
	h.t.Helper()
	orgID, key = h.orgOnPlan(slug, plan)
	if custom != "" {
		h.limCustom(orgID, "{"+custom+"}")
	}
	return orgID, key
}

// limHeader fails unless header name is present with a value.
func (r response) limHeader(name string) string {
	r.t.Helper()
	v := r.header.Get(name)
	if v == "" {
		r.t.Fatalf("no %s header; headers %v body %s", name, r.header, r.raw)
	}
	return v
}

func (r response) limInt(name string) int64 {
	r.t.Helper()
	v := r.limHeader(name)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		r.t.Fatalf("%s: %q is not a whole number", name, v)
	}
	return n
}

// limExpect429 checks a 429 answer: headers the SDK reads and the body of
// the contract (Appendix B), for the given limit and scope.
func (r response) limExpect429(limit int, scope string) {
	r.t.Helper()
	r.expectError(429, "RATE_LIMIT_EXCEEDED")
	now := time.Now()
	retry := r.limInt("Retry-After")
	if retry < 1 {
		r.t.Fatalf("Retry-After %d, want at least 1", retry)
	}
	if got := r.limHeader("X-RateLimit-Limit"); got != strconv.Itoa(limit) {
		r.t.Fatalf("X-RateLimit-Limit %q, want %d", got, limit)
	}
	if got := r.limHeader("X-RateLimit-Remaining"); got != "0" {
		r.t.Fatalf("X-RateLimit-Remaining %q on a 429, want 0", got)
	}
	if reset := r.limInt("X-RateLimit-Reset"); reset <= now.Unix()-1 || reset > now.Add(time.Hour).Unix() {
		r.t.Fatalf("X-RateLimit-Reset %d is not a unix time just ahead of %d", reset, now.Unix())
	}
	b := r.json
	if b["retry_after_secs"] != float64(retry) {
		r.t.Fatalf("retry_after_secs %v, want %d (as Retry-After); body %s", b["retry_after_secs"], retry, r.raw)
	}
	if b["limit"] != float64(limit) || b["remaining"] != float64(0) {
		r.t.Fatalf("limit/remaining %v/%v, want %d/0; body %s", b["limit"], b["remaining"], limit, r.raw)
	}
	msg, _ := b["message"].(string)
	if !strings.Contains(msg, "Too many requests") {
		r.t.Fatalf("message %q", msg)
	}
	resetAt, _ := b["reset_at"].(string)
	at, err := time.Parse(time.RFC3339Nano, resetAt)
	if err != nil {
		r.t.Fatalf("reset_at %q is not RFC 3339: %v", resetAt, err)
	}
	if !at.After(now.Add(-time.Second)) || at.After(now.Add(time.Hour)) {
		r.t.Fatalf("reset_at %s is not just ahead of %s", at, now)
	}
	d, _ := b["details"].(map[string]any)
	if d["scope"] != scope || d["retry_after_seconds"] != float64(retry) {
		r.t.Fatalf("details %v, want scope %s and retry_after_seconds %d", d, scope, retry)
	}
}

// TestPerClientRateLimit: RATE_LIMIT_REQUESTS_PER_SECOND 1 with
// RATE_LIMIT_BURST_SIZE 3 lets a key make three requests at once, each
// answer counting down X-RateLimit-Remaining, and answers the fourth 429.
func TestPerClientRateLimit(t *testing.T) {
	t.Parallel()
	// The limiters' clock is pinned: no token comes back while the test
	// counts, however slowly the machine runs its requests.
	h := newHarnessLimits(t, func(c *config.Config) { c.RateLimitRequestsPerSecond = 1; c.RateLimitBurstSize = 3 })
	_, key := h.org("acme")

	for i, want := range []string{"2", "1", "0"} {
		res := h.do("GET", "/api/v1/organizations", key, nil).expect(200)
		if got := res.limHeader("X-RateLimit-Remaining"); got != want {
			t.Fatalf("request %d: X-RateLimit-Remaining %q, want %q", i+1, got, want)
		}
		if got := res.limHeader("X-RateLimit-Limit"); got != "1" {
			t.Fatalf("request %d: X-RateLimit-Limit %q, want 1", i+1, got)
		}
		if reset := res.limInt("X-RateLimit-Reset"); reset < time.Now().Unix() {
			t.Fatalf("request %d: X-RateLimit-Reset %d is in the past", i+1, reset)
		}
	}
	before := h.counts()
	res := h.do("POST", "/api/v1/jobs", key, map[string]any{"queue_name": "q", "payload": 1})
	res.limExpect429(1, "client")
	h.unchanged(before, "a request over the client rate")
	// Security headers are on the 429 too.
	if res.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("429 without security headers: %v", res.header)
	}
}

// TestPerClientRateLimitKeys: the per-client bucket is the API key's;
// without a key it is the first X-Forwarded-For address's, shared by every
// request from that address and by no other.
func TestPerClientRateLimitKeys(t *testing.T) {
	t.Parallel()
	h := newHarnessLimits(t, func(c *config.Config) { c.RateLimitRequestsPerSecond = 1; c.RateLimitBurstSize = 3 })
	_, keyA := h.org("acme")
	_, keyB := h.newKey(keyA, "second", nil) // key A's first request

	h.do("GET", "/api/v1/organizations", keyA, nil).expect(200)
	h.do("GET", "/api/v1/organizations", keyA, nil).expect(200)
	exhausted := h.do("GET", "/api/v1/organizations", keyA, nil)
	// Key B, same organization: a bucket of its own, full.
	b := h.do("GET", "/api/v1/organizations", keyB, nil).expect(200)
	if got := b.limHeader("X-RateLimit-Remaining"); got != "2" {
		t.Fatalf("key B's first request: X-RateLimit-Remaining %q, want 2 (its own bucket)", got)
	}
	exhausted.limExpect429(1, "client")

	// No key: the first X-Forwarded-For address names the client. The
	// requests are refused 401 (no credential), after the rate limit.
	noKey := func(xff, ua string) response {
		t.Helper()
		return h.doHeaders("GET", "/api/v1/jobs", "", nil, map[string]string{"X-Forwarded-For": xff, "User-Agent": ua})
	}
	for i, want := range []string{"2", "1", "0"} {
		res := noKey("203.0.113.7", "sdk/1").expectError(401, "UNAUTHORIZED")
		if got := res.limHeader("X-RateLimit-Remaining"); got != want {
			t.Fatalf("203.0.113.7 request %d: X-RateLimit-Remaining %q, want %q", i+1, got, want)
		}
	}
	sameFirst := noKey("203.0.113.7, 10.0.0.1", "other-tool/2") // same first address, other proxy and agent
	other := noKey("198.51.100.9", "sdk/1")                     // another address, same agent
	again := noKey("203.0.113.7", "sdk/1")
	sameFirst.limExpect429(1, "client")
	again.limExpect429(1, "client")
	other.expectError(401, "UNAUTHORIZED")
	if got := other.limHeader("X-RateLimit-Remaining"); got != "2" {
		t.Fatalf("198.51.100.9: X-RateLimit-Remaining %q, want 2 (its own bucket)", got)
	}
}

// limBurst sends n requests with key as fast as it can.
func (h *harness) limBurst(key string, n int) []response {
	h.t.Helper()
	out := make([]response, n)
	for i := range out {
		out[i] = h.do("GET", "/api/v1/organizations", key, nil)
	}
	return out
}

// limStatuses is the responses' statuses.
func limStatuses(rs []response) []int {
	out := make([]int, len(rs))
	for i, r := range rs {
		out[i] = r.status
	}
	return out
}

// TestOrganizationRateLimit: the plan's request rate applies per
// organization (contract §5.6: free is 5/s with a burst of 10), to all its
// keys together, and custom_limits change it.
func TestOrganizationRateLimit(t *testing.T) {
	t.Parallel()
	// The per-client limit is off, and the limiters' clock is pinned: no
	// token comes back during a burst, however slowly the machine runs it.
	h := newHarnessLimits(t)

	// decisive runs burst on a fresh organization.
	decisive := func(name, custom string, burst func(key string) []response) []response {
		t.Helper()
		_, key := h.limOrg(name, "free", custom)
		return burst(key)
	}
	expectOK := func(name string, rs []response) {
		t.Helper()
		for i, r := range rs {
			if r.status != 200 {
				t.Fatalf("%s: request %d: %d, want 200; statuses %v", name, i+1, r.status, limStatuses(rs))
			}
		}
	}

	// Free: 10 at once, then 429 for the organization.
	rs := decisive("free", "", func(key string) []response { return h.limBurst(key, 11) })
	expectOK("free", rs[:10])
	rs[10].limExpect429(5, "organization")

	// Two keys of one organization share its bucket (the per-client limit
	// is off here): creating the second key and nine requests with the
	// first are ten; the second key's first request is the eleventh.
	rs = decisive("shared", "", func(key string) []response {
		created := h.do("POST", "/api/v1/api-keys", key, map[string]any{"name": "second"})
		second, _ := created.json["key"].(string)
		out := append([]response{created}, h.limBurst(key, 9)...)
		return append(out, h.do("GET", "/api/v1/organizations", second, nil))
	})
	rs[0].expect(201)
	expectOK("shared", rs[1:10])
	rs[10].limExpect429(5, "organization")

	// custom_limits raise the burst: 25 at once, the 26th refused; the
	// rate is still the plan's.
	rs = decisive("burst25", `"rate_limit_burst": 25`, func(key string) []response { return h.limBurst(key, 26) })
	expectOK("burst 25", rs[:25])
	rs[25].limExpect429(5, "organization")

	// custom_limits raise the rate and the burst: 60 at once are fine.
	_, key := h.limOrg("fast", "free", limFast)
	expectOK("raised rate", h.limBurst(key, 60))
}

// limPayload is a JSON object of exactly n bytes.
func limPayload(n int) string {
	return `{"d":"` + strings.Repeat("x", n-len(`{"d":""}`)) + `"}`
}

// limExactBody decodes an error body and compares it with want exactly
// (every key, no more).
func (r response) limExactBody(want map[string]any) {
	r.t.Helper()
	var got map[string]any
	if err := json.Unmarshal(r.raw, &got); err != nil {
		r.t.Fatalf("body is not JSON: %s", r.raw)
	}
	if !reflect.DeepEqual(got, want) {
		keys := func(m map[string]any) []string {
			out := make([]string, 0, len(m))
			for k := range m {
				out = append(out, k)
			}
			sort.Strings(out)
			return out
		}
		r.t.Fatalf("body\n %s\nwant\n %v\n(keys %v, want %v)", r.raw, want, keys(got), keys(want))
	}
}

// TestPlanPayloadSize: a job's payload is capped by the plan (free 64 KiB,
// starter 256 KiB), answered 413 with the plan and the tier to upgrade to;
// nothing is written.
func TestPlanPayloadSize(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, free := h.limOrg("free", "free", limFast)
	_, starter := h.limOrg("starter", "starter", limFast)

	res := h.refused("POST", "/api/v1/jobs", free, `{"queue_name":"big","payload":`+limPayload(65537)+`}`, 413, "PAYLOAD_TOO_LARGE")
	res.limExactBody(map[string]any{
		"code": "PAYLOAD_TOO_LARGE", "error": "payload_too_large",
		"message": "Payload of 65537 bytes exceeds the free plan's limit of 65536 bytes.",
		"current": float64(65537), "limit": float64(65536), "plan": "free", "upgrade_to": "starter",
	})
	h.do("POST", "/api/v1/jobs", free, `{"queue_name":"big","payload":`+limPayload(65536)+`}`).expect(201)
	// Bulk: one oversized item refuses the batch.
	h.refused("POST", "/api/v1/jobs/bulk", free,
		`{"queue_name":"big","jobs":[{"payload":1},{"payload":`+limPayload(65537)+`}]}`, 413, "PAYLOAD_TOO_LARGE")

	res = h.refused("POST", "/api/v1/jobs", starter, `{"queue_name":"big","payload":`+limPayload(262145)+`}`, 413, "PAYLOAD_TOO_LARGE")
	if res.json["limit"] != float64(262144) || res.json["plan"] != "starter" || res.json["upgrade_to"] != "pro" {
		t.Fatalf("starter: %s", res.raw)
	}
	h.do("POST", "/api/v1/jobs", starter, `{"queue_name":"big","payload":`+limPayload(262144)+`}`).expect(201)
}

// TestPlanActiveJobs: free allows 10 active jobs (pending, scheduled and
// processing); the 11th create and any bulk that would pass 10 are refused
// 403 with the contract's body, and nothing is written. A finished job
// frees its slot.
func TestPlanActiveJobs(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.limOrg("free", "free", limFast)

	items := func(n int) []map[string]any {
		out := make([]map[string]any, n)
		for i := range out {
			out[i] = map[string]any{"payload": map[string]any{"i": i}}
		}
		return out
	}
	res := h.refused("POST", "/api/v1/jobs/bulk", key, map[string]any{"queue_name": "q", "jobs": items(11)}, 403, "LIMIT_EXCEEDED")
	res.limExactBody(map[string]any{
		"code": "LIMIT_EXCEEDED", "error": "limit_exceeded",
		"message":  "active jobs limit reached (0/10). Upgrade to starter for higher limits.",
		"resource": "active_jobs", "current": float64(0), "limit": float64(10), "plan": "free", "upgrade_to": "starter",
	})

	// Ten: one scheduled in the future, nine ready.
	h.enqueue(key, "q", map[string]any{"scheduled_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
	for range 9 {
		h.enqueue(key, "q", nil)
	}
	want := map[string]any{
		"code": "LIMIT_EXCEEDED", "error": "limit_exceeded",
		"message":  "active jobs limit reached (10/10). Upgrade to starter for higher limits.",
		"resource": "active_jobs", "current": float64(10), "limit": float64(10), "plan": "free", "upgrade_to": "starter",
	}
	h.refused("POST", "/api/v1/jobs", key, map[string]any{"queue_name": "q", "payload": 1}, 403, "LIMIT_EXCEEDED").limExactBody(want)
	h.refused("POST", "/api/v1/jobs", key, map[string]any{"queue_name": "other", "payload": 1}, 403, "LIMIT_EXCEEDED").limExactBody(want)
	h.refused("POST", "/api/v1/jobs/bulk", key, map[string]any{"queue_name": "q", "jobs": items(1)}, 403, "LIMIT_EXCEEDED").limExactBody(want)

	// Leased jobs are still active.
	c := h.claim(key, "q", "w1", 2)
	if len(c) != 2 {
		t.Fatalf("claimed %d, want 2", len(c))
	}
	h.refused("POST", "/api/v1/jobs", key, map[string]any{"queue_name": "q", "payload": 1}, 403, "LIMIT_EXCEEDED").limExactBody(want)
	// A completed one is not.
	h.do("POST", "/api/v1/jobs/"+c[0].ID+"/complete", key, map[string]any{"worker_id": "w1", "lease_id": c[0].Lease}).expect(200)
	h.enqueue(key, "q", nil)
	h.refused("POST", "/api/v1/jobs", key, map[string]any{"queue_name": "q", "payload": 1}, 403, "LIMIT_EXCEEDED").limExactBody(want)
}

// TestPlanJobsPerDay: custom_limits max_jobs_per_day 5: once the stats
// projection has caught up with five creates today, the sixth is refused
// with resource jobs_per_day, even after the five have finished.
func TestPlanJobsPerDay(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.limOrg("starter", "starter", limFast+`, "max_jobs_per_day": 5`)
	for range 5 {
		h.enqueue(key, "daily", nil)
	}
	for range 5 {
		c := h.claimOne(key, "daily", "w1")
		h.do("POST", "/api/v1/jobs/"+c.ID+"/complete", key, map[string]any{"worker_id": "w1", "lease_id": c.Lease}).expect(200)
	}
	h.catchUp()
	want := map[string]any{
		"code": "LIMIT_EXCEEDED", "error": "limit_exceeded",
		"message":  "jobs per day limit reached (5/5). Upgrade to pro for higher limits.",
		"resource": "jobs_per_day", "current": float64(5), "limit": float64(5), "plan": "starter", "upgrade_to": "pro",
	}
	h.refused("POST", "/api/v1/jobs", key, map[string]any{"queue_name": "daily", "payload": 1}, 403, "LIMIT_EXCEEDED").limExactBody(want)
	h.refused("POST", "/api/v1/jobs/bulk", key, map[string]any{"queue_name": "other", "jobs": []map[string]any{{"payload": 1}}},
		403, "LIMIT_EXCEEDED").limExactBody(want)
}

// TestPlanEnterprise: enterprise has no active-job or daily limit; a limit
// set through custom_limits is refused without upgrade_to (there is no
// tier above).
func TestPlanEnterprise(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.limOrg("big", "enterprise", "")
	jobs := make([]map[string]any, 100)
	for i := range jobs {
		jobs[i] = map[string]any{"payload": i}
	}
	for range 3 {
		res := h.do("POST", "/api/v1/jobs/bulk", key, map[string]any{"queue_name": "q", "jobs": jobs}).expect(200)
		if res.json["success_count"] != float64(100) {
			t.Fatalf("bulk: %s", res.raw)
		}
	}
	h.catchUp()
	h.enqueue(key, "q", nil) // 301 active, 301 today

	_, capped := h.limOrg("capped", "enterprise", `"max_active_jobs": 2, "max_payload_size_bytes": 100`)
	h.enqueue(capped, "q", nil)
	h.enqueue(capped, "q", nil)
	h.refused("POST", "/api/v1/jobs", capped, map[string]any{"queue_name": "q", "payload": 1}, 403, "LIMIT_EXCEEDED").limExactBody(map[string]any{
		"code": "LIMIT_EXCEEDED", "error": "limit_exceeded", "message": "active jobs limit reached (2/2).",
		"resource": "active_jobs", "current": float64(2), "limit": float64(2), "plan": "enterprise",
	})
	h.refused("POST", "/api/v1/jobs", capped, `{"queue_name":"q","payload":`+limPayload(101)+`}`, 413, "PAYLOAD_TOO_LARGE").limExactBody(map[string]any{
		"code": "PAYLOAD_TOO_LARGE", "error": "payload_too_large",
		"message": "Payload of 101 bytes exceeds the enterprise plan's limit of 100 bytes.",
		"current": float64(101), "limit": float64(100), "plan": "enterprise",
	})
}

var limSecurityHeaders = map[string]string{
	"X-Frame-Options":         "DENY",
	"X-Content-Type-Options":  "nosniff",
	"Referrer-Policy":         "strict-origin-when-cross-origin",
	"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
	"Permissions-Policy":      "camera=(), microphone=(), geolocation=()",
}

// TestSecurityHeaders: every response carries the security headers (a
// 200, a 401, a 404 from the router, a 405, a 400); HSTS only with
// ENABLE_HSTS.
func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	for _, hsts := range []bool{false, true} {
		h := newHarness(t, func(c *config.Config) { c.EnableHSTS = hsts })
		_, key := h.org("acme-" + strconv.FormatBool(hsts))
		responses := map[string]response{
			"200 health":       h.do("GET", "/health", "", nil).expect(200),
			"200 api":          h.do("GET", "/api/v1/organizations", key, nil).expect(200),
			"201 api":          h.do("POST", "/api/v1/jobs", key, map[string]any{"queue_name": "q", "payload": 1}).expect(201),
			"400 api":          h.do("POST", "/api/v1/jobs", key, "{").expect(400),
			"401 api":          h.do("GET", "/api/v1/jobs", "", nil).expect(401),
			"404 unknown":      h.do("GET", "/no/such/route", "", nil).expect(404),
			"404 unknown api":  h.do("GET", "/api/v1/no-such-route", key, nil).expect(404),
			"404 missing job":  h.do("GET", "/api/v1/jobs/00000000-0000-7000-8000-000000000000", key, nil).expect(404),
			"405 wrong method": h.do("PATCH", "/health", "", nil).expect(405),
		}
		for name, r := range responses {
			for k, v := range limSecurityHeaders {
				if got := r.header.Get(k); got != v {
					t.Fatalf("hsts=%v %s: %s = %q, want %q", hsts, name, k, got, v)
				}
			}
			got := r.header.Get("Strict-Transport-Security")
			switch {
			case hsts && got != "max-age=31536000; includeSubDomains":
				t.Fatalf("ENABLE_HSTS %s: Strict-Transport-Security %q", name, got)
			case !hsts && got != "":
				t.Fatalf("HSTS off %s: Strict-Transport-Security %q sent", name, got)
			}
		}
	}
}

// limPreflight sends a CORS preflight for POST with Authorization.
func (h *harness) limPreflight(origin string) response {
	h.t.Helper()
	return h.doHeaders("OPTIONS", "/api/v1/jobs", "", nil, map[string]string{
		"Origin": origin, "Access-Control-Request-Method": "POST",
		"Access-Control-Request-Headers": "authorization,content-type",
	})
}

// TestCORSDevelopment: development allows any origin.
func TestCORSDevelopment(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	if h.cfg.Environment != config.Development {
		t.Fatalf("harness environment %q", h.cfg.Environment)
	}
	for _, origin := range []string{"https://anything.example", "http://localhost:3000"} {
		res := h.limPreflight(origin)
		if res.status != 204 {
			t.Fatalf("preflight from %s: %d %s", origin, res.status, res.raw)
		}
		if got := res.header.Get("Access-Control-Allow-Origin"); got != "*" {
			t.Fatalf("preflight from %s: Access-Control-Allow-Origin %q, want *", origin, got)
		}
		if m := res.header.Get("Access-Control-Allow-Methods"); !strings.Contains(m, "POST") || !strings.Contains(m, "PATCH") {
			t.Fatalf("Access-Control-Allow-Methods %q", m)
		}
		if hd := strings.ToLower(res.header.Get("Access-Control-Allow-Headers")); !strings.Contains(hd, "authorization") {
			t.Fatalf("Access-Control-Allow-Headers %q", hd)
		}
		simple := h.doHeaders("GET", "/health", "", nil, map[string]string{"Origin": origin}).expect(200)
		if got := simple.header.Get("Access-Control-Allow-Origin"); got != "*" {
			t.Fatalf("GET from %s: Access-Control-Allow-Origin %q, want *", origin, got)
		}
		if exp := simple.header.Get("Access-Control-Expose-Headers"); !strings.Contains(exp, "X-RateLimit-Remaining") || !strings.Contains(exp, "Retry-After") {
			t.Fatalf("Access-Control-Expose-Headers %q", exp)
		}
	}
}

// TestCORSProduction: production allows only CORS_ALLOWED_ORIGINS (origins
// compare as browsers send them: lower-case scheme and host, no trailing
// slash) and answers any other origin without Access-Control-Allow-Origin.
func TestCORSProduction(t *testing.T) {
	t.Parallel()
	lookup := map[string]string{
		"SPOOLED_ENV":          "production",
		"JWT_SECRET":           strings.Repeat("p", 40),
		"CORS_ALLOWED_ORIGINS": "https://app.example.com, https://Admin.Example.com/",
	}
	loaded, err := config.Load(func(k string) (string, bool) { v, ok := lookup[k]; return v, ok })
	if err != nil {
		t.Fatalf("load production config: %v", err)
	}
	h := newHarness(t, func(c *config.Config) {
		c.Environment = loaded.Environment
		c.JWTSecret = loaded.JWTSecret
		c.CORSAllowedOrigins = loaded.CORSAllowedOrigins
	})
	if err := h.cfg.Validate(); err != nil {
		t.Fatalf("harness config: %v", err)
	}
	for _, origin := range []string{"https://app.example.com", "https://admin.example.com"} {
		res := h.limPreflight(origin)
		if res.status != 204 {
			t.Fatalf("preflight from %s: %d", origin, res.status)
		}
		if got := res.header.Get("Access-Control-Allow-Origin"); got != origin {
			t.Fatalf("preflight from allowed %s: Access-Control-Allow-Origin %q", origin, got)
		}
		if m := res.header.Get("Access-Control-Allow-Methods"); !strings.Contains(m, "POST") {
			t.Fatalf("Access-Control-Allow-Methods %q", m)
		}
		simple := h.doHeaders("GET", "/health", "", nil, map[string]string{"Origin": origin}).expect(200)
		if got := simple.header.Get("Access-Control-Allow-Origin"); got != origin {
			t.Fatalf("GET from allowed %s: Access-Control-Allow-Origin %q", origin, got)
		}
		if !strings.Contains(simple.header.Get("Vary"), "Origin") {
			t.Fatalf("GET from %s: Vary %q lacks Origin", origin, simple.header.Get("Vary"))
		}
	}
	for _, origin := range []string{
		"https://evil.example", "http://app.example.com", "https://app.example.com.evil.example",
		"https://app.example.com:8443", "null",
	} {
		res := h.limPreflight(origin)
		if got := res.header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Fatalf("preflight from refused %s: Access-Control-Allow-Origin %q", origin, got)
		}
		simple := h.doHeaders("GET", "/health", "", nil, map[string]string{"Origin": origin}).expect(200)
		if got := simple.header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Fatalf("GET from refused %s: Access-Control-Allow-Origin %q", origin, got)
		}
	}
}
