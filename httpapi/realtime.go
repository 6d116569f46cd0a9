package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/spooled-go/spooled/events"
	"github.com/spooled-go/spooled/queries"
)

// Realtime routes speak the SDK's wire format: SSE "event:" names and the
// "type" field are dotted (job.created, job.status, job.completed,
// job.failed, queue.stats, worker.registered, worker.deregistered,
// worker.heartbeat, system.health, ping, error) and data is
// {"type", "timestamp", "data"}. They are fed by the log through the same
// follower as /events/log/stream: nothing polls job tables.

// realtimeEvent is one message of a realtime stream.
type realtimeEvent struct {
	Type      string         `json:"type"`
	Timestamp string         `json:"timestamp"`
	Data      map[string]any `json:"data"`
}

// newStatus is the status a job event leaves the job in, and the one it
// left (as far as the event alone tells).
var statusChange = map[string][2]string{
	events.JobClaimed:        {"pending", "processing"},
	events.JobCompleted:      {"processing", "completed"},
	events.JobRetryScheduled: {"processing", "pending"},
	events.JobDeadLettered:   {"processing", "deadletter"},
	events.JobCancelled:      {"pending", "cancelled"},
	events.JobRetried:        {"deadletter", "pending"},
	events.JobReleased:       {"processing", "pending"},
}

// toRealtime maps a log event to the realtime messages it implies.
func toRealtime(e logEventJSON) []realtimeEvent {
	var d map[string]any
	_ = json.Unmarshal(e.Data, &d)
	queue := ""
	if e.QueueName != nil {
		queue = *e.QueueName
	}
	msg := func(typ string, data map[string]any) realtimeEvent {
		data["timestamp"] = e.OccurredAt
		return realtimeEvent{Type: typ, Timestamp: e.OccurredAt, Data: data}
	}
	var out []realtimeEvent
	switch e.Type {
	case events.JobEnqueued:
		out = append(out, msg("job.created", map[string]any{"job_id": e.StreamID, "queue_name": queue, "priority": d["priority"]}))
	case events.JobCompleted:
		data := map[string]any{"job_id": e.StreamID, "queue_name": queue, "duration_ms": nil}
		if s, ok := d["started_at"].(string); ok {
			if started, err := time.Parse(time.RFC3339Nano, s); err == nil {
				if done, err := time.Parse(timeLayout, e.OccurredAt); err == nil {
					data["duration_ms"] = done.Sub(started).Milliseconds()
				}
			}
		}
		out = append(out, msg("job.completed", data))
	case events.JobFailed:
		out = append(out, msg("job.failed", map[string]any{"job_id": e.StreamID, "queue_name": queue, "error": d["error"]}))
	case events.WorkerRegistered:
		out = append(out, msg("worker.registered", map[string]any{"worker_id": e.StreamID, "queue_name": queue}))
	case events.WorkerDeregistered:
		out = append(out, msg("worker.deregistered", map[string]any{"worker_id": e.StreamID}))
	case events.WorkerStatusChanged:
		out = append(out, msg("worker.heartbeat", map[string]any{"worker_id": e.StreamID, "status": d["new_status"]}))
	}
	if ch, ok := statusChange[e.Type]; ok {
		old := ch[0]
		if from, ok := d["from_status"].(string); ok && from != "" {
			old = from
		}
		out = append(out, msg("job.status", map[string]any{"job_id": e.StreamID, "queue_name": queue,
			"old_status": old, "new_status": ch[1]}))
	}
	return out
}

// eventFilter is the events= query: a comma list of dotted names; absent,
// empty or * means all.
func eventFilter(c *fiber.Ctx) func(string) bool {
	// Cloned: the filter outlives the request inside a stream writer, and
	// Fiber's query strings alias a buffer the next request reuses.
	raw := strings.Clone(strings.TrimSpace(c.Query("events")))
	if raw == "" || raw == "*" {
		return func(string) bool { return true }
	}
	want := map[string]bool{}
	for _, p := range strings.Split(raw, ",") {
		if p = strings.TrimSpace(p); p == "*" {
			return func(string) bool { return true }
		} else if p != "" {
			want[p] = true
		}
	}
	return func(t string) bool { return want[t] }
}

