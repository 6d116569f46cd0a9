package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spooled-go/spooled/internal/config"
	"github.com/spooled-go/spooled/internal/testdb"
)

// sseMsg is one Server-Sent Event of a realtime stream.
type sseMsg struct {
	Event string
	Data  struct {
		Type      string         `json:"type"`
		Timestamp string         `json:"timestamp"`
		Data      map[string]any `json:"data"`
	}
}

// sseClient fails a stream whose headers do not come at once: an SSE
// client learns it is connected from them, so a server that held them
// until its first event would leave a quiet stream looking dead.
var sseClient = &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: 5 * time.Second}}

// openSSE opens a realtime stream with the SDK's X-API-Key header and
// delivers its events on a channel, closed when the stream ends.
func openSSE(t *testing.T, url, key string) <-chan sseMsg {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("X-API-Key", key)
	resp, err := sseClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("%s: %d %s", url, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	out := make(chan sseMsg, 64)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var m sseMsg
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				m.Event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				_ = json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &m.Data)
			case line == "" && m.Event != "":
				out <- m
				m = sseMsg{}
			}
		}
	}()
	return out
}

// next waits for the next message of a given type, skipping others.
func next(t *testing.T, ch <-chan sseMsg, typ string) sseMsg {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case m, ok := <-ch:
			if !ok {
				t.Fatalf("stream ended waiting for %s", typ)
			}
			if m.Event == typ {
				if m.Data.Type != typ || m.Data.Timestamp == "" {
					t.Fatalf("message %+v: want type %s and a timestamp in the body", m, typ)
				}
				return m
			}
		case <-deadline:
			t.Fatalf("no %s within 15s", typ)
		}
	}
}

// TestRealtimeSSE drives Spooled's realtime routes with the SDK's header:
// /events streams the organization's job events by dotted name,
// /events/jobs/{id} follows one job until it finishes, /events/queues/{name}
// sends queue.stats as the queue changes.
func TestRealtimeSSE(t *testing.T) {
	_, dbURL := testdb.NewWithURL(t, testdb.Options{})
	a := wkStartApp(t, dbURL, nil, func(c *config.Config) { c.WorkerFallbackPollInterval = 5 * time.Second })
	api := wkNewOrg(t, wkNewAPI(t, a, ""))
	other := wkNewOrg(t, api)
	base := "http://" + a.Addr() + "/api/v1"
	queue := wkQueue("rt")

	all := openSSE(t, base+"/events?events=job.created,job.completed,job.status", api.key)
	stats := openSSE(t, base+"/events/queues/"+queue, api.key)
	if m := next(t, stats, "queue.stats"); m.Data.Data["queue_name"] != queue {
		t.Fatalf("first queue.stats %+v", m)
	}

	other.enqueue(t, queue, nil) // another organization's: never shown
	id := api.enqueue(t, queue, nil)
	if m := next(t, all, "job.created"); m.Data.Data["job_id"] != id || m.Data.Data["queue_name"] != queue {
		t.Fatalf("job.created %+v, want job %s", m, id)
	}
	if m := next(t, stats, "queue.stats"); m.Data.Data["pending"] != float64(1) {
		t.Fatalf("queue.stats after enqueue %+v", m)
	}

	job := openSSE(t, base+"/events/jobs/"+id, api.key)
	if m := next(t, job, "job.status"); m.Data.Data["new_status"] != "pending" || m.Data.Data["old_status"] != "" {
		t.Fatalf("first job.status %+v", m)
	}
	claimed := api.claim(queue, "w1", 0, 1)
	if claimed.err != nil || len(claimed.jobs) != 1 {
		t.Fatalf("claim: %+v", claimed)
	}
	if m := next(t, job, "job.status"); m.Data.Data["new_status"] != "processing" {
		t.Fatalf("job.status after claim %+v", m)
	}
	api.must(t, 200, "POST", "/api/v1/jobs/"+id+"/complete", map[string]any{"worker_id": "w1"})
	if m := next(t, job, "job.status"); m.Data.Data["new_status"] != "completed" {
		t.Fatalf("job.status after complete %+v", m)
	}
	// A finished job's stream closes.
	select {
	case _, open := <-job:
		for open {
			_, open = <-job
		}
	case <-time.After(15 * time.Second):
		t.Fatal("job stream still open after completion")
	}
	if m := next(t, all, "job.completed"); m.Data.Data["job_id"] != id {
		t.Fatalf("job.completed %+v", m)
	}

	// Another organization's job: one error event, then the stream ends.
	foreign := openSSE(t, base+"/events/jobs/"+id, other.key)
	if m := next(t, foreign, "error"); m.Data.Data["message"] != "Job not found" {
		t.Fatalf("foreign job stream %+v", m)
	}
}

