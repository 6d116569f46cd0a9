package app_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spooled-go/spooled/internal/testdb"
)

// wkClaimWaiters counts goroutines inside a waiting claim.
func wkClaimWaiters() int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	return bytes.Count(buf, []byte("commands.(*Service).ClaimWait("))
}

// TestWakeClientGone: a client that disconnects in the middle of a waiting
// claim ends that claim at once, and leaves nothing behind. The server
// watches the connection of a waiting claim (fasthttp itself does not
// read it while a handler runs), so the claim stops waiting instead of
// taking a job for the gone client, which would have come back only when
// its lease expired. A job enqueued after the hang-up goes straight to the
// next worker that asks.
//
// Not parallel: it counts the process's goroutines.
func TestWakeClientGone(t *testing.T) {
	_, dbURL := testdb.NewWithURL(t, testdb.Options{})
	a := wkStartApp(t, dbURL, nil, nil)
	c := wkNewOrg(t, wkNewAPI(t, a, ""))
	q := wkQueue("gone")
	tr := c.hc.Transport.(*http.Transport)

	// Warm up with more concurrent connections than the test uses, so the
	// server's worker pool already holds the goroutines it will reuse.
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.claim(q+".warm", fmt.Sprint("warm-", i), 50, 0)
		}()
	}
	wg.Wait()
	tr.CloseIdleConnections()
	wkEventually(t, 5*time.Second, "warm-up claims finished", func() bool {
		return a.Wakeups().Waiting() == 0 && wkClaimWaiters() == 0
	})
	baseline := runtime.NumGoroutine()

	// Two gone clients, hand-written requests on raw connections: one waits
	// on the queue that gets a job, one on a queue that stays empty. Both
	// would wait 30 s.
	goneClaim := func(queue, worker string) net.Conn {
		t.Helper()
		body := fmt.Sprintf(`{"queue_name":%q,"worker_id":%q,"wait_ms":30000,"lease_duration_secs":60}`, queue, worker)
		conn, err := net.Dial("tcp", a.Addr())
		if err != nil {
			t.Fatal(err)
		}
		_, err = fmt.Fprintf(conn, "POST /api/v1/jobs/claim HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"+
			"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", a.Addr(), c.key, len(body), body)
		if err != nil {
			t.Fatal(err)
		}
		return conn
	}
	conns := []net.Conn{goneClaim(q, "gone-worker"), goneClaim(q+".empty", "gone-idle")}
	wkEventually(t, 2*time.Second, "gone clients' claims waiting", func() bool { return a.Wakeups().Waiting() == 2 })
	for _, conn := range conns {
		if err := conn.Close(); err != nil {
			t.Fatal(err)
		}
	}
	closed := time.Now()

	// Both claims end long before their 30 s wait, and nothing of them
	// stays behind.
	wkEventually(t, 5*time.Second, "gone clients' claims ended", func() bool {
		return a.Wakeups().Waiting() == 0 && wkClaimWaiters() == 0
	})
	t.Logf("gone clients' claims ended %s after the hang-up", wkMS(time.Since(closed)))

	id := c.enqueue(t, q, nil)
	if job := c.must(t, 200, "GET", "/api/v1/jobs/"+id, nil); job["status"] != "pending" {
		t.Fatalf("job status %v, assigned to %v: want pending (no claim should be left to take it)",
			job["status"], job["assigned_worker_id"])
	}

	tr.CloseIdleConnections()
	// 15 s: a connection the server took while the machine was slow may
	// have needed a worker beyond the warmed ones, and fasthttp retires an
	// idle worker only after 10 s. (CI once saw 5 s pass, with the suite
	// under -race on two cores.) On failure the goroutines are dumped, so
	// a real leak (a hang-up watch that never ended, say) names itself.
	for deadline := time.Now().Add(15 * time.Second); runtime.NumGoroutine() > baseline; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines, not back to the baseline %d within 15s; all of them:\n%s", runtime.NumGoroutine(), baseline, buf)
		}
	}

	// The next worker gets it at once.
	r := wkAwaitClaim(t, c.goClaim(q, "worker-2", 10000, 0), 5*time.Second)
	if len(r.jobs) != 1 || r.jobs[0].ID != id {
		t.Fatalf("worker-2 claimed %v, want [%s]", r.ids(), id)
	}

	// The history has no lost lease.
	hist := c.must(t, 200, "GET", "/api/v1/jobs/"+id+"/history", nil)
	var got []string
	for _, e := range hist["events"].([]any) {
		ev := e.(map[string]any)
		got = append(got, fmt.Sprintf("%v by %v", ev["type"], ev["actor"]))
	}
	want := []string{"job.enqueued by api_key:", "job.claimed by worker:worker-2"}
	if len(got) != len(want) {
		t.Fatalf("history %v, want %v", got, want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Fatalf("history %v, want %v", got, want)
		}
	}

	// Nothing left over once worker-2's request is done either.
	tr.CloseIdleConnections()
	wkEventually(t, 5*time.Second, fmt.Sprintf("goroutines back to the baseline %d at the end", baseline), func() bool {
		return a.Wakeups().Waiting() == 0 && runtime.NumGoroutine() <= baseline
	})
}

