package app_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/spooled-go/spooled/internal/app"
	"github.com/spooled-go/spooled/internal/clock"
	"github.com/spooled-go/spooled/internal/config"
)

// wkStartApp starts a server instance on the schema behind dbURL: API on a
// free loopback port, no metrics listener, a small pool of its own. mutate
// adjusts the configuration (NATS, poll interval, reaper, ...). The app is
// stopped when the test ends.
func wkStartApp(t *testing.T, dbURL string, clk clock.Clock, mutate func(*config.Config)) *app.App {
	t.Helper()
	a, _ := wkStartAppStoppable(t, dbURL, clk, mutate)
	return a
}

// wkStartAppStoppable is wkStartApp that also returns the app's stop, for
// tests that stop it themselves (it runs once, at the latest when the test
// ends).
func wkStartAppStoppable(t *testing.T, dbURL string, clk clock.Clock, mutate func(*config.Config)) (*app.App, func() error) {
	t.Helper()
	cfg := config.Default()
	cfg.DatabaseURL = dbURL
	cfg.DatabaseMaxConnections = 6
	cfg.Host = "127.0.0.1"
	cfg.Port = 0
	cfg.MetricsPort = 0
	cfg.WorkerFallbackPollInterval = 30 * time.Second
	cfg.AdminAPIKey = wkAdminKey
	if mutate != nil {
		mutate(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := app.New(ctx, cfg, slog.New(slog.DiscardHandler), app.Options{Clock: clk})
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	if err := a.Start(context.Background()); err != nil {
		_ = a.Stop(context.Background(), true)
		t.Fatalf("app.Start: %v", err)
	}
	var once sync.Once
	var stopErr error
	stop := func() error {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			stopErr = a.Stop(ctx, true)
		})
		return stopErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("app.Stop: %v", err)
		}
	})
	return a, stop
}

// wkAPI is a REST client of one server instance, authenticated as one
// organization.
type wkAPI struct {
	base  string
	key   string
	admin string // X-Admin-Key, when set
	hc    *http.Client
}

// wkAdminKey is the ADMIN_API_KEY of the test servers.
var wkAdminKey = "wk-admin-" + wkRandHex(16)

func wkNewAPI(t *testing.T, a *app.App, key string) *wkAPI {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &wkAPI{base: "http://" + a.Addr(), key: key, hc: &http.Client{Transport: tr, Timeout: 40 * time.Second}}
}

// as is the same server seen with another key.
func (c *wkAPI) as(key string) *wkAPI { return &wkAPI{base: c.base, key: key, hc: c.hc} }

// call sends a JSON request. body may be a []byte (sent as is) or any value
// (marshalled). It returns the status and the raw response body.
func (c *wkAPI) call(method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	if c.admin != "" {
		req.Header.Set("X-Admin-Key", c.admin)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

// must is call for the test goroutine: it fails the test unless the status
// is want, and decodes the body into a map.
func (c *wkAPI) must(t *testing.T, want int, method, path string, body any) map[string]any {
	t.Helper()
	st, raw, err := c.call(method, path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if st != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, st, want, raw)
	}
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: decode %q: %v", method, path, raw, err)
		}
	}
	return out
}

// wkNewOrg registers an organization and returns a client holding its key.
// It is created by the admin on the enterprise plan, so that plan quotas
// and rate limits stay out of the way of timing tests.
func wkNewOrg(t *testing.T, c *wkAPI) *wkAPI {
	t.Helper()
	slug := "org-" + wkRandHex(6)
	admin := &wkAPI{base: c.base, admin: wkAdminKey, hc: c.hc}
	out := admin.must(t, 201, "POST", "/api/v1/admin/organizations",
		map[string]any{"name": "Wake " + slug, "slug": slug, "plan_tier": "enterprise"})
	key, _ := out["api_key"].(map[string]any)["key"].(string)
	if key == "" {
		t.Fatalf("no api_key.key in %v", out)
	}
	return c.as(key)
}