// TestStreamsKeepTheirRequestValues: a stream's writer runs after its
// handler returned, when Fiber has handed the request's buffers to later
// requests. The queue name and filters a stream follows must be its own
// copies, not views of buffers that other requests now overwrite.
func TestStreamsKeepTheirRequestValues(t *testing.T) {
	_, dbURL := testdb.NewWithURL(t, testdb.Options{})
	a := wkStartApp(t, dbURL, nil, func(c *config.Config) { c.WorkerFallbackPollInterval = 5 * time.Second })
	api := wkNewOrg(t, wkNewAPI(t, a, ""))
	base := "http://" + a.Addr() + "/api/v1"
	queue, decoy := wkQueue("keep"), wkQueue("keep")

	stats := openSSE(t, base+"/events/queues/"+queue, api.key)
	created := openSSE(t, base+"/events?events=job.created", api.key)
	if m := next(t, stats, "queue.stats"); m.Data.Data["queue_name"] != queue {
		t.Fatalf("first queue.stats %+v", m)
	}
	// Requests of the same shape cycle Fiber's pooled contexts through
	// the buffers the streams' handlers used.
	for i := 0; i < 50; i++ {
		api.must(t, 200, "GET", "/api/v1/queues/"+decoy+"/stats?events=job.completed", nil)
		api.must(t, 200, "GET", "/api/v1/events/log?queue="+decoy, nil)
	}
	id := api.enqueue(t, queue, nil)
	if m := next(t, stats, "queue.stats"); m.Data.Data["queue_name"] != queue || m.Data.Data["pending"] != float64(1) {
		t.Fatalf("queue.stats after enqueue %+v, want %s with one pending job", m, queue)
	}
	if m := next(t, created, "job.created"); m.Data.Data["job_id"] != id {
		t.Fatalf("job.created %+v, want job %s", m, id)
	}
}

// TestSSEStreamsPerOrganizationAreCapped: an organization holds at most
// 100 open event streams; the next is a JSON 429 before any stream opens,
// another organization is not affected, and a stream whose client left
// gives its slot back at once, though nothing is written to it.
func TestSSEStreamsPerOrganizationAreCapped(t *testing.T) {
	t.Parallel()
	_, dbURL := testdb.NewWithURL(t, testdb.Options{})
	a := wkStartApp(t, dbURL, nil, nil)
	api := wkNewOrg(t, wkNewAPI(t, a, ""))
	other := wkNewOrg(t, api)
	base := "http://" + a.Addr() + "/api/v1"
	routes := []string{"/events/log/stream", "/events", "/events/queues/capped"}

	cancels := make([]context.CancelFunc, 0, 100)
	for i := range 100 {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		cancels = append(cancels, cancel)
		req, _ := http.NewRequestWithContext(ctx, "GET", base+routes[i%len(routes)], nil)
		req.Header.Set("X-API-Key", api.key)
		resp, err := sseClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 {
			t.Fatalf("stream %d: status %d", i+1, resp.StatusCode)
		}
	}
	refused := func(key string) (int, string) {
		req, _ := http.NewRequest("GET", base+"/events/log/stream", nil)
		req.Header.Set("X-API-Key", key)
		resp, err := sseClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct{ Code string }
		if resp.StatusCode != 200 {
			_ = json.NewDecoder(resp.Body).Decode(&body)
		}
		return resp.StatusCode, body.Code
	}
	if st, code := refused(api.key); st != 429 || code != "RATE_LIMIT_EXCEEDED" {
		t.Fatalf("the 101st stream: %d %s, want 429 RATE_LIMIT_EXCEEDED", st, code)
	}
	if st, _ := refused(other.key); st != 200 {
		t.Fatalf("another organization's stream: %d, want 200", st)
	}

	// One client leaves. Nothing is written to its stream (no event, and
	// the first keepalive is 15 s away): the stream notices the hang-up
	// itself and gives its slot back.
	cancels[0]()
	wkEventually(t, 5*time.Second, "a slot given back by a quiet stream whose client left", func() bool {
		st, _ := refused(api.key)
		return st == 200
	})
}