// TestWaitingClaimKeepsItsConnection: the hang-up watch of a waiting claim
// takes nothing off the connection and leaves it fit for the next request.
// A second request pipelined behind a waiting claim is neither mistaken for
// a hang-up nor lost: the claim waits out its wait_ms, and both answers
// come back in order on the one connection. Then a woken claim and a plain
// request follow on the same keep-alive connection.
func TestWaitingClaimKeepsItsConnection(t *testing.T) {
	t.Parallel()
	_, dbURL := testdb.NewWithURL(t, testdb.Options{})
	a := wkStartApp(t, dbURL, nil, nil)
	c := wkNewOrg(t, wkNewAPI(t, a, ""))
	q := wkQueue("pipelined")

	conn, err := net.Dial("tcp", a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	request := func(method, path, body string) string {
		return fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"+
			"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", method, path, a.Addr(), c.key, len(body), body)
	}
	const waitMS = 3000
	claim := fmt.Sprintf(`{"queue_name":%q,"worker_id":"w1","wait_ms":%d}`, q, waitMS)
	sent := time.Now()
	if _, err := io.WriteString(conn, request("POST", "/api/v1/jobs/claim", claim)); err != nil {
		t.Fatal(err)
	}
	// The second request reaches the socket while the first waits, and
	// after the claim's hang-up watch began (claimHangUpDelay, 1 s): sent
	// with the first, the server would have read it along with it, and
	// sent sooner, before there was a watch to see it.
	wkEventually(t, 5*time.Second, "the claim waiting", func() bool { return a.Wakeups().Waiting() == 1 })
	time.Sleep(time.Until(sent.Add(1500 * time.Millisecond)))
	if _, err := io.WriteString(conn, request("GET", "/api/v1/jobs?queue_name="+q, "")); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	read := func(what string) (int, string) {
		t.Helper()
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if st, body := read("the waiting claim"); st != 200 || !strings.Contains(body, `"jobs":[]`) {
		t.Fatalf("the waiting claim: %d %s, want 200 with no jobs", st, body)
	}
	if waited := time.Since(sent); waited < waitMS*time.Millisecond-wkDueTolerance {
		t.Fatalf("the claim came back after %s, before its wait of %dms: the pipelined request was taken for a hang-up", waited, waitMS)
	}
	if st, body := read("the pipelined list"); st != 200 {
		t.Fatalf("the pipelined list: %d %s", st, body)
	}

	// A claim woken by a job, then another request, on the same connection.
	if _, err := io.WriteString(conn, request("POST", "/api/v1/jobs/claim",
		fmt.Sprintf(`{"queue_name":%q,"worker_id":"w1","wait_ms":10000}`, q))); err != nil {
		t.Fatal(err)
	}
	wkEventually(t, 5*time.Second, "the claim waiting", func() bool { return a.Wakeups().Waiting() == 1 })
	id := c.enqueue(t, q, nil)
	if st, body := read("the woken claim"); st != 200 || !strings.Contains(body, id) {
		t.Fatalf("the woken claim: %d %s, want job %s", st, body, id)
	}
	if _, err := io.WriteString(conn, request("GET", "/api/v1/jobs/"+id, "")); err != nil {
		t.Fatal(err)
	}
	if st, body := read("the job after the claim"); st != 200 || !strings.Contains(body, `"processing"`) {
		t.Fatalf("the job after the claim: %d %s", st, body)
	}
}
