package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/httpapi"
	"github.com/spooled-go/spooled/internal/clock"
	"github.com/spooled-go/spooled/internal/config"
	"github.com/spooled-go/spooled/internal/testdb"
	"github.com/spooled-go/spooled/projections"
)

// harness is a REST API on a fresh schema, driven in-process.
type harness struct {
	t    *testing.T
	cfg  config.Config
	pool *pgxpool.Pool
	cmd  *commands.Service
	srv  *httpapi.Server
	proj *projections.Projector
}

// catchUp applies every committed event to the asynchronous projections,
// as the server's projector would within its interval.
func (h *harness) catchUp() {
	h.t.Helper()
	// The gap-free read waits for every transaction in the cluster that
	// started before it; parallel packages can hold it back for a while.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := h.proj.Sync(ctx); err != nil {
		h.t.Fatalf("projector: %v", err)
	}
}

func newHarness(t *testing.T, opts ...func(*config.Config)) *harness {
	return newHarnessClock(t, nil, opts...)
}

// newHarnessLimits is newHarness with the request-rate limiters on a
// pinned clock: no bucket refills while a test counts its requests, however
// slowly the machine runs them.
func newHarnessLimits(t *testing.T, opts ...func(*config.Config)) *harness {
	h := newHarness(t, opts...)
	h.srv = httpapi.New(h.cfg, h.cmd, httpapi.Options{LimiterClock: clock.NewPinned(time.Now())})
	return h
}

func newHarnessClock(t *testing.T, clk clock.Clock, opts ...func(*config.Config)) *harness {
	t.Helper()
	cfg := config.Default()
	// Tests act as many clients at once from one process: the per-client
	// limit is off unless a test turns it on; organizations come from the
	// admin route on the enterprise plan (free caps active jobs at 10).
	cfg.RateLimitRequestsPerSecond = 0
	cfg.AdminAPIKey = testAdminKey
	for _, o := range opts {
		o(&cfg)
	}
	pool := testdb.New(t)
	cmd := commands.New(pool, clk, nil, commands.Defaults{
		MaxRetries: cfg.QueueDefaultMaxRetries, TimeoutSecs: cfg.QueueDefaultTimeoutSecs,
		LeaseSecs: cfg.WorkerLeaseDurationSecs, MaxPayload: cfg.MaxPayloadSize,
		KeyPrefix: cfg.KeyPrefix(), Registration: cfg.RegistrationMode,
	})
	proj := projections.NewProjector(pool, []projections.Projection{projections.NewQueueStats()}, projections.ProjectorOptions{})
	return &harness{t: t, cfg: cfg, pool: pool, cmd: cmd, srv: httpapi.New(cfg, cmd, httpapi.Options{}), proj: proj}
}

const testAdminKey = "test-admin-key-0123456789abcdef"

// org creates an enterprise organization through the admin route and
// returns its id and first API key.
func (h *harness) org(slug string) (orgID, key string) {
	h.t.Helper()
	return h.orgOnPlan(slug, "enterprise")
}

// orgOnPlan creates an organization on a plan and returns its id and key.
func (h *harness) orgOnPlan(slug, plan string) (orgID, key string) {
	h.t.Helper()
	res := h.doHeaders("POST", "/api/v1/admin/organizations", "",
		map[string]any{"name": "Org " + slug, "slug": slug, "plan_tier": plan},
		map[string]string{"X-Admin-Key": h.cfg.AdminAPIKey})
	res.expect(201)
	org := res.json["organization"].(map[string]any)
	k := res.json["api_key"].(map[string]any)
	return org["id"].(string), k["key"].(string)
}

type response struct {
	t      *testing.T
	status int
	header http.Header
	raw    []byte
	json   map[string]any
	list   []any
}

func (r response) expect(status int) response {
	r.t.Helper()
	if r.status != status {
		r.t.Fatalf("status %d, want %d; body %s", r.status, status, r.raw)
	}
	return r
}

// expectError checks an error response: status, JSON code, and that the
// body is Spooled's {code, message} shape.
func (r response) expectError(status int, code string) response {
	r.t.Helper()
	r.expect(status)
	if r.json == nil {
		r.t.Fatalf("error body is not a JSON object: %s", r.raw)
	}
	if r.json["code"] != code {
		r.t.Fatalf("code %v, want %s; body %s", r.json["code"], code, r.raw)
	}
	if msg, _ := r.json["message"].(string); msg == "" {
		r.t.Fatalf("error without message: %s", r.raw)
	}
	return r
}

// do sends a request. body may be nil, a string or []byte (sent as is), or
// any value (sent as JSON).
func (h *harness) do(method, path, key string, body any) response {
	h.t.Helper()
	return h.doHeaders(method, path, key, body, nil)
}

func (h *harness) doHeaders(method, path, key string, body any, headers map[string]string) response {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(buf)
	}
	req := httptest.NewRequestWithContext(context.Background(), method, path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := h.srv.App().Test(req, -1)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := response{t: h.t, status: resp.StatusCode, header: resp.Header, raw: raw}
	if len(raw) > 0 {
		if raw[0] == '[' {
			_ = json.Unmarshal(raw, &out.list)
		} else {
			_ = json.Unmarshal(raw, &out.json)
		}
	}
	return out
}
