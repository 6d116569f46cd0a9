package httpapi_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spooled-go/spooled/internal/config"
)

// newKey creates another API key of the caller's organization and returns
// its id and raw key.
func (h *harness) newKey(key, name string, extra map[string]any) (id, raw string) {
	h.t.Helper()
	body := map[string]any{"name": name}
	for k, v := range extra {
		body[k] = v
	}
	res := h.do("POST", "/api/v1/api-keys", key, body).expect(201)
	return res.json["id"].(string), res.json["key"].(string)
}

// TestAuthorizationHeader: every protected route refuses a missing or
// malformed Authorization header with 401 UNAUTHORIZED and an unknown
// credential with 401 AUTHENTICATION_FAILED, before doing anything.
func TestAuthorizationHeader(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	orgID, key := h.org("acme")
	keyID, _ := h.newKey(key, "spare", nil)
	job := h.enqueue(key, "q", nil)
	h.enqueue(key, "q", nil)

	routes := []struct{ method, path, body string }{
		{"GET", "/api/v1/jobs", ""},
		{"POST", "/api/v1/jobs", `{"queue_name":"q","payload":1}`},
		{"GET", "/api/v1/jobs/stats", ""},
		{"GET", "/api/v1/jobs/status?ids=" + job, ""},
		{"GET", "/api/v1/jobs/dlq", ""},
		{"POST", "/api/v1/jobs/dlq/retry", `{}`},
		{"POST", "/api/v1/jobs/dlq/purge", `{"confirm":true}`},
		{"POST", "/api/v1/jobs/bulk", `{"queue_name":"q","jobs":[{"payload":1}]}`},
		{"POST", "/api/v1/jobs/claim", `{"queue_name":"q","worker_id":"w1"}`},
		{"GET", "/api/v1/jobs/" + job, ""},
		{"DELETE", "/api/v1/jobs/" + job, ""},
		{"GET", "/api/v1/jobs/" + job + "/history", ""},
		{"POST", "/api/v1/jobs/" + job + "/retry", ""},
		{"PUT", "/api/v1/jobs/" + job + "/priority", `{"priority":9}`},
		{"POST", "/api/v1/jobs/" + job + "/complete", `{"worker_id":"w1"}`},
		{"POST", "/api/v1/jobs/" + job + "/fail", `{"worker_id":"w1","error":"x"}`},
		{"POST", "/api/v1/jobs/" + job + "/heartbeat", `{"worker_id":"w1","lease_duration_secs":30}`},
		{"GET", "/api/v1/organizations", ""},
		{"GET", "/api/v1/organizations/" + orgID, ""},
		{"GET", "/api/v1/api-keys", ""},
		{"POST", "/api/v1/api-keys", `{"name":"another"}`},
		{"GET", "/api/v1/api-keys/" + keyID, ""},
		{"PUT", "/api/v1/api-keys/" + keyID, `{"is_active":false}`},
		{"DELETE", "/api/v1/api-keys/" + keyID, ""},
	}
	unknown := "sk_test_" + strings.Repeat("A", 43)
	creds := []struct {
		name    string
		headers map[string]string
		code    string
	}{
		{"no header", nil, "UNAUTHORIZED"},
		{"empty header", map[string]string{"Authorization": ""}, "UNAUTHORIZED"},
		{"basic scheme", map[string]string{"Authorization": "Basic dXNlcjpwYXNz"}, "UNAUTHORIZED"},
		{"basic scheme with the key", map[string]string{"Authorization": "Basic " + key}, "UNAUTHORIZED"},
		{"bearer without token", map[string]string{"Authorization": "Bearer"}, "UNAUTHORIZED"},
		{"bearer with blank token", map[string]string{"Authorization": "Bearer    "}, "UNAUTHORIZED"},
		{"key without scheme", map[string]string{"Authorization": key}, "UNAUTHORIZED"},
		{"token scheme", map[string]string{"Authorization": "Token " + key}, "UNAUTHORIZED"},
		{"key in X-API-Key only", map[string]string{"X-API-Key": key}, "UNAUTHORIZED"},
		{"unknown sk_test_ key", map[string]string{"Authorization": "Bearer " + unknown}, "AUTHENTICATION_FAILED"},
		{"unknown sk_live_ key", map[string]string{"Authorization": "Bearer sk_live_" + strings.Repeat("B", 43)}, "AUTHENTICATION_FAILED"},
		{"key plus one character", map[string]string{"Authorization": "Bearer " + key + "x"}, "AUTHENTICATION_FAILED"},
		{"key minus one character", map[string]string{"Authorization": "Bearer " + key[:len(key)-1]}, "AUTHENTICATION_FAILED"},
		{"key upper-cased", map[string]string{"Authorization": "Bearer " + strings.ToUpper(key)}, "AUTHENTICATION_FAILED"},
		{"SQL token", map[string]string{"Authorization": "Bearer x' OR '1'='1"}, "AUTHENTICATION_FAILED"},
		{"JWT-looking token", map[string]string{"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2ln"}, "AUTHENTICATION_FAILED"},
		{"invalid UTF-8 token", map[string]string{"Authorization": "Bearer sk_test_\xff\xfe"}, "AUTHENTICATION_FAILED"},
		{"two tokens", map[string]string{"Authorization": "Bearer " + key + " " + key}, "AUTHENTICATION_FAILED"},
	}
	for _, cr := range creds {
		t.Run(cr.name, func(t *testing.T) {
			h := h.as(t)
			for _, rt := range routes {
				before := h.counts()
				var body any
				if rt.body != "" {
					body = rt.body
				}
				h.doHeaders(rt.method, rt.path, "", body, cr.headers).expectError(401, cr.code)
				h.unchanged(before, cr.name+": "+rt.method+" "+rt.path)
			}
		})
	}
	if t.Failed() {
		return
	}
	// The same routes answer the real key (the last one revokes the spare key).
	for _, rt := range routes {
		var body any
		if rt.body != "" {
			body = rt.body
		}
		res := h.do(rt.method, rt.path, key, body)
		if res.status == 401 || res.status >= 500 {
			t.Fatalf("%s %s with the key: %d %s", rt.method, rt.path, res.status, res.raw)
		}
	}
}

