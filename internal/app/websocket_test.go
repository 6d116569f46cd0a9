package app_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/spooled-go/spooled/internal/config"
	"github.com/spooled-go/spooled/internal/testdb"
)

type wsMsg struct {
	Type      string         `json:"type"`
	RequestID string         `json:"request_id"`
	Timestamp string         `json:"timestamp"`
	Data      map[string]any `json:"data"`
}

// TestWebSocketStreamsTheLog: a socket pings on connect, answers the SDK's
// subscribe command, and then streams the organization's realtime events
// for the subscribed queue only, in the SDK's {type, timestamp, data} form.
func TestWebSocketStreamsTheLog(t *testing.T) {
	_, dbURL := testdb.NewWithURL(t, testdb.Options{})
	a := wkStartApp(t, dbURL, nil, func(c *config.Config) { c.WorkerFallbackPollInterval = 5 * time.Second })
	api := wkNewOrg(t, wkNewAPI(t, a, ""))
	other := wkNewOrg(t, api)

	dial := func(key string) (*websocket.Conn, *http.Response, error) {
		u := url.URL{Scheme: "ws", Host: a.Addr(), Path: "/api/v1/ws", RawQuery: "token=" + url.QueryEscape(key)}
		return websocket.DefaultDialer.Dial(u.String(), nil)
	}
	conn, _, err := dial(api.key)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	read := func() wsMsg {
		t.Helper()
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		var m wsMsg
		if err := conn.ReadJSON(&m); err != nil {
			t.Fatalf("read: %v", err)
		}
		return m
	}
	if m := read(); m.Type != "ping" {
		t.Fatalf("first message %+v, want ping", m)
	}
	if err := conn.WriteJSON(map[string]any{"type": "subscribe", "request_id": "r1", "filter": map[string]any{"queue": "ws.watched"}}); err != nil {
		t.Fatal(err)
	}
	if m := read(); m.Type != "subscribed" || m.RequestID != "r1" {
		t.Fatalf("subscribe answer %+v", m)
	}

	api.enqueue(t, "ws.ignored", nil)
	other.enqueue(t, "ws.watched", nil) // another organization's
	id := api.enqueue(t, "ws.watched", nil)
	m := read()
	if m.Type != "job.created" || m.Data["job_id"] != id || m.Data["queue_name"] != "ws.watched" || m.Timestamp == "" {
		t.Fatalf("got %+v, want job.created for %s", m, id)
	}

	// Bad credentials never upgrade.
	if _, resp, err := dial("sk_test_not-a-key-at-all-0000000000000000000"); err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("bad key: err %v status %v", err, resp)
	}
	// A plain GET is told to upgrade.
	res, err := http.Get("http://" + a.Addr() + "/api/v1/ws?token=" + api.key)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("plain GET: %d", res.StatusCode)
	}
	// Commands that are not JSON get an error message, not a closed socket.
	if err := conn.WriteMessage(websocket.TextMessage, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if m := read(); m.Type != "error" || !strings.Contains(strings.ToLower(string(mustJSON(m.Data))), "json") {
		t.Fatalf("non-JSON command answered %+v", m)
	}
}

