package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/events"
	"github.com/spooled-go/spooled/queries"
)

// LogWaiter wakes log followers when an organization's log advances (the
// wake-up hub); nil means followers only poll.
type LogWaiter interface {
	WaitLog(orgID string) (<-chan struct{}, func())
}

// logEventJSON is an event as the log, stream and audit routes show it: the
// history endpoint's shape plus where it belongs and its cursor.
type logEventJSON struct {
	Position   int64           `json:"position"`
	Cursor     string          `json:"cursor"`
	Type       string          `json:"type"`
	OccurredAt string          `json:"occurred_at"`
	Actor      string          `json:"actor"`
	StreamType string          `json:"stream_type"`
	StreamID   string          `json:"stream_id"`
	Sequence   int32           `json:"sequence"`
	QueueName  *string         `json:"queue_name"`
	Data       json.RawMessage `json:"data"`
}

// logFilter is a parsed log or audit query.
type logFilter struct {
	after  events.Cursor
	limit  int
	params queries.EventLogPageParams
}

func (s *Server) cursorKey() []byte { return []byte(s.cfg.JWTSecret) }

// parseLogFilter reads after/limit/type/queue/job_id (and, for audit,
// actor/from/to). Every malformed value is a 400: a reader that silently got
// another page than it asked for would skip or repeat events. The strings
// it keeps are copies, since a stream uses the filter after the request's
// buffers have gone back to Fiber.
func (s *Server) parseLogFilter(c *fiber.Ctx, audit bool) (logFilter, error) {
	orgID := caller(c).OrgID
	after := c.Query("after")
	if after == "" && !audit {
		after = c.Get("Last-Event-ID")
	}
	cur, err := events.DecodeCursor(after, orgID, s.cursorKey())
	if err != nil {
		return logFilter{}, badRequest("Invalid cursor: use a cursor this API returned to this organization")
	}
	f := logFilter{after: cur, limit: 100}
	if raw := c.Query("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > 1000 {
			return logFilter{}, validation("limit", "range", "must be a whole number between 1 and 1000")
		}
		f.limit = n
	}
	p := queries.EventLogPageParams{OrganizationID: orgID}
	if t := c.Query("type"); t != "" {
		if !events.KnownTypes[t] {
			return logFilter{}, validation("type", "unknown_event_type", "is not an event type this server writes")
		}
		t = strings.Clone(t)
		p.EventType = &t
	}
	if q := c.Query("queue", c.Query("queue_name")); q != "" {
		if err := commands.ValidateQueueName("queue", q); err != nil {
			return logFilter{}, err
		}
		q = strings.Clone(q)
		p.QueueName = &q
	}
	if j := c.Query("job_id"); j != "" {
		id, err := uuid.Parse(j)
		if err != nil {
			return logFilter{}, validation("job_id", "uuid", "must be a job id")
		}
		sid := id.String()
		p.StreamID = &sid
	}
	if audit {
		a, err := queryText(c, "actor", 300)
		if err != nil {
			return logFilter{}, err
		}
		if a != "" {
			a = strings.Clone(a)
			p.Actor = &a
		}
		for _, tf := range []struct {
			name string
			dst  **time.Time
		}{{"from", &p.OccurredFrom}, {"to", &p.OccurredTo}} {
			if raw := c.Query(tf.name); raw != "" {
				t, err := time.Parse(time.RFC3339Nano, raw)
				if err != nil {
					return logFilter{}, validation(tf.name, "timestamp", "must be an RFC 3339 timestamp")
				}
				*tf.dst = &t
			}
		}
	}
	f.params = p
	return f, nil
}

// page reads the next page after cur.
func (s *Server) page(ctx context.Context, orgID string, f logFilter, cur events.Cursor, limit int) ([]logEventJSON, events.Cursor, error) {
	p := f.params
	p.AfterTxID, p.AfterPosition, p.MaxRows = cur.TxID, cur.Position, int32(limit)
	var rows []queries.EventLogPageRow
	var err error
	if p.StreamID != nil {
		rows, err = s.q.EventLogPage(ctx, s.pool, p) // a stream's few events come through its index
	} else {
		rows, err = s.q.EventLogPageOrdered(ctx, s.pool, p)
	}
	if err != nil {
		return nil, cur, err
	}
	out := make([]logEventJSON, len(rows))
	for i, r := range rows {
		cur = events.Cursor{TxID: r.TxID, Position: r.Position}
		out[i] = logEventJSON{
			Position: r.Position, Cursor: cur.Encode(orgID, s.cursorKey()), Type: r.EventType,
			OccurredAt: ts(r.OccurredAt), Actor: r.Actor, StreamType: r.StreamType, StreamID: r.StreamID,
			Sequence: r.StreamSeq, QueueName: r.QueueName, Data: r.Data,
		}
	}
	return out, cur, nil
}

