package main_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spooled-go/spooled/internal/testdb"
)

// sharedNATS is the local NATS server every test package may use; each run
// uses its own organization and queue names, so runs never mix.
const sharedNATS = "nats://127.0.0.1:4222"

// TestCrossInstanceWakeUp runs two server processes on one schema and the
// shared NATS, with the fallback poll at 30 s: a claim waiting on one
// instance returns within 1 s of an enqueue made on the other, in both
// directions. Both processes then stop on SIGTERM, promptly, even with a
// claim still waiting.
func TestCrossInstanceWakeUp(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "spooled")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	_, dbURL := testdb.NewWithURL(t, testdb.Options{})

	a := xiStart(t, bin, "a", dbURL)
	b := xiStart(t, bin, "b", dbURL)

	// Created by the admin on the enterprise plan: plan quotas are not what
	// this test is about.
	slug := "xi-" + xiRandHex(6)
	st, out := xiCall(a.base, "", "POST", "/api/v1/admin/organizations",
		map[string]any{"name": "Cross " + slug, "slug": slug, "plan_tier": "enterprise"})
	apiKey, _ := out["api_key"].(map[string]any)
	key, _ := apiKey["key"].(string)
	if st != 201 || key == "" {
		t.Fatalf("create organization on a: %d %v", st, out)
	}

	// waitThenEnqueue claims on one instance and enqueues on the other 200
	// ms later.
	waitThenEnqueue := func(claimOn, enqueueOn *xiProc, queue string) {
		t.Helper()
		type result struct {
			st       int
			body     map[string]any
			returned time.Time
		}
		claimed := make(chan result, 1)
		go func() {
			st, body := xiCall(claimOn.base, key, "POST", "/api/v1/jobs/claim",
				map[string]any{"queue_name": queue, "worker_id": "worker-" + claimOn.name, "wait_ms": 10000})
			claimed <- result{st, body, time.Now()}
		}()
		type enq struct {
			id           string
			st           int
			sent, answer time.Time
		}
		enqueued := make(chan enq, 1)
		time.AfterFunc(200*time.Millisecond, func() {
			e := enq{sent: time.Now()}
			st, body := xiCall(enqueueOn.base, key, "POST", "/api/v1/jobs", map[string]any{"queue_name": queue, "payload": map[string]any{"x": 1}})
			e.st, e.answer = st, time.Now()
			e.id, _ = body["id"].(string)
			enqueued <- e
		})
		var r result
		select {
		case r = <-claimed:
		case <-time.After(12 * time.Second):
			t.Fatalf("claim on %s did not return", claimOn.name)
		}
		e := <-enqueued
		if e.st != 201 || e.id == "" {
			t.Fatalf("enqueue on %s: %d", enqueueOn.name, e.st)
		}
		jobs, _ := r.body["jobs"].([]any)
		if r.st != 200 || len(jobs) != 1 || jobs[0].(map[string]any)["id"] != e.id {
			t.Fatalf("claim on %s: %d %v, want job %s", claimOn.name, r.st, r.body, e.id)
		}
		latency := r.returned.Sub(e.sent)
		t.Logf("claim waiting on %s returned the job enqueued on %s %s after the enqueue was sent (%s after its 201)",
			claimOn.name, enqueueOn.name, latency.Round(100*time.Microsecond), r.returned.Sub(e.answer).Round(100*time.Microsecond))
		if latency > time.Second {
			t.Fatalf("claim on %s returned %s after the enqueue on %s; want within 1s (the fallback poll is 30s)", claimOn.name, latency, enqueueOn.name)
		}
	}
	queue := "xi.orders." + xiRandHex(6)
	waitThenEnqueue(a, b, queue)
	waitThenEnqueue(b, a, queue)

	// SIGTERM with a claim waiting (up to 30 s) on a: the drain must not
	// wait for it to run out.
	claimed := make(chan int, 1)
	go func() {
		st, _ := xiCall(a.base, key, "POST", "/api/v1/jobs/claim",
			map[string]any{"queue_name": queue + ".idle", "worker_id": "worker-idle", "wait_ms": 30000})
		claimed <- st
	}()
	select {
	case st := <-claimed:
		t.Fatalf("claim on an empty queue returned at once (%d), want it waiting", st)
	case <-time.After(500 * time.Millisecond):
	}
	termed := time.Now()
	a.term(t)
	b.term(t)
	a.waitExit(t, 10*time.Second)
	b.waitExit(t, 10*time.Second)
	t.Logf("both processes exited %s after SIGTERM", time.Since(termed).Round(time.Millisecond))
	select {
	case st := <-claimed:
		if st != 200 && st != 0 {
			t.Fatalf("the claim waiting at shutdown answered %d", st)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the claim waiting at shutdown never returned")
	}
}