// enqueue creates a job and returns its id; extra fields are merged in.
func (c *wkAPI) enqueue(t *testing.T, queue string, extra map[string]any) string {
	t.Helper()
	id, err := c.tryEnqueue(queue, extra)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// tryEnqueue is enqueue for goroutines and timers: it reports instead of
// failing the test.
func (c *wkAPI) tryEnqueue(queue string, extra map[string]any) (string, error) {
	body := map[string]any{"queue_name": queue, "payload": map[string]any{"n": wkRandHex(4)}}
	for k, v := range extra {
		body[k] = v
	}
	st, raw, err := c.call("POST", "/api/v1/jobs", body)
	if err != nil {
		return "", fmt.Errorf("enqueue on %s: %w", queue, err)
	}
	var out struct {
		ID string `json:"id"`
	}
	if st != 201 || json.Unmarshal(raw, &out) != nil || out.ID == "" {
		return "", fmt.Errorf("enqueue on %s: %d %s", queue, st, raw)
	}
	return out.ID, nil
}

type wkJob struct {
	ID             string `json:"id"`
	QueueName      string `json:"queue_name"`
	LeaseID        string `json:"lease_id"`
	LeaseExpiresAt string `json:"lease_expires_at"`
}

// wkClaimResult is the outcome of one claim request and when it returned.
type wkClaimResult struct {
	status   int
	body     []byte
	jobs     []wkJob
	err      error
	started  time.Time
	returned time.Time
}

func (r wkClaimResult) ids() []string {
	out := make([]string, len(r.jobs))
	for i, j := range r.jobs {
		out[i] = j.ID
	}
	return out
}

// claim posts a (possibly waiting) claim. It never fails the test, so it
// can run on its own goroutine.
func (c *wkAPI) claim(queue, worker string, waitMS, limit int) wkClaimResult {
	body := map[string]any{"queue_name": queue, "worker_id": worker, "wait_ms": waitMS}
	if limit > 0 {
		body["limit"] = limit
	}
	r := wkClaimResult{started: time.Now()}
	r.status, r.body, r.err = c.call("POST", "/api/v1/jobs/claim", body)
	r.returned = time.Now()
	if r.err == nil && r.status == 200 {
		var out struct {
			Jobs []wkJob `json:"jobs"`
		}
		r.err = json.Unmarshal(r.body, &out)
		r.jobs = out.Jobs
	} else if r.err == nil {
		r.err = fmt.Errorf("claim on %s: status %d: %s", queue, r.status, r.body)
	}
	return r
}

// goClaim runs claim on its own goroutine.
func (c *wkAPI) goClaim(queue, worker string, waitMS, limit int) <-chan wkClaimResult {
	ch := make(chan wkClaimResult, 1)
	go func() { ch <- c.claim(queue, worker, waitMS, limit) }()
	return ch
}

// wkAwaitClaim waits for a claim started with goClaim, failing the test
// after limit.
func wkAwaitClaim(t *testing.T, ch <-chan wkClaimResult, limit time.Duration) wkClaimResult {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("claim: %v", r.err)
		}
		return r
	case <-time.After(limit):
		t.Fatalf("claim did not return within %s", limit)
		return wkClaimResult{}
	}
}

// health reads GET /health.
func (c *wkAPI) health(t *testing.T) (status string, cache bool) {
	t.Helper()
	out := c.must(t, 200, "GET", "/health", nil)
	status, _ = out["status"].(string)
	cache, _ = out["cache"].(bool)
	return status, cache
}

// wkEventually polls cond every 10 ms until it holds, failing the test after
// limit. It returns how long it took.
func wkEventually(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("%s: not within %s", what, limit)
		case <-tick.C:
		}
	}
	return time.Since(start)
}

// wkQueue is a queue name no other run uses; it contains '.' so the
// subject escaping is always exercised.
func wkQueue(prefix string) string { return prefix + ".v1." + wkRandHex(6) }

func wkRandHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func wkMS(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }
