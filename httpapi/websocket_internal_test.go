package httpapi

import (
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	contribws "github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"
)

// TestLostHandshakeGivesBackItsSlot: fasthttp hands a connection to the
// socket's handler only after it has written the 101; a handshake whose
// response does not go out (the client reset the connection, or, as
// here, the response closes the connection) never reaches the handler,
// and its slot must come back all the same. It used to stay taken until a
// restart: the organization's hundredth such handshake locked it out of
// /ws.
func TestLostHandshakeGivesBackItsSlot(t *testing.T) {
	t.Parallel()
	s := &Server{sockets: newStreamCounter("WebSockets", 2), handshakeGrace: 50 * time.Millisecond}
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	lose := func(c *fiber.Ctx) error {
		c.Locals(principalKey, principal{OrgID: "org-a"})
		err := c.Next()
		// fasthttp writes a response that closes the connection and then
		// drops it instead of handing it over.
		c.Response().Header.SetConnectionClose()
		return err
	}
	app.Get("/ws", lose, s.wsUpgrade, contribws.New(s.serveSocket))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = app.Listener(ln) }()
	t.Cleanup(func() { _ = app.Shutdown() })

	u := url.URL{Scheme: "ws", Host: ln.Addr().String(), Path: "/ws"}
	for range 3 {
		if conn, _, err := websocket.DefaultDialer.Dial(u.String(), nil); err == nil {
			conn.Close()
		}
	}
	if !slotsFreed(s.sockets) {
		t.Fatalf("%d socket slots still taken by handshakes that never became sockets", s.sockets.open())
	}
}

// TestHandoffTakenOrExpired: the handler takes a handshake's slot while it
// waits; once the grace has given it back, taking fails (the handler must
// acquire a slot of its own), and the count is not released twice.
func TestHandoffTakenOrExpired(t *testing.T) {
	t.Parallel()
	sc := newStreamCounter("WebSockets", 1)
	h, err := sc.reserve("org-a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !h.take() {
		t.Fatal("a waiting handoff could not be taken")
	}
	if n := sc.open(); n != 1 {
		t.Fatalf("%d open after take, want 1", n)
	}
	if _, err := sc.reserve("org-a", time.Hour); err == nil {
		t.Fatal("the cap of 1 let a second handshake in")
	}
	sc.release("org-a")

	h, err = sc.reserve("org-a", time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if !slotsFreed(sc) {
		t.Fatal("an untaken handoff kept its slot past the grace")
	}
	if h.take() {
		t.Fatal("an expired handoff was taken")
	}
	h.cancel() // no second release
	if n := sc.open(); n != 0 {
		t.Fatalf("%d open after cancel of an expired handoff, want 0", n)
	}
}

// slotsFreed polls until sc holds no slot, for at most 10 s.
func slotsFreed(sc *streamCounter) bool {
	return within(10*time.Second, func() bool { return sc.open() == 0 })
}

// within polls cond until it holds, for at most d, and says whether it did.
func within(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}
