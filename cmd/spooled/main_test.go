package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/spooled-go/spooled/internal/testdb"
)

// TestServeDevBootstrap runs the real binary the way `make run` does and
// follows the printed instructions: the key works, and a job created,
// claimed and completed shows those three events in its history.
func TestServeDevBootstrap(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "spooled")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	_, dbURL := testdb.NewWithURL(t, testdb.Options{})

	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "PORT=0", "METRICS_PORT=0", "HOST=127.0.0.1", "SPOOLED_DEV_BOOTSTRAP=true")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	baseRE := regexp.MustCompile(`running at (http://\S+) `)
	keyRE := regexp.MustCompile(`SPOOLED_API_KEY=(sk_test_\S+)`)
	var base, key string
	found := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if m := baseRE.FindStringSubmatch(line); m != nil {
				base = m[1]
			}
			if m := keyRE.FindStringSubmatch(line); m != nil {
				key = m[1]
				close(found)
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case <-found:
	case err := <-exited:
		t.Fatalf("server exited before printing a key: %v\n%s", err, stderr.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("no key printed within 60s\n%s", stderr.String())
	}
	if base == "" {
		t.Fatal("no base URL printed")
	}

	call := func(method, path string, body any) (int, map[string]any) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequestWithContext(context.Background(), method, base+path, rd)
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}

	st, created := call("POST", "/api/v1/jobs", map[string]any{"queue_name": "emails", "payload": map[string]any{"to": "a@example.com"}})
	if st != 201 {
		t.Fatalf("create: %d %v", st, created)
	}
	id := created["id"].(string)
	st, claimed := call("POST", "/api/v1/jobs/claim", map[string]any{"queue_name": "emails", "worker_id": "worker-1"})
	jobs, _ := claimed["jobs"].([]any)
	if st != 200 || len(jobs) != 1 || jobs[0].(map[string]any)["id"] != id {
		t.Fatalf("claim: %d %v", st, claimed)
	}
	if st, body := call("POST", "/api/v1/jobs/"+id+"/complete", map[string]any{"worker_id": "worker-1", "result": map[string]any{"sent": true}}); st != 200 {
		t.Fatalf("complete: %d %v", st, body)
	}
	st, hist := call("GET", "/api/v1/jobs/"+id+"/history", nil)
	evs, _ := hist["events"].([]any)
	if st != 200 || len(evs) != 3 {
		t.Fatalf("history: %d %v", st, hist)
	}
	for i, want := range []string{"job.enqueued", "job.claimed", "job.completed"} {
		if got := evs[i].(map[string]any)["type"]; got != want {
			t.Fatalf("event %d = %v, want %s", i, got, want)
		}
	}

	// The bootstrap's plan change is in the audit log, with its actor. The
	// log shows an event once every transaction older than it has ended
	// (gap-free reads), and other tests' transactions share the cluster, so
	// the read is retried until a deadline.
	var audit map[string]any
	for deadline := time.Now().Add(15 * time.Second); ; {
		st, audit = call("GET", "/api/v1/audit?type=organization.plan_changed", nil)
		evs, _ = audit["events"].([]any)
		if st != 200 || len(evs) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st != 200 || len(evs) != 1 || evs[0].(map[string]any)["actor"] != "system:dev_bootstrap" {
		t.Fatalf("audit of the plan change: %d %v", st, audit)
	}

	// SIGTERM drains and exits cleanly.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("server did not exit within 30s of SIGTERM")
	}
}