// xiProc is one server process.
type xiProc struct {
	name   string
	cmd    *exec.Cmd
	base   string
	exited chan error
	mu     sync.Mutex
	stderr bytes.Buffer // guarded by mu
}

func (p *xiProc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

var listeningRE = regexp.MustCompile(`msg="spooled listening" addr=(\S+)`)

// xiStart runs the binary and waits until it listens.
func xiStart(t *testing.T, bin, name, dbURL string) *xiProc {
	t.Helper()
	p := &xiProc{name: name, exited: make(chan error, 1)}
	p.cmd = exec.Command(bin, "serve")
	p.cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "PORT=0", "METRICS_PORT=0", "HOST=127.0.0.1",
		"NATS_URL="+sharedNATS, "WORKER_FALLBACK_POLL_INTERVAL_SECS=30", "DATABASE_MAX_CONNECTIONS=5",
		"SPOOLED_DEV_BOOTSTRAP=false", "JSON_LOGS=false", "ADMIN_API_KEY="+xiAdminKey)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait is called only after stderr is drained (StderrPipe's rule).
	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.stderr.WriteString(line + "\n")
			p.mu.Unlock()
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				select {
				case listening <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		p.exited <- p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	select {
	case addr := <-listening:
		p.base = "http://" + addr
	case err := <-p.exited:
		t.Fatalf("%s exited before listening: %v\n%s", name, err, p.logs())
	case <-time.After(60 * time.Second):
		t.Fatalf("%s not listening within 60s\n%s", name, p.logs())
	}
	return p
}

func (p *xiProc) term(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", p.name, err)
	}
}

func (p *xiProc) waitExit(t *testing.T, limit time.Duration) {
	t.Helper()
	select {
	case err, ok := <-p.exited:
		if ok && err != nil {
			t.Fatalf("%s exited with %v after SIGTERM\n%s", p.name, err, p.logs())
		}
	case <-time.After(limit):
		t.Fatalf("%s did not exit within %s of SIGTERM\n%s", p.name, limit, p.logs())
	}
}

var xiClient = &http.Client{Timeout: 40 * time.Second}

// xiAdminKey is the servers' ADMIN_API_KEY.
var xiAdminKey = "xi-admin-" + xiRandHex(16)

// xiCall sends a JSON request; a transport error is status 0.
func xiCall(base, key, method, path string, body any) (int, map[string]any) {
	raw, _ := json.Marshal(body)
	req, err := http.NewRequest(method, base+path, bytes.NewReader(raw))
	if err != nil {
		return 0, map[string]any{"error": err.Error()}
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if strings.HasPrefix(path, "/api/v1/admin/") {
		req.Header.Set("X-Admin-Key", xiAdminKey)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := xiClient.Do(req)
	if err != nil {
		return 0, map[string]any{"error": err.Error()}
	}
	defer resp.Body.Close()
	var out map[string]any
	data, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(data, &out); err != nil && len(strings.TrimSpace(string(data))) > 0 {
		out = map[string]any{"raw": string(data)}
	}
	return resp.StatusCode, out
}

func xiRandHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
