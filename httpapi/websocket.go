package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/queries"
)

// maxSocketsPerOrg caps one organization's open WebSockets (Spooled: 100).
const maxSocketsPerOrg = 100

// maxSocketMessage caps a client's message on a socket: its commands are a
// few hundred bytes of JSON, and without a cap the library reads a message
// of any size into memory. A larger one closes the socket with 1009
// (message too big).
const maxSocketMessage = 64 * 1024

// streamCounter counts open streams of one kind (WebSockets, SSE streams)
// per organization, up to a cap, and in all so that shutdown can wait for
// them: the HTTP server does not count a connection it handed over to a
// socket, nor a stream writer whose client has gone.
type streamCounter struct {
	kind  string // what the refusal names: "WebSockets", "event streams"
	max   int    // per organization
	mu    sync.Mutex
	n     map[string]int
	total int
	idle  chan struct{} // closed while no stream is open
}

func newStreamCounter(kind string, max int) *streamCounter {
	idle := make(chan struct{})
	close(idle)
	return &streamCounter{kind: kind, max: max, n: map[string]int{}, idle: idle}
}

// acquire takes one of org's slots, or answers 429 when it holds them all.
func (sc *streamCounter) acquire(org string) error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.n[org] >= sc.max {
		return &apiError{Status: fiber.StatusTooManyRequests, Code: "RATE_LIMIT_EXCEEDED",
			Message: fmt.Sprintf("Too many open %s for this organization (%d)", sc.kind, sc.max)}
	}
	sc.n[org]++
	if sc.total == 0 {
		sc.idle = make(chan struct{})
	}
	sc.total++
	return nil
}

func (sc *streamCounter) release(org string) {
	sc.mu.Lock()
	sc.n[org]--
	if sc.n[org] <= 0 {
		delete(sc.n, org)
	}
	if sc.total--; sc.total == 0 {
		close(sc.idle)
	}
	sc.mu.Unlock()
}

// reserve takes one of org's slots for a WebSocket handshake, as acquire
// does, and hands it to the socket's handler through the returned handoff.
// fasthttp runs that handler only once the 101 response is written: a
// handshake whose response cannot be written (the client reset the
// connection first) never reaches it, so a handoff nobody takes within
// grace gives its slot back.
func (sc *streamCounter) reserve(org string, grace time.Duration) (*slotHandoff, error) {
	if err := sc.acquire(org); err != nil {
		return nil, err
	}
	h := &slotHandoff{}
	h.giveBack = func() { sc.release(org) }
	h.timer = time.AfterFunc(grace, func() {
		if h.state.CompareAndSwap(handoffWaiting, handoffReturned) {
			h.giveBack()
		}
	})
	return h, nil
}

const (
	handoffWaiting int32 = iota
	handoffTaken
	handoffReturned
)

// slotHandoff is a slot reserved at a handshake, on its way to the
// socket's handler.
type slotHandoff struct {
	state    atomic.Int32
	timer    *time.Timer
	giveBack func()
}

// take gives the slot to the socket's handler, which releases it when the
// socket closes; false when the grace has already given it back.
func (h *slotHandoff) take() bool {
	if !h.state.CompareAndSwap(handoffWaiting, handoffTaken) {
		return false
	}
	h.timer.Stop()
	return true
}

// cancel gives the slot back now, unless it was taken or given back.
func (h *slotHandoff) cancel() {
	if h.state.CompareAndSwap(handoffWaiting, handoffReturned) {
		h.timer.Stop()
		h.giveBack()
	}
}

// wait returns once no stream is open, or with ctx's error.
func (sc *streamCounter) wait(ctx context.Context) error {
	sc.mu.Lock()
	idle := sc.idle
	sc.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%d streams still open: %w", sc.open(), ctx.Err())
	}
}

func (sc *streamCounter) open() int {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.total
}

// wsUpgrade admits a WebSocket handshake for an authenticated caller
// within the organization's socket cap; anything else is a plain error.
func (s *Server) wsUpgrade(c *fiber.Ctx) error {
	if !websocket.IsWebSocketUpgrade(c) {
		return &apiError{Status: fiber.StatusUpgradeRequired, Code: "BAD_REQUEST", Message: "This route speaks WebSocket only"}
	}
	if q := c.Query("queue"); q != "" {
		if err := commands.ValidateQueueName("queue", q); err != nil {
			return badRequest("Invalid queue filter")
		}
	}
	h, err := s.sockets.reserve(caller(c).OrgID, s.handshakeGrace)
	if err != nil {
		return err
	}
	c.Locals(handoffKey, h)
	// serveSocket takes the slot and gives it back when the socket closes.
	// A handshake the library refuses (no Sec-WebSocket-Key, another
	// version) never reaches it, nor does one whose 101 cannot be written:
	// without the cancel here and the handoff's grace, a hundred of either
	// would have locked the organization out of /ws until a restart.
	if err := c.Next(); err != nil {
		h.cancel()
		return err
	}
	return nil
}

// handoffKey holds a handshake's slotHandoff in the request's locals,
// which the WebSocket library copies to the socket.
const handoffKey = "spooled.socket_slot"

// socketHandshakeGrace is how long a handshake's slot waits for the socket's
// handler: the handler runs as soon as the 101 is written, so only a
// handshake that never becomes a socket waits this long (and Shutdown,
// which waits for every slot, with it).
const socketHandshakeGrace = 5 * time.Second

// wsFilter is a socket's subscription: queue, job and event names.
type wsFilter struct {
	mu     sync.Mutex
	queue  string
	jobID  string
	events map[string]bool // empty: all
}

