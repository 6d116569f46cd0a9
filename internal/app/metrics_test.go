package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spooled-go/spooled/internal/app"
	"github.com/spooled-go/spooled/internal/config"
	"github.com/spooled-go/spooled/internal/pgdb"
	"github.com/spooled-go/spooled/internal/testdb"
)

// mxSample is one line of the Prometheus text format.
type mxSample struct {
	name   string
	labels map[string]string
	value  float64
}

// mxScrape is a parsed exposition.
type mxScrape []mxSample

var mxSampleRE = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$`)
var mxLabelRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

func mxParse(t *testing.T, body []byte) mxScrape {
	t.Helper()
	var out mxScrape
	seen := map[string]bool{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// One series per name and label set, or scrapers reject the page.
		series := line[:strings.LastIndexByte(line, ' ')]
		if seen[series] {
			t.Fatalf("series %s appears twice", series)
		}
		seen[series] = true
		m := mxSampleRE.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("not a Prometheus sample line: %q", line)
		}
		s := mxSample{name: m[1], labels: map[string]string{}}
		if m[2] != "" {
			rest := m[2]
			for _, lm := range mxLabelRE.FindAllStringSubmatch(rest, -1) {
				v := strings.NewReplacer(`\\`, `\`, `\"`, `"`, `\n`, "\n").Replace(lm[2])
				s.labels[lm[1]] = v
				rest = strings.Replace(rest, lm[0], "", 1)
			}
			if strings.Trim(rest, ",") != "" {
				t.Fatalf("unparsed labels %q in %q", rest, line)
			}
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("value of %q: %v", line, err)
		}
		s.value = v
		out = append(out, s)
	}
	return out
}

// find returns the samples of name whose labels include want.
func (sc mxScrape) find(name string, want map[string]string) []mxSample {
	var out []mxSample
	for _, s := range sc {
		if s.name != name {
			continue
		}
		ok := true
		for k, v := range want {
			if s.labels[k] != v {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, s)
		}
	}
	return out
}

// value is the one sample of name with exactly the labels given.
func (sc mxScrape) value(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	var found []mxSample
	for _, s := range sc.find(name, labels) {
		if len(s.labels) == len(labels) {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s%v: %d samples, want exactly 1 (all of %s: %v)", name, labels, len(found), name, sc.find(name, nil))
	}
	return found[0].value
}

// expect checks one sample's value.
func (sc mxScrape) expect(t *testing.T, name string, labels map[string]string, want float64) {
	t.Helper()
	if got := sc.value(t, name, labels); got != want {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

// sum adds every sample of name.
func (sc mxScrape) sum(name string) float64 {
	total := 0.0
	for _, s := range sc.find(name, nil) {
		total += s.value
	}
	return total
}

type mxClient struct {
	t    *testing.T
	base string
	key  string
}

func (c mxClient) do(method, path string, body any, wantStatus int) map[string]any {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		buf, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(buf)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		c.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, resp.StatusCode, wantStatus, raw)
	}
	var out map[string]any
	if len(raw) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &out); err != nil {
			c.t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return out
}

func (c mxClient) enqueue(queue string, extra map[string]any) string {
	c.t.Helper()
	body := map[string]any{"queue_name": queue, "payload": map[string]any{"n": 1}}
	for k, v := range extra {
		body[k] = v
	}
	return c.do("POST", "/api/v1/jobs", body, 201)["id"].(string)
}

type mxLeased struct{ id, lease string }

func (c mxClient) claim(queue, worker string, limit int) []mxLeased {
	c.t.Helper()
	res := c.do("POST", "/api/v1/jobs/claim", map[string]any{"queue_name": queue, "worker_id": worker, "limit": limit}, 200)
	var out []mxLeased
	for _, j := range res["jobs"].([]any) {
		m := j.(map[string]any)
		out = append(out, mxLeased{m["id"].(string), m["lease_id"].(string)})
	}
	return out
}

func mxGet(t *testing.T, url string, header map[string]string) (int, http.Header, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, raw
}

func mxFreePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

var mxUUIDRE = regexp.MustCompile(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)

// TestMetrics drives a real server through its API and checks that both
// /metrics endpoints report what happened: counters and histograms per
// queue, gauges read from the database, request timings labelled by
// declared route, and no unbounded label values.
func TestMetrics(t *testing.T) {
	pool, url := testdb.NewWithURL(t, testdb.Options{})
	cfg := config.Default()
	cfg.Host, cfg.Port = "127.0.0.1", 0
	cfg.MetricsPort = mxFreePort(t)
	cfg.MetricsToken = "scrape-secret"
	ctx := context.Background()
	jobPool, err := pgdb.Open(ctx, url, 2, "spooled-jobs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(jobPool.Close)
	a, err := app.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), app.Options{Pool: pool, JobPool: jobPool})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := a.Stop(ctx, false); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	base := "http://" + a.Addr()

	c := mxClient{t: t, base: base}
	org := c.do("POST", "/api/v1/organizations", map[string]any{"name": "Scraped", "slug": "scraped"}, 201)
	c.key = org["api_key"].(map[string]any)["key"].(string)
	// The public route gives the free plan (5 requests/s); this test makes
	// more, so the organization moves to enterprise before its key is used.
	if _, err := pool.Exec(ctx, "UPDATE organizations SET plan_tier = 'enterprise' WHERE id = $1",
		org["organization"].(map[string]any)["id"]); err != nil {
		t.Fatal(err)
	}

	// alpha: 5 enqueued, 3 claimed, 2 completed -> 2 pending, 1 processing.
	// beta: 4 enqueued (one without retries, first in line), 2 claimed, the
	// one without retries failed to the DLQ -> 2 pending, 1 processing.
	var jobIDs []string
	for range 5 {
		jobIDs = append(jobIDs, c.enqueue("alpha", nil))
	}
	doomed := c.enqueue("beta", map[string]any{"max_retries": 0, "priority": 10})
	jobIDs = append(jobIDs, doomed)
	for range 3 {
		jobIDs = append(jobIDs, c.enqueue("beta", nil))
	}
	alpha := c.claim("alpha", "w-alpha", 3)
	if len(alpha) != 3 {
		t.Fatalf("claimed %d alpha jobs, want 3", len(alpha))
	}
	for _, j := range alpha[:2] {
		c.do("POST", "/api/v1/jobs/"+j.id+"/complete", map[string]any{"worker_id": "w-alpha", "lease_id": j.lease}, 200)
	}
	beta := c.claim("beta", "w-beta", 2)
	if len(beta) != 2 || beta[0].id != doomed {
		t.Fatalf("beta claim %v, want the job without retries first", beta)
	}
	fail := c.do("POST", "/api/v1/jobs/"+doomed+"/fail", map[string]any{"worker_id": "w-beta", "lease_id": beta[0].lease, "error": "boom"}, 200)
	if fail["will_retry"] != false {
		t.Fatalf("fail answered %v, want no retry", fail)
	}
	// gamma holds nothing: its claim is answered by the probe alone.
	if got := c.claim("gamma", "w-gamma", 1); len(got) != 0 {
		t.Fatalf("claimed %v from an empty queue", got)
	}
	c.do("POST", "/api/v1/workers/register", map[string]any{"queue_name": "alpha", "hostname": "metrics-host"}, 201)
	// Requests whose paths carry ids that must not become labels.
	c.do("GET", "/api/v1/jobs/"+jobIDs[0], nil, 200)
	c.do("GET", "/api/v1/jobs/"+jobIDs[0]+"/history", nil, 200)
	c.do("GET", "/no/such/route/"+jobIDs[1], nil, 404)
	c.do("POST", "/api/v1/jobs/"+jobIDs[2]+"/nonsense", map[string]any{}, 404)

	// The API port serves /metrics without credentials.
	status, hdr, body := mxGet(t, base+"/metrics", nil)
	if status != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics on the API port: %d %s", status, hdr.Get("Content-Type"))
	}
	api := mxParse(t, body)

	// The metrics listener wants the token.
	mbase := "http://" + a.MetricsAddr()
	for _, h := range []map[string]string{nil, {"Authorization": "Bearer wrong"}, {"Authorization": "scrape-secret"}} {
		status, hdr, body := mxGet(t, mbase+"/metrics", h)
		var e map[string]any
		if status != 401 || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") ||
			json.Unmarshal(body, &e) != nil || e["code"] != "UNAUTHORIZED" || e["message"] == "" {
			t.Fatalf("metrics listener with %v: %d %s %s; want 401 JSON", h, status, hdr.Get("Content-Type"), body)
		}
		if bytes.Contains(body, []byte("spooled_")) {
			t.Fatalf("401 leaked metrics: %s", body)
		}
	}
	status, _, body = mxGet(t, mbase+"/metrics", map[string]string{"Authorization": "Bearer scrape-secret"})
	if status != 200 {
		t.Fatalf("metrics listener with the token: %d %s", status, body)
	}
	listener := mxParse(t, body)
	if status, _, body := mxGet(t, mbase+"/health", nil); status != 200 || string(body) != "OK" {
		t.Fatalf("metrics listener /health: %d %q", status, body)
	}

	for name, sc := range map[string]mxScrape{"API port": api, "metrics listener": listener} {
		t.Run(name, func(t *testing.T) {
			q := func(name string) map[string]string { return map[string]string{"queue": name} }
			sc.expect(t, "spooled_jobs_enqueued_total", q("alpha"), 5)
			sc.expect(t, "spooled_jobs_enqueued_total", q("beta"), 4)
			sc.expect(t, "spooled_jobs_claimed_total", q("alpha"), 3)
			sc.expect(t, "spooled_jobs_claimed_total", q("beta"), 2)
			// Each claim probed its queue; alpha's and beta's found jobs
			// and ran one claim statement each, gamma's ran none.
			qo := func(name, outcome string) map[string]string {
				return map[string]string{"queue": name, "outcome": outcome}
			}
			sc.expect(t, "spooled_claim_probes_total", qo("alpha", "ready"), 1)
			sc.expect(t, "spooled_claim_probes_total", qo("beta", "ready"), 1)
			sc.expect(t, "spooled_claim_probes_total", qo("gamma", "empty"), 1)
			sc.expect(t, "spooled_claim_statements_total", qo("alpha", "leased"), 1)
			sc.expect(t, "spooled_claim_statements_total", qo("beta", "leased"), 1)
			if s := sc.find("spooled_claim_statements_total", q("gamma")); len(s) != 0 {
				t.Errorf("claim statements for the empty queue: %v, want none", s)
			}
			if n := sc.sum("spooled_claim_statements_total"); n != 2 {
				t.Errorf("%v claim statements in all, want 2", n)
			}
			sc.expect(t, "spooled_jobs_completed_total", q("alpha"), 2)
			// One client in turn: every single enqueue and complete had its
			// group-commit statement to itself.
			kind := func(k string) map[string]string { return map[string]string{"kind": k} }
			sc.expect(t, "spooled_group_commit_requests_count", kind("enqueue"), 9)
			sc.expect(t, "spooled_group_commit_requests_sum", kind("enqueue"), 9)
			sc.expect(t, "spooled_group_commit_requests_count", kind("complete"), 2)
			sc.expect(t, "spooled_group_commit_requests_sum", kind("complete"), 2)
			if s := sc.find("spooled_jobs_completed_total", q("beta")); len(s) > 0 && s[0].value != 0 {
				t.Errorf("beta completions %v, want none", s[0].value)
			}
			sc.expect(t, "spooled_jobs_failed_total", q("beta"), 1)
			if n := sc.sum("spooled_jobs_failed_total"); n != 1 {
				t.Errorf("failed total %v, want 1", n)
			}
			sc.expect(t, "spooled_jobs_deadlettered_total", q("beta"), 1)
			if n := sc.sum("spooled_jobs_deadlettered_total"); n != 1 {
				t.Errorf("dead-lettered total %v, want 1", n)
			}
			sc.expect(t, "spooled_job_wait_seconds_count", q("alpha"), 3)
			sc.expect(t, "spooled_job_wait_seconds_count", q("beta"), 2)
			sc.expect(t, "spooled_job_run_seconds_count", q("alpha"), 2)
			if n := sc.sum("spooled_job_run_seconds_count"); n != 2 {
				t.Errorf("run-time observations %v, want 2", n)
			}
			if inf := sc.value(t, "spooled_job_wait_seconds_bucket", map[string]string{"queue": "alpha", "le": "+Inf"}); inf != 3 {
				t.Errorf("wait +Inf bucket %v, want 3", inf)
			}
			if s := sc.value(t, "spooled_job_wait_seconds_sum", q("alpha")); s < 0 {
				t.Errorf("negative wait sum %v", s)
			}

			sc.expect(t, "spooled_jobs_pending", q("alpha"), 2)
			sc.expect(t, "spooled_jobs_pending", q("beta"), 2)
			sc.expect(t, "spooled_jobs_processing", q("alpha"), 1)
			sc.expect(t, "spooled_jobs_processing", q("beta"), 1)
			for _, queue := range []string{"alpha", "beta"} {
				if age := sc.value(t, "spooled_job_max_age_seconds", q(queue)); age < 0 || age > 600 {
					t.Errorf("max age of %s = %v, want a small non-negative number", queue, age)
				}
			}
			sc.expect(t, "spooled_workers_healthy", nil, 1)
			sc.expect(t, "spooled_workers", map[string]string{"status": "healthy"}, 1)
			if n := sc.sum("spooled_workers"); n != 1 {
				t.Errorf("workers by status sum to %v, want 1", n)
			}
			if active := sc.value(t, "spooled_database_connections_active", nil); active < 0 {
				t.Errorf("connections active %v", active)
			}
			// The job path ran on its own pool: its connections are
			// counted, and in the totals.
			if active := sc.value(t, "spooled_database_job_connections_active", nil); active < 0 || active > 2 {
				t.Errorf("job connections active %v, want 0 to 2", active)
			}
			jobOpen := jobPool.Stat().TotalConns()
			if jobOpen == 0 {
				t.Error("the job pool opened no connection: the job path did not use it")
			}
			if open := sc.value(t, "spooled_database_connections_total", nil); open < float64(jobOpen)+1 {
				t.Errorf("connections open %v, want the job pool's %d and the main pool's", open, jobOpen)
			}
			if waits := sc.value(t, "spooled_database_job_connection_waits_total", nil); waits < 1 {
				t.Errorf("job connection waits %v: the job pool's first connects count", waits)
			}
			sc.expect(t, "spooled_nats_connected", nil, 1)

			req := "spooled_api_request_duration_seconds_count"
			for _, c := range []struct {
				method, route, status string
				n                     float64
			}{
				{"POST", "/api/v1/organizations", "201", 1},
				{"POST", "/api/v1/jobs", "201", 9},
				{"POST", "/api/v1/jobs/claim", "200", 3},
				{"POST", "/api/v1/jobs/:id/complete", "200", 2},
				{"POST", "/api/v1/jobs/:id/fail", "200", 1},
				{"POST", "/api/v1/workers/register", "201", 1},
				{"GET", "/api/v1/jobs/:id", "200", 1},
				{"GET", "/api/v1/jobs/:id/history", "200", 1},
			} {
				sc.expect(t, req, map[string]string{"method": c.method, "route": c.route, "status": c.status}, c.n)
			}

			// Labels stay bounded: no id of any kind, only declared routes.
			routes := map[string]bool{}
			for _, s := range sc {
				for k, v := range s.labels {
					if mxUUIDRE.MatchString(v) {
						t.Errorf("%s has label %s=%q carrying an id", s.name, k, v)
					}
					for _, id := range jobIDs {
						if strings.Contains(v, id) {
							t.Errorf("%s has label %s=%q carrying job id %s", s.name, k, v, id)
						}
					}
				}
				if s.name == req {
					routes[s.labels["route"]] = true
					if m := s.labels["method"]; !slices.Contains([]string{"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"}, m) {
						t.Errorf("method label %q", m)
					}
					if st, err := strconv.Atoi(s.labels["status"]); err != nil || st < 100 || st > 599 {
						t.Errorf("status label %q", s.labels["status"])
					}
				}
				if q, ok := s.labels["queue"]; ok && q != "alpha" && q != "beta" && q != "gamma" {
					t.Errorf("%s has queue label %q", s.name, q)
				}
			}
			for r := range routes {
				if r != "unmatched" && !strings.HasPrefix(r, "/") {
					t.Errorf("route label %q is not a declared pattern", r)
				}
			}
			if !routes["unmatched"] {
				t.Errorf("an unknown path was not labelled unmatched: routes %v", slices.Sorted(maps.Keys(routes)))
			}
		})
	}
}