// TestPublicRoutesNeedNoKey: health checks and registration answer without
// any credential, and ignore a bad one.
func TestPublicRoutesNeedNoKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, headers := range []map[string]string{nil, {"Authorization": "Bearer sk_test_nope"}, {"Authorization": "Basic x"}} {
		res := h.doHeaders("GET", "/health", "", nil, headers).expect(200)
		if res.json["status"] != "healthy" || res.json["database"] != true {
			t.Fatalf("/health: %s", res.raw)
		}
		h.doHeaders("GET", "/health/live", "", nil, headers).expect(200)
		h.doHeaders("GET", "/health/ready", "", nil, headers).expect(200)
	}
	res := h.doHeaders("POST", "/api/v1/organizations", "", map[string]any{"name": "Public Org", "slug": "public-org"},
		map[string]string{"Authorization": "Bearer sk_test_nope"}).expect(201)
	key := res.json["api_key"].(map[string]any)["key"].(string)
	if !strings.HasPrefix(key, "sk_test_") || len(key) != len("sk_test_")+43 {
		t.Fatalf("initial key %q is not sk_test_ + 43 characters", key)
	}
	h.do("GET", "/api/v1/jobs", key, nil).expect(200)
}

// TestRevokedKeyIsRefusedAtOnce: a revoked key stops working on the next
// request, whether it was cached or not, revoked by DELETE or by PUT, or
// revoked by itself.
func TestRevokedKeyIsRefusedAtOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	job := `{"queue_name":"q","payload":1}`

	// Used (so cached), then revoked with DELETE.
	id2, raw2 := h.newKey(key, "worker key", nil)
	h.do("GET", "/api/v1/jobs", raw2, nil).expect(200)
	h.do("DELETE", "/api/v1/api-keys/"+id2, key, nil).expect(204)
	h.refused("POST", "/api/v1/jobs", raw2, job, 401, "AUTHENTICATION_FAILED")
	h.refused("GET", "/api/v1/jobs", raw2, nil, 401, "AUTHENTICATION_FAILED")
	got := h.do("GET", "/api/v1/api-keys/"+id2, key, nil).expect(200)
	if got.json["is_active"] != false {
		t.Fatalf("revoked key reads as %s", got.raw)
	}

	// Used, then revoked with PUT is_active=false; reactivated, it works again.
	id3, raw3 := h.newKey(key, "ci key", nil)
	h.do("GET", "/api/v1/jobs", raw3, nil).expect(200)
	h.do("PUT", "/api/v1/api-keys/"+id3, key, map[string]any{"is_active": false}).expect(200)
	h.refused("POST", "/api/v1/jobs", raw3, job, 401, "AUTHENTICATION_FAILED")
	h.do("PUT", "/api/v1/api-keys/"+id3, key, map[string]any{"is_active": true}).expect(200)
	h.do("GET", "/api/v1/jobs", raw3, nil).expect(200)

	// Never used, then revoked.
	id4, raw4 := h.newKey(key, "fresh key", nil)
	h.do("DELETE", "/api/v1/api-keys/"+id4, key, nil).expect(204)
	h.refused("GET", "/api/v1/jobs", raw4, nil, 401, "AUTHENTICATION_FAILED")

	// A key revokes itself.
	id5, raw5 := h.newKey(key, "self", nil)
	h.do("DELETE", "/api/v1/api-keys/"+id5, raw5, nil).expect(204)
	h.refused("GET", "/api/v1/jobs", raw5, nil, 401, "AUTHENTICATION_FAILED")
	h.refused("DELETE", "/api/v1/api-keys/"+id5, raw5, nil, 401, "AUTHENTICATION_FAILED")

	// The organization's first key was never affected.
	h.do("POST", "/api/v1/jobs", key, job).expect(201)
}

// TestExpiredKeyIsRefused: a key whose expires_at has passed is refused with
// 401 AUTHENTICATION_FAILED. expires_at is moved into the past in the
// database, as time would; the key is not used before, so no cached copy
// hides the change.
func TestExpiredKeyIsRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	ctx := context.Background()
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)

	id, raw := h.newKey(key, "short lived", map[string]any{"expires_at": future})
	if _, err := h.pool.Exec(ctx, `UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	res := h.refused("GET", "/api/v1/jobs", raw, nil, 401, "AUTHENTICATION_FAILED")
	if !strings.Contains(res.json["message"].(string), "expired") {
		t.Fatalf("message %q does not say the key expired", res.json["message"])
	}
	h.refused("POST", "/api/v1/jobs", raw, `{"queue_name":"q","payload":1}`, 401, "AUTHENTICATION_FAILED")

	// A key that expires later works now.
	_, live := h.newKey(key, "long lived", map[string]any{"expires_at": future})
	h.do("GET", "/api/v1/jobs", live, nil).expect(200)

	// A key cannot be created already expired.
	h.refused("POST", "/api/v1/api-keys", key, map[string]any{"name": "stale",
		"expires_at": time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)}, 400, "VALIDATION_ERROR").expectField("expires_at")
}

// TestKeyChangesElsewhereWithoutCache: with the key cache disabled
// (API_KEY_CACHE_TTL_SECS=0), a key revoked or expired by another instance
// (here: directly in the database) is refused on the next request even after
// it was used.
func TestKeyChangesElsewhereWithoutCache(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *config.Config) { c.APIKeyCacheTTL = 0 })
	_, key := h.org("acme")
	ctx := context.Background()

	idA, rawA := h.newKey(key, "to expire", nil)
	idB, rawB := h.newKey(key, "to revoke", nil)
	h.do("GET", "/api/v1/jobs", rawA, nil).expect(200)
	h.do("GET", "/api/v1/jobs", rawB, nil).expect(200)
	if _, err := h.pool.Exec(ctx, `UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1`, idA); err != nil {
		t.Fatal(err)
	}
	if _, err := h.pool.Exec(ctx, `UPDATE api_keys SET is_active = false WHERE id = $1`, idB); err != nil {
		t.Fatal(err)
	}
	h.refused("GET", "/api/v1/jobs", rawA, nil, 401, "AUTHENTICATION_FAILED")
	h.refused("GET", "/api/v1/jobs", rawB, nil, 401, "AUTHENTICATION_FAILED")
	h.do("GET", "/api/v1/jobs", key, nil).expect(200)
}

// TestAdminOrganizations: the admin route needs ADMIN_API_KEY configured and
// the exact X-Admin-Key; then it creates organizations with a plan tier.
func TestAdminOrganizations(t *testing.T) {
	t.Parallel()
	body := map[string]any{"name": "Big Customer", "slug": "big-customer", "plan_tier": "enterprise"}

	t.Run("not configured", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, func(c *config.Config) { c.AdminAPIKey = "" })
		for _, hdr := range []map[string]string{nil, {"X-Admin-Key": "anything"}, {"X-Admin-Key": ""}} {
			before := h.counts()
			res := h.doHeaders("POST", "/api/v1/admin/organizations", "", body, hdr).expectError(401, "UNAUTHORIZED")
			if res.json["error"] != "admin_not_configured" {
				t.Fatalf("error %v, want admin_not_configured", res.json["error"])
			}
			h.unchanged(before, "admin route without ADMIN_API_KEY")
		}
	})

	t.Run("configured", func(t *testing.T) {
		t.Parallel()
		const admin = "admin-secret-0123456789abcdef"
		h := newHarness(t, func(c *config.Config) { c.AdminAPIKey = admin })
		_, orgKey := h.org("acme")
		for _, tc := range []struct {
			name    string
			headers map[string]string
			errName string
		}{
			{"missing", nil, "missing_admin_key"},
			{"wrong", map[string]string{"X-Admin-Key": "wrong"}, "invalid_admin_key"},
			{"prefix", map[string]string{"X-Admin-Key": admin[:len(admin)-1]}, "invalid_admin_key"},
			{"suffix", map[string]string{"X-Admin-Key": admin + "x"}, "invalid_admin_key"},
			{"case", map[string]string{"X-Admin-Key": strings.ToUpper(admin)}, "invalid_admin_key"},
			{"as bearer", map[string]string{"Authorization": "Bearer " + admin}, "missing_admin_key"},
			{"org key", map[string]string{"Authorization": "Bearer " + orgKey, "X-Admin-Key": orgKey}, "invalid_admin_key"},
		} {
			before := h.counts()
			res := h.doHeaders("POST", "/api/v1/admin/organizations", "", body, tc.headers).expectError(401, "UNAUTHORIZED")
			if res.json["error"] != tc.errName {
				t.Fatalf("%s: error %v, want %s", tc.name, res.json["error"], tc.errName)
			}
			h.unchanged(before, "admin route with a "+tc.name+" key")
		}
		ok := map[string]string{"X-Admin-Key": admin}
		before := h.counts()
		res := h.doHeaders("POST", "/api/v1/admin/organizations", "", map[string]any{"name": "X Org", "slug": "x-org", "plan_tier": "platinum"}, ok).
			expectError(400, "VALIDATION_ERROR").expectField("plan_tier")
		_ = res
		h.doHeaders("POST", "/api/v1/admin/organizations", "", `{"name":"X Org",`, ok).expectError(400, "INVALID_JSON")
		h.unchanged(before, "refused admin creations")

		res = h.doHeaders("POST", "/api/v1/admin/organizations", "", body, ok).expect(201)
		org := res.json["organization"].(map[string]any)
		if org["plan_tier"] != "enterprise" {
			t.Fatalf("plan_tier %v, want enterprise", org["plan_tier"])
		}
		newKey := res.json["api_key"].(map[string]any)["key"].(string)
		got := h.do("GET", "/api/v1/organizations/"+org["id"].(string), newKey, nil).expect(200)
		if got.json["plan_tier"] != "enterprise" {
			t.Fatalf("stored plan_tier %v", got.json["plan_tier"])
		}
		// The public route ignores plan_tier.
		pub := h.do("POST", "/api/v1/organizations", "", map[string]any{"name": "Sneaky Org", "slug": "sneaky", "plan_tier": "enterprise"}).expect(201)
		if tier := pub.json["organization"].(map[string]any)["plan_tier"]; tier != "free" {
			t.Fatalf("public registration got plan_tier %v, want free", tier)
		}
	})
}

// TestRegistrationModes: invite refuses every public registration; closed
// needs the admin key; the admin route works in both.
func TestRegistrationModes(t *testing.T) {
	t.Parallel()
	const admin = "admin-secret-0123456789abcdef"
	org := func(slug string) map[string]any { return map[string]any{"name": "Org " + slug, "slug": slug} }

	t.Run("invite", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, func(c *config.Config) { c.RegistrationMode = "invite"; c.AdminAPIKey = admin })
		for _, hdr := range []map[string]string{nil, {"X-Admin-Key": admin}, {"X-Admin-Key": "wrong"}} {
			before := h.counts()
			h.doHeaders("POST", "/api/v1/organizations", "", org("invited"), hdr).expectError(403, "ACCESS_DENIED")
			h.unchanged(before, "registration in invite mode")
		}
		h.doHeaders("POST", "/api/v1/admin/organizations", "", org("invited"), map[string]string{"X-Admin-Key": admin}).expect(201)
	})

	t.Run("closed", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, func(c *config.Config) { c.RegistrationMode = "closed"; c.AdminAPIKey = admin })
		for _, hdr := range []map[string]string{nil, {"X-Admin-Key": "wrong"}, {"X-Admin-Key": ""}} {
			before := h.counts()
			h.doHeaders("POST", "/api/v1/organizations", "", org("closed-org"), hdr).expectError(403, "ACCESS_DENIED")
			h.unchanged(before, "registration in closed mode")
		}
		h.doHeaders("POST", "/api/v1/organizations", "", org("closed-org"), map[string]string{"X-Admin-Key": admin}).expect(201)
	})

	t.Run("closed without an admin key", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, func(c *config.Config) { c.RegistrationMode = "closed" })
		for _, hdr := range []map[string]string{nil, {"X-Admin-Key": ""}, {"X-Admin-Key": "x"}} {
			before := h.counts()
			h.doHeaders("POST", "/api/v1/organizations", "", org("closed-org"), hdr).expectError(403, "ACCESS_DENIED")
			h.unchanged(before, "registration in closed mode without ADMIN_API_KEY")
		}
	})
}

// TestAPIKeyUpdateQueueScope: PUT /api-keys/{id} checks queues by the rules
// of creation (at most 50, each a queue name or "*"), refuses anything else
// with 400 VALIDATION_ERROR naming queues and leaves the key as it was.
func TestAPIKeyUpdateQueueScope(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, key := h.org("acme")
	id, _ := h.newKey(key, "scoped", nil)
	path := "/api/v1/api-keys/" + id
	before := h.do("GET", path, key, nil).expect(200).json["queues"]

	for _, body := range []string{
		`{"queues":["a b"]}`,
		`{"queues":["ok","bad/name"]}`,
		`{"queues":["` + strings.Repeat("q", 101) + `"]}`,
		`{"queues":["` + strings.Repeat(`q","`, 50) + `q"]}`,
		`{"queues":[""]}`,
	} {
		res := h.refused("PUT", path, key, body, 400, "VALIDATION_ERROR")
		if d, _ := res.json["details"].([]any); len(d) != 1 || d[0].(map[string]any)["field"] != "queues" {
			t.Fatalf("%.60s: details %v, want one naming queues", body, res.json["details"])
		}
	}
	if got := h.do("GET", path, key, nil).expect(200).json["queues"]; fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("queues after the refused updates: %v, want %v", got, before)
	}

	h.do("PUT", path, key, `{"queues":["emails","reports.daily","*"]}`).expect(200)
	if got := h.do("GET", path, key, nil).expect(200).json["queues"]; fmt.Sprint(got) != "[emails reports.daily *]" {
		t.Fatalf("queues after the update: %v", got)
	}
}