// TestWebSocketMessageLimit: a client message up to 64 KiB is read and
// answered; one announced larger closes the socket with 1009 (message too
// big) before its payload is read, so no client can make the server buffer
// a message of any size.
func TestWebSocketMessageLimit(t *testing.T) {
	t.Parallel()
	_, dbURL := testdb.NewWithURL(t, testdb.Options{})
	a := wkStartApp(t, dbURL, nil, nil)
	api := wkNewOrg(t, wkNewAPI(t, a, ""))
	conn, err := wsGreeted(a.Addr(), api.key)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	read := func() (wsMsg, error) {
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		var m wsMsg
		err := conn.ReadJSON(&m)
		return m, err
	}

	// Just under the limit: answered.
	id := strings.Repeat("r", 64*1024-64)
	if err := conn.WriteJSON(map[string]any{"type": "ping", "request_id": id}); err != nil {
		t.Fatal(err)
	}
	if m, err := read(); err != nil || m.Type != "pong" || m.RequestID != id {
		t.Fatalf("a ping of almost 64 KiB: %s, %v; want its pong", m.Type, err)
	}

	// A text frame that announces 1 GiB, masked as a client's must be, and
	// sends none of it: the header alone must end the socket.
	header := []byte{0x81, 0x80 | 127, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4}
	if _, err := conn.UnderlyingConn().Write(header); err != nil {
		t.Fatal(err)
	}
	_, err = read()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseMessageTooBig {
		t.Fatalf("after an oversized message: %v, want close 1009", err)
	}

	// The socket's slot is given back, and the server still serves the
	// organization.
	wkEventually(t, 5*time.Second, "socket released", func() bool {
		c2, err := wsGreeted(a.Addr(), api.key)
		if err != nil {
			return false
		}
		c2.Close()
		return true
	})
}

// TestWebSocketRefusedHandshakesFreeTheirSlot: a handshake the WebSocket
// library refuses (here: no Sec-WebSocket-Key) is a 426 that gives back the
// organization's socket slot; more refusals than the cap of 100 still leave
// a proper handshake welcome.
func TestWebSocketRefusedHandshakesFreeTheirSlot(t *testing.T) {
	t.Parallel()
	_, dbURL := testdb.NewWithURL(t, testdb.Options{})
	a := wkStartApp(t, dbURL, nil, nil)
	api := wkNewOrg(t, wkNewAPI(t, a, ""))
	bad := "http://" + a.Addr() + "/api/v1/ws?token=" + url.QueryEscape(api.key)
	for i := range 110 {
		req, err := http.NewRequest("GET", bad, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusUpgradeRequired {
			t.Fatalf("refused handshake %d: status %d, want 426", i+1, res.StatusCode)
		}
	}
	conn, err := wsGreeted(a.Addr(), api.key)
	if err != nil {
		t.Fatalf("a proper handshake after 110 refused ones: %v", err)
	}
	conn.Close()
}

// TestStopClosesOpenSockets: stopping the server with a WebSocket open
// closes it (1001, going away) and ends its handler before Stop returns.
// The handler used to wait for the client to leave: closing a connection
// the HTTP server handed over does not end a read blocked on it, and the
// server did not count such connections in its drain.
func TestStopClosesOpenSockets(t *testing.T) {
	t.Parallel()
	_, dbURL := testdb.NewWithURL(t, testdb.Options{})
	a, stop := wkStartAppStoppable(t, dbURL, nil, nil)
	api := wkNewOrg(t, wkNewAPI(t, a, ""))
	conn, err := wsGreeted(a.Addr(), api.key)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := stop(); err != nil {
		t.Fatalf("stop with a socket open: %v", err)
	}
	// Already closed: the close frame (1001, going away) is waiting.
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err = conn.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
		t.Fatalf("after Stop: %v, want the socket closed with 1001", err)
	}
}

// wsGreeted dials the server's WebSocket route at addr with key and reads
// the ping every socket opens with.
func wsGreeted(addr, key string) (*websocket.Conn, error) {
	u := url.URL{Scheme: "ws", Host: addr, Path: "/api/v1/ws", RawQuery: "token=" + url.QueryEscape(key)}
	conn, res, err := websocket.DefaultDialer.Dial(u.String(), nil)
	if err != nil {
		if res != nil {
			return nil, fmt.Errorf("dial: %w (status %d)", err, res.StatusCode)
		}
		return nil, fmt.Errorf("dial: %w", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var m wsMsg
	if err := conn.ReadJSON(&m); err != nil || m.Type != "ping" {
		conn.Close()
		return nil, fmt.Errorf("first message %+v, %v; want ping", m, err)
	}
	return conn, nil
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