// openSSE sends the response headers and a comment at once. fasthttp
// holds the headers until the body's first flush, so a stream whose first
// event is a filtered-out health report or a quiet log would leave its
// client waiting for the 15 s keepalive to learn it is connected.
func openSSE(w *bufio.Writer, extend func()) error {
	if _, err := w.WriteString(": connected\n\n"); err != nil {
		return err
	}
	extend()
	return w.Flush()
}

// writeSSE writes one message and flushes it, moving the connection's
// write deadline ahead first (see streamWriteDeadline).
func writeSSE(w *bufio.Writer, extend func(), ev realtimeEvent) error {
	data, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.Type, data); err != nil {
		return err
	}
	extend()
	return w.Flush()
}

func sseHeaders(c *fiber.Ctx) {
	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set("X-Accel-Buffering", "no")
}

// maxSSEPerOrg caps one organization's open Server-Sent Events streams, as
// maxSocketsPerOrg caps its sockets: each holds a goroutine and reads the
// log whenever the organization's log advances, so streams without a bound
// would let one tenant load the database for all.
const maxSSEPerOrg = 100

// stream answers with the Server-Sent Events stream write writes, within
// the organization's stream cap (429 beyond it); the slot is given back
// when write returns. write's context ends when the client hangs up or
// the server stops, so a quiet stream whose client left gives its slot
// back at once, not at its next write.
func (s *Server) stream(c *fiber.Ctx, write func(ctx context.Context, w *bufio.Writer)) error {
	org := caller(c).OrgID
	if err := s.sse.acquire(org); err != nil {
		return err
	}
	sseHeaders(c)
	conn := c.Context().Conn()
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer s.sse.release(org)
		ctx, hangUp := context.WithCancel(s.streamCtx)
		defer hangUp()
		defer watchHangUp(conn, 0, hangUp)()
		write(ctx, w)
	})
	return nil
}

// liveFrom is the cursor at the end of what an organization's readers can
// see now: realtime streams start there and show only what follows.
func (s *Server) liveFrom(ctx context.Context, orgID string) (events.Cursor, error) {
	end, err := s.q.EventLogEndOrdered(ctx, s.pool, orgID)
	if errors.Is(err, pgx.ErrNoRows) {
		return events.Cursor{}, nil
	}
	if err != nil {
		return events.Cursor{}, err
	}
	return events.Cursor{TxID: end.TxID, Position: end.Position}, nil
}

// events serves GET /events: the organization's realtime events, filtered
// by events=, with system.health every 10 s.
func (s *Server) realtimeEvents(c *fiber.Ctx) error {
	orgID := caller(c).OrgID
	allow := eventFilter(c)
	start, err := s.liveFrom(c.UserContext(), orgID)
	if err != nil {
		return err
	}
	extend := s.streamWriteDeadline(c)
	return s.stream(c, func(ctx context.Context, w *bufio.Writer) {
		if openSSE(w, extend) != nil {
			return
		}
		health := func() error {
			if !allow("system.health") {
				return nil
			}
			now := ts(time.Now())
			return writeSSE(w, extend, realtimeEvent{Type: "system.health", Timestamp: now, Data: map[string]any{
				"database": s.pool.Ping(ctx) == nil, "cache": s.busHealthy == nil || s.busHealthy(), "timestamp": now,
			}})
		}
		if health() != nil {
			return
		}
		s.followCtx(ctx, orgID, logFilter{after: start, params: queries.EventLogPageParams{OrganizationID: orgID}},
			func(evs []logEventJSON) error {
				for _, e := range evs {
					for _, m := range toRealtime(e) {
						if allow(m.Type) {
							if err := writeSSE(w, extend, m); err != nil {
								return err
							}
						}
					}
				}
				return nil
			},
			func() error {
				if _, err := w.WriteString(":ping\n\n"); err != nil {
					return err
				}
				extend()
				if err := w.Flush(); err != nil {
					return err
				}
				return health()
			})
	})
}