func (f *wsFilter) match(m realtimeEvent) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.events) > 0 && !f.events[m.Type] {
		return false
	}
	if f.queue != "" && m.Data["queue_name"] != nil && m.Data["queue_name"] != f.queue {
		return false
	}
	if f.jobID != "" && m.Data["job_id"] != nil && m.Data["job_id"] != f.jobID {
		return false
	}
	return true
}

func (f *wsFilter) set(queue, jobID string, evs []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queue, f.jobID = queue, jobID
	f.events = map[string]bool{}
	for _, e := range evs {
		if e = strings.TrimSpace(e); e != "" && e != "*" {
			f.events[e] = true
		}
	}
}

// wsCommand is a client message: the SDK's {"type": "subscribe",
// "request_id", "filter": {...}} or Spooled's {"cmd": "Subscribe", ...}.
type wsCommand struct {
	Type      string `json:"type"`
	Cmd       string `json:"cmd"`
	RequestID string `json:"request_id"`
	Queue     string `json:"queue"`
	JobID     string `json:"job_id"`
	Filter    struct {
		Queue     string   `json:"queue"`
		QueueName string   `json:"queue_name"`
		JobID     string   `json:"job_id"`
		Events    []string `json:"events"`
	} `json:"filter"`
}

// serveSocket streams the organization's realtime events as JSON text
// frames {type, timestamp, data}, filtered by the query (queue, job_id,
// events) and by subscribe commands; it pings on connect and every 30 s.
func (s *Server) serveSocket(conn *websocket.Conn) {
	p, _ := conn.Locals(principalKey).(principal)
	if h, _ := conn.Locals(handoffKey).(*slotHandoff); h == nil || !h.take() {
		// The 101 took longer to write than the grace, which gave the
		// handshake's slot back: the socket needs one of its own.
		if err := s.sockets.acquire(p.OrgID); err != nil {
			_ = conn.WriteControl(websocket.CloseMessage,
				websocket.FormatCloseMessage(websocket.ClosePolicyViolation, "too many WebSockets for this organization"),
				time.Now().Add(time.Second))
			_ = conn.Close()
			return
		}
	}
	defer s.sockets.release(p.OrgID)
	conn.SetReadLimit(maxSocketMessage)
	f := &wsFilter{}
	f.set(conn.Query("queue"), conn.Query("job_id"), strings.Split(conn.Query("events"), ","))

	ctx, cancel := context.WithCancel(s.streamCtx)
	defer cancel()
	var wmu sync.Mutex
	send := func(v any) error {
		wmu.Lock()
		defer wmu.Unlock()
		_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		return conn.WriteJSON(v)
	}
	ping := func() error {
		now := ts(time.Now())
		return send(realtimeEvent{Type: "ping", Timestamp: now, Data: map[string]any{"timestamp": now}})
	}
	// The stream starts where the log ends now, before the greeting: all
	// a client does after it sees the ping is in its stream.
	start, err := s.liveFrom(ctx, p.OrgID)
	if err != nil || ping() != nil {
		return
	}

	// The reader owns the socket's incoming side; when the client goes
	// away it cancels the follower. The handler ends the reader and waits
	// for it before returning: the library reuses the connection object
	// once the handler is done. Close alone does not end a blocked read:
	// the HTTP server closes a connection it handed over only after this
	// handler returns, so a stream that ended here (shutdown, the 30
	// minutes) would have waited for the client to leave. The close frame
	// tells the client why; the read deadline in the past ends the read.
	readerDone := make(chan struct{})
	defer func() {
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, ""),
			time.Now().Add(time.Second))
		_ = conn.SetReadDeadline(time.Now())
		_ = conn.Close()
		<-readerDone
	}()
	go func() {
		defer close(readerDone)
		defer cancel()
		for {
			_, msg, err := conn.ReadMessage()
			if err != nil {
				return
			}
			var cmd wsCommand
			if json.Unmarshal(msg, &cmd) != nil {
				now := ts(time.Now())
				_ = send(realtimeEvent{Type: "error", Timestamp: now, Data: map[string]any{"message": "commands are JSON objects"}})
				continue
			}
			kind := strings.ToLower(cmd.Type + cmd.Cmd)
			now := ts(time.Now())
			switch kind {
			case "subscribe":
				q := cmd.Filter.Queue + cmd.Filter.QueueName + cmd.Queue
				f.set(q, cmd.Filter.JobID+cmd.JobID, cmd.Filter.Events)
				_ = send(map[string]any{"type": "subscribed", "request_id": cmd.RequestID, "timestamp": now,
					"data": map[string]any{"queue": q, "job_id": cmd.Filter.JobID + cmd.JobID, "events": cmd.Filter.Events}})
			case "unsubscribe":
				f.set("", "", nil)
				_ = send(map[string]any{"type": "unsubscribed", "request_id": cmd.RequestID, "timestamp": now, "data": map[string]any{}})
			case "ping":
				_ = send(map[string]any{"type": "pong", "request_id": cmd.RequestID, "timestamp": now, "data": map[string]any{}})
			default:
				_ = send(realtimeEvent{Type: "error", Timestamp: now, Data: map[string]any{"message": "unknown command " + kind}})
			}
		}
	}()

	pings := 0
	s.followCtx(ctx, p.OrgID, logFilter{after: start, params: queries.EventLogPageParams{OrganizationID: p.OrgID}},
		func(evs []logEventJSON) error {
			for _, e := range evs {
				for _, m := range toRealtime(e) {
					if f.match(m) {
						if err := send(m); err != nil {
							return err
						}
					}
				}
			}
			return nil
		},
		func() error {
			// Keepalives come every 15 s; the contract pings every 30.
			pings++
			if pings%2 == 0 {
				return ping()
			}
			return nil
		})
}