// readLog serves GET /events/log and GET /audit: one page after the cursor.
// next_cursor is where to continue; with no new events it is the cursor
// given, so a client can keep polling with it.
func (s *Server) readLog(audit bool) fiber.Handler {
	return func(c *fiber.Ctx) error {
		f, err := s.parseLogFilter(c, audit)
		if err != nil {
			return err
		}
		orgID := caller(c).OrgID
		evs, next, err := s.page(c.UserContext(), orgID, f, f.after, f.limit)
		if err != nil {
			return err
		}
		return c.JSON(fiber.Map{"events": evs, "next_cursor": next.Encode(orgID, s.cursorKey())})
	}
}

// streamLog serves GET /events/log/stream: Server-Sent Events that catch up
// from the cursor (after=, or Last-Event-ID on reconnect) and then follow
// the log live. Each event's SSE id is its cursor. Followers wake on the
// organization's log hint, and poll at the fallback interval without one.
func (s *Server) streamLog(c *fiber.Ctx) error {
	f, err := s.parseLogFilter(c, false)
	if err != nil {
		return err
	}
	orgID := caller(c).OrgID
	extend := s.streamWriteDeadline(c)
	return s.stream(c, func(ctx context.Context, w *bufio.Writer) {
		if openSSE(w, extend) != nil {
			return
		}
		s.followCtx(ctx, orgID, f, func(evs []logEventJSON) error {
			for _, e := range evs {
				data, err := json.Marshal(e)
				if err != nil {
					return err
				}
				fmt.Fprintf(w, "id: %s\nevent: %s\ndata: %s\n\n", e.Cursor, e.Type, data)
			}
			extend()
			return w.Flush()
		}, func() error {
			_, _ = w.WriteString(": keepalive\n\n")
			extend()
			return w.Flush()
		})
	})
}

// streamWriteDeadline returns a func that moves the connection's write
// deadline one WriteTimeout ahead; a stream calls it before each flush.
// The server sets that deadline once per response, so without this every
// stream was cut after WriteTimeout (60 s), in the middle of its chunked
// body, long before maxStream. A client that stops reading still times out.
func (s *Server) streamWriteDeadline(c *fiber.Ctx) func() {
	conn, timeout := c.Context().Conn(), s.app.Config().WriteTimeout
	return func() {
		if conn != nil && timeout > 0 {
			_ = conn.SetWriteDeadline(time.Now().Add(timeout))
		}
	}
}

// maxStream bounds one stream; clients reconnect with Last-Event-ID.
const maxStream = 30 * time.Minute

// followCtx pages through the log from f.after, calling emit with each
// non-empty page; between pages it sleeps until a log hint, the fallback
// poll or a keepalive. It returns when emit or keepalive fails (the client
// went away), ctx ends (the client hung up, or the server stops), or the
// stream has run maxStream.
func (s *Server) followCtx(parent context.Context, orgID string, f logFilter, emit func([]logEventJSON) error, keepalive func() error) {
	ctx, cancel := context.WithTimeout(parent, maxStream)
	defer cancel()
	var wake <-chan struct{}
	if s.logWaiter != nil {
		ch, stop := s.logWaiter.WaitLog(orgID)
		defer stop()
		wake = ch
	}
	poll := time.NewTicker(s.cfg.WorkerFallbackPollInterval)
	defer poll.Stop()
	alive := time.NewTicker(15 * time.Second)
	defer alive.Stop()
	cur := f.after
	for {
		for {
			evs, next, err := s.page(ctx, orgID, f, cur, 500)
			if err != nil {
				return
			}
			cur = next
			if len(evs) == 0 {
				break
			}
			if emit(evs) != nil {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case _, open := <-wake:
			if !open {
				return
			}
		case <-poll.C:
		case <-alive.C:
			if keepalive() != nil {
				return
			}
		}
	}
}
