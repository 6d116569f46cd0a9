package main_test

// Server processes for the tests that run the built binary: build it,
// start instances on a test's schema, call their API, stop them.

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
)

// buildServer builds the server binary into the test's temporary directory.
func buildServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "spooled")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// serverProc is one server process.
type serverProc struct {
	name   string
	cmd    *exec.Cmd
	base   string
	exited chan error
	mu     sync.Mutex
	stderr bytes.Buffer // guarded by mu
}

func (p *serverProc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

var listeningRE = regexp.MustCompile(`msg="spooled listening" addr=(\S+)`)

// serverEnv is the environment of a server process: the test's, without
// variables that would change what is tested, plus the defaults every
// process here gets, plus extra (later entries win).
func serverEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "SPOOLED_ENV", "RUST_ENV", "JWT_SECRET", "NATS_URL", "GITHUB_WEBHOOK_SECRET", "STRIPE_WEBHOOK_SECRET",
			"CORS_ALLOWED_ORIGINS", "SPOOLED_DEV_BOOTSTRAP", "JSON_LOGS", "RATE_LIMIT_REQUESTS_PER_SECOND",
			"RATE_LIMIT_BURST_SIZE", "DATABASE_URL", "ADMIN_API_KEY":
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "PORT=0", "METRICS_PORT=0", "HOST=127.0.0.1", "JSON_LOGS=false", "ADMIN_API_KEY="+adminKey)
	return append(env, extra...)
}

// startServer runs the binary with serverEnv(env...) and waits until it listens.
func startServer(t *testing.T, bin, name string, env ...string) *serverProc {
	t.Helper()
	p := &serverProc{name: name, exited: make(chan error, 1)}
	p.cmd = exec.Command(bin, "serve")
	p.cmd.Env = serverEnv(env...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
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
		p.exited <- p.cmd.Wait() // after stderr is drained (StderrPipe's rule)
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

func (p *serverProc) term(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", p.name, err)
	}
}

// waitExit waits for a clean exit after SIGTERM.
func (p *serverProc) waitExit(t *testing.T, limit time.Duration) {
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

// adminKey is the servers' ADMIN_API_KEY.
var adminKey = "test-admin-" + randHex(16)

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// apiClient keeps connections open for many concurrent claimers (the
// default keeps two idle per host, so each request would dial anew), and
// waits longer than the longest claim wait (30 s).
var apiClient = &http.Client{
	Timeout:   40 * time.Second,
	Transport: &http.Transport{MaxIdleConns: 64, MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute},
}

// callAPI sends a JSON request; a transport error is status 0. It is safe
// from any goroutine.
func callAPI(base, key, method, path string, body any) (int, map[string]any) {
	raw, _ := json.Marshal(body)
	req, err := http.NewRequest(method, base+path, bytes.NewReader(raw))
	if err != nil {
		return 0, map[string]any{"error": err.Error()}
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if strings.HasPrefix(path, "/api/v1/admin/") {
		req.Header.Set("X-Admin-Key", adminKey)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := apiClient.Do(req)
	if err != nil {
		return 0, map[string]any{"error": err.Error()}
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil && len(bytes.TrimSpace(data)) > 0 {
		out = map[string]any{"raw": string(data)}
	}
	return resp.StatusCode, out
}