var terminal = map[string]bool{"completed": true, "failed": true, "deadletter": true, "cancelled": true}

// jobEvents serves GET /events/jobs/{id}: the job's current status (old
// status ""), then each change, closing after a terminal status. A missing
// job gets one error event.
func (s *Server) jobEvents(c *fiber.Ctx) error {
	orgID := caller(c).OrgID
	var job *queries.Job
	if id, err := uuid.Parse(c.Params("id")); err == nil {
		j, err := s.q.JobGet(c.UserContext(), s.pool, queries.JobGetParams{ID: id, OrganizationID: orgID})
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if err == nil {
			job = &j
		}
	}
	start, err := s.liveFrom(c.UserContext(), orgID)
	if err != nil {
		return err
	}
	extend := s.streamWriteDeadline(c)
	return s.stream(c, func(ctx context.Context, w *bufio.Writer) {
		if openSSE(w, extend) != nil {
			return
		}
		now := ts(time.Now())
		if job == nil {
			_ = writeSSE(w, extend, realtimeEvent{Type: "error", Timestamp: now, Data: map[string]any{"message": "Job not found", "timestamp": now}})
			return
		}
		if writeSSE(w, extend, realtimeEvent{Type: "job.status", Timestamp: now, Data: map[string]any{
			"job_id": job.ID, "queue_name": job.QueueName, "old_status": "", "new_status": job.Status, "timestamp": now,
		}}) != nil || terminal[job.Status] {
			return
		}
		sid := job.ID.String()
		done := errors.New("terminal")
		s.followCtx(ctx, orgID, logFilter{after: start, params: queries.EventLogPageParams{OrganizationID: orgID, StreamID: &sid}},
			func(evs []logEventJSON) error {
				for _, e := range evs {
					for _, m := range toRealtime(e) {
						if m.Type != "job.status" {
							continue
						}
						if err := writeSSE(w, extend, m); err != nil {
							return err
						}
						if terminal[fmt.Sprint(m.Data["new_status"])] {
							return done
						}
					}
				}
				return nil
			},
			func() error {
				_, _ = w.WriteString(":ping\n\n")
				extend()
				return w.Flush()
			})
	})
}

// queueEvents serves GET /events/queues/{name}: queue.stats at once and
// whenever the queue's log advances, plus its job events.
func (s *Server) queueEvents(c *fiber.Ctx) error {
	name, err := queuePath(c)
	if err != nil {
		return err
	}
	orgID := caller(c).OrgID
	start, err := s.liveFrom(c.UserContext(), orgID)
	if err != nil {
		return err
	}
	extend := s.streamWriteDeadline(c)
	return s.stream(c, func(ctx context.Context, w *bufio.Writer) {
		if openSSE(w, extend) != nil {
			return
		}
		// One stats read per wake: wakes are already coalesced by the
		// realtime fan-out (a batch at a time), and a suppressed update
		// would have nothing to send it later.
		stats := func() error {
			n, err := s.jobCounts(ctx, orgID, &name)
			if err != nil {
				return err
			}
			now := ts(time.Now())
			return writeSSE(w, extend, realtimeEvent{Type: "queue.stats", Timestamp: now, Data: map[string]any{
				"queue_name": name, "pending": n.pending + n.scheduled, "processing": n.processing,
				"completed": n.completed, "failed": n.deadletter, "timestamp": now,
			}})
		}
		if stats() != nil {
			return
		}
		s.followCtx(ctx, orgID, logFilter{after: start, params: queries.EventLogPageParams{OrganizationID: orgID, QueueName: &name}},
			func(evs []logEventJSON) error {
				for _, e := range evs {
					for _, m := range toRealtime(e) {
						if err := writeSSE(w, extend, m); err != nil {
							return err
						}
					}
				}
				return stats()
			},
			func() error {
				_, _ = w.WriteString(":ping\n\n")
				extend()
				return w.Flush()
			})
	})
}
