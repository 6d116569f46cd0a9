package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spooled-go/spooled/events"
	"github.com/spooled-go/spooled/internal/clock"
	"github.com/spooled-go/spooled/internal/config"
)

// elEvent is an event as GET /events/log, GET /audit and the stream show it.
type elEvent struct {
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

func (e elEvent) String() string {
	return fmt.Sprintf("{%d %s %s:%s %s}", e.Position, e.Type, e.StreamType, e.StreamID, e.Actor)
}

// elRow is an event as the database holds it.
type elRow struct {
	Position, TxID                    int64
	Type, StreamType, StreamID, Actor string
	Seq                               int32
	Queue                             *string
	Data                              []byte
	OccurredAt                        time.Time
}

// elRows selects an organization's events, narrowed by extra (SQL on
// job_events, with $2... for args), in (tx_id, position) order: what the
// API must answer, written independently of the server's query.
func (h *harness) elRows(orgID, extra string, args ...any) []elRow {
	h.t.Helper()
	rows, err := h.pool.Query(context.Background(),
		`SELECT position, tx_id::text::bigint, event_type, stream_type, stream_id, actor, stream_seq, queue_name, data, occurred_at
		 FROM job_events WHERE organization_id = $1 `+extra+` ORDER BY tx_id, position`, append([]any{orgID}, args...)...)
	if err != nil {
		h.t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (elRow, error) {
		var x elRow
		err := r.Scan(&x.Position, &x.TxID, &x.Type, &x.StreamType, &x.StreamID, &x.Actor, &x.Seq, &x.Queue, &x.Data, &x.OccurredAt)
		return x, err
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

// elSettled waits until every event of the organizations is below the
// oldest running transaction of the cluster, so that readers see all of
// them (other tests' transactions may briefly hold readers back).
func (h *harness) elSettled(orgIDs ...string) {
	h.t.Helper()
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		var settled bool
		err := h.pool.QueryRow(context.Background(), `SELECT NOT EXISTS (SELECT 1 FROM job_events
			WHERE organization_id = ANY($1) AND tx_id >= pg_snapshot_xmin(pg_current_snapshot()))`, orgIDs).Scan(&settled)
		if err != nil {
			h.t.Fatal(err)
		}
		if settled {
			return
		}
		select {
		case <-deadline.C:
			h.t.Fatal("events still above the oldest running transaction after 60s")
		case <-tick.C:
		}
	}
}

// elKeyID is the id of the organization's first API key.
func (h *harness) elKeyID(orgID string) string {
	h.t.Helper()
	var id string
	if err := h.pool.QueryRow(context.Background(),
		`SELECT id::text FROM api_keys WHERE organization_id = $1 ORDER BY created_at LIMIT 1`, orgID).Scan(&id); err != nil {
		h.t.Fatal(err)
	}
	return id
}

// elPage reads one page and checks the body's shape: exactly events and
// next_cursor, next_cursor being the last event's cursor.
func (h *harness) elPage(path, key string) ([]elEvent, string) {
	h.t.Helper()
	res := h.do("GET", path, key, nil).expect(200)
	if len(res.json) != 2 {
		h.t.Fatalf("GET %s: body has keys %v, want events and next_cursor", path, res.json)
	}
	var pg struct {
		Events     []elEvent `json:"events"`
		NextCursor string    `json:"next_cursor"`
	}
	if err := json.Unmarshal(res.raw, &pg); err != nil {
		h.t.Fatalf("GET %s: %v: %s", path, err, res.raw)
	}
	if pg.Events == nil || pg.NextCursor == "" {
		h.t.Fatalf("GET %s: events or next_cursor missing: %s", path, res.raw)
	}
	if n := len(pg.Events); n > 0 && pg.NextCursor != pg.Events[n-1].Cursor {
		h.t.Fatalf("GET %s: next_cursor is not the last event's cursor", path)
	}
	return pg.Events, pg.NextCursor
}

// elAll pages through route (with query, without after/limit) from the
// start, limit events a page, until an empty page.
func (h *harness) elAll(route, query, key string, limit int) []elEvent {
	h.t.Helper()
	var all []elEvent
	after := ""
	for range 10000 {
		q := url.Values{}
		if query != "" {
			var err error
			if q, err = url.ParseQuery(query); err != nil {
				h.t.Fatal(err)
			}
		}
		q.Set("limit", fmt.Sprint(limit))
		if after != "" {
			q.Set("after", after)
		}
		evs, next := h.elPage(route+"?"+q.Encode(), key)
		if len(evs) > limit {
			h.t.Fatalf("%d events on a page with limit %d", len(evs), limit)
		}
		if len(evs) == 0 {
			if after != "" && next != after {
				h.t.Fatalf("an empty page moved the cursor")
			}
			return all
		}
		all = append(all, evs...)
		after = next
	}
	h.t.Fatal("paging did not end")
	return nil
}

// elSame checks that the API answered exactly want, in order, field by
// field, each cursor opening to the row's (tx_id, position) for orgID.
func (h *harness) elSame(what, orgID string, got []elEvent, want []elRow) {
	h.t.Helper()
	if len(got) != len(want) {
		h.t.Fatalf("%s: %d events %v, want %d", what, len(got), got, len(want))
	}
	for i, e := range got {
		r := want[i]
		cur, err := events.DecodeCursor(e.Cursor, orgID, []byte(h.cfg.JWTSecret))
		if err != nil || cur.TxID != r.TxID || cur.Position != r.Position {
			h.t.Fatalf("%s: event %d's cursor opens to %+v (%v), want tx %d position %d", what, i, cur, err, r.TxID, r.Position)
		}
		at, err := time.Parse(time.RFC3339Nano, e.OccurredAt)
		if err != nil || !at.Equal(r.OccurredAt) {
			h.t.Fatalf("%s: event %d occurred_at %s, want %s", what, i, e.OccurredAt, r.OccurredAt)
		}
		var gd, wd any
		if json.Unmarshal(e.Data, &gd) != nil || json.Unmarshal(r.Data, &wd) != nil || !reflect.DeepEqual(gd, wd) {
			h.t.Fatalf("%s: event %d data %s, want %s", what, i, e.Data, r.Data)
		}
		sameQueue := (e.QueueName == nil) == (r.Queue == nil) && (e.QueueName == nil || *e.QueueName == *r.Queue)
		if e.Position != r.Position || e.Type != r.Type || e.StreamType != r.StreamType || e.StreamID != r.StreamID ||
			e.Actor != r.Actor || e.Sequence != r.Seq || !sameQueue {
			h.t.Fatalf("%s: event %d is %v (queue %v), want %+v", what, i, e, e.QueueName, r)
		}
	}
}

// elRequest is a GET that gives up after 10 s: a stream the server
// wrongly opened instead of refusing fails the test instead of hanging it.
func (h *harness) elRequest(path, key string, headers map[string]string) response {
	h.t.Helper()
	req := httptest.NewRequestWithContext(context.Background(), "GET", path, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := h.srv.App().Test(req, 10000)
	if err != nil {
		h.t.Fatalf("GET %s: %v (a stream was opened instead of a refusal?)", path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := response{t: h.t, status: resp.StatusCode, header: resp.Header, raw: raw}
	_ = json.Unmarshal(raw, &out.json)
	return out
}

// elExactBody checks a response body against a JSON document.
func elExactBody(t *testing.T, r response, want string) {
	t.Helper()
	var got, exp any
	if err := json.Unmarshal(r.raw, &got); err != nil {
		t.Fatalf("body is not JSON: %s", r.raw)
	}
	if err := json.Unmarshal([]byte(want), &exp); err != nil {
		t.Fatalf("bad expectation %s: %v", want, err)
	}
	if !reflect.DeepEqual(got, exp) {
		t.Fatalf("body %s\nwant %s", r.raw, want)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q", ct)
	}
}

const elBadCursor = `{"code":"BAD_REQUEST","message":"Invalid cursor: use a cursor this API returned to this organization"}`

func elInvalid(field, code, msg string) string {
	return fmt.Sprintf(`{"code":"VALIDATION_ERROR","error":"Validation failed","message":%q,
		"details":[{"field":%q,"message":%q,"code":%q}]}`, field+": "+msg, field, msg, code)
}

// elFlip replaces the character at i with another base64url character, so
// the cursor still decodes but no longer verifies.
func elFlip(s string, i int) string {
	c := byte('A')
	if s[i] == 'A' {
		c = 'B'
	}
	return s[:i] + string(c) + s[i+1:]
}

// TestEventLogBadInput: every malformed read of the log, the audit route
// and the stream is a 400 with Spooled's exact error body, writes nothing,
// and never falls back to some other page: a malformed cursor, a cursor of
// another organization, a tampered or forged one, an unknown event type, a
// limit out of 1..1000 or not a number, a queue name with bad characters,
// a job id that is no UUID, audit times that are not RFC 3339.
func TestEventLogBadInput(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	orgA, keyA := h.org("bad-a")
	orgB, keyB := h.org("bad-b")
	h.enqueue(keyA, "q", nil)
	h.enqueue(keyA, "q", nil)
	h.enqueue(keyB, "q", nil)
	h.elSettled(orgA, orgB)

	// Cursors the server minted for A: the first event's, and the last.
	first, next := h.elPage("/api/v1/events/log?limit=1", keyA)
	if len(first) != 1 {
		t.Fatalf("first page %v", first)
	}
	cursorA := next
	rest, _ := h.elPage("/api/v1/events/log?after="+url.QueryEscape(cursorA), keyA)
	h.elSame("A after its first event", orgA, rest, h.elRows(orgA, "")[1:])
	if len(cursorA) != 44 {
		t.Fatalf("cursor %q is %d characters, the tampering below assumes 44", cursorA, len(cursorA))
	}

	type bad struct {
		name, query, body string
	}
	cursors := []bad{
		{"not base64", "after=" + url.QueryEscape("not a cursor!"), elBadCursor},
		{"short", "after=AQAAAA", elBadCursor},
		{"a number", "after=12345", elBadCursor},
		{"an old-style position", "after=" + fmt.Sprint(first[0].Position), elBadCursor},
		{"A's cursor used by B", "after=" + url.QueryEscape(cursorA), elBadCursor},
		{"forged with another key", "after=" + events.Cursor{TxID: 1, Position: 1}.Encode(orgB, []byte("guessed-key")), elBadCursor},
		{"extended", "after=" + url.QueryEscape(cursorA+"AAAA"), elBadCursor},
	}
	for _, i := range []int{0, 1, 5, 12, 22, 30, 43} {
		cursors = append(cursors, bad{fmt.Sprintf("tampered at %d", i), "after=" + url.QueryEscape(elFlip(cursorA, i)), elBadCursor})
	}
	filters := []bad{
		{"unknown type", "type=job.exploded", elInvalid("type", "unknown_event_type", "is not an event type this server writes")},
		{"type in capitals", "type=JOB.ENQUEUED", elInvalid("type", "unknown_event_type", "is not an event type this server writes")},
		{"limit 0", "limit=0", elInvalid("limit", "range", "must be a whole number between 1 and 1000")},
		{"limit 1001", "limit=1001", elInvalid("limit", "range", "must be a whole number between 1 and 1000")},
		{"limit x", "limit=x", elInvalid("limit", "range", "must be a whole number between 1 and 1000")},
		{"limit -1", "limit=-1", elInvalid("limit", "range", "must be a whole number between 1 and 1000")},
		{"limit 1.5", "limit=1.5", elInvalid("limit", "range", "must be a whole number between 1 and 1000")},
		{"limit 1e3", "limit=1e3", elInvalid("limit", "range", "must be a whole number between 1 and 1000")},
		{"queue with a space", "queue=" + url.QueryEscape("bad queue"), elInvalid("queue", "invalid_queue_name", "may contain only letters, digits, '-', '_' and '.'")},
		{"queue with a slash", "queue=" + url.QueryEscape("a/b"), elInvalid("queue", "invalid_queue_name", "may contain only letters, digits, '-', '_' and '.'")},
		{"queue with a quote", "queue=" + url.QueryEscape("q'; --"), elInvalid("queue", "invalid_queue_name", "may contain only letters, digits, '-', '_' and '.'")},
		{"queue starting with a dot", "queue=.q", elInvalid("queue", "invalid_queue_name", "must not start with '.' or '-'")},
		{"queue too long", "queue=" + strings.Repeat("q", 101), elInvalid("queue", "length", "must be 1 to 100 characters")},
		{"job_id not a uuid", "job_id=not-a-uuid", elInvalid("job_id", "uuid", "must be a job id")},
		{"job_id a number", "job_id=42", elInvalid("job_id", "uuid", "must be a job id")},
	}
	times := []bad{
		{"from a word", "from=yesterday", elInvalid("from", "timestamp", "must be an RFC 3339 timestamp")},
		{"from a date", "from=2024-01-01", elInvalid("from", "timestamp", "must be an RFC 3339 timestamp")},
		{"from without zone", "from=2024-01-01T00:00:00", elInvalid("from", "timestamp", "must be an RFC 3339 timestamp")},
		{"from month 13", "from=2024-13-01T00:00:00Z", elInvalid("from", "timestamp", "must be an RFC 3339 timestamp")},
		{"to a unix time", "to=1700000000", elInvalid("to", "timestamp", "must be an RFC 3339 timestamp")},
		{"to with a space", "to=" + url.QueryEscape("2024-01-01 00:00:00Z"), elInvalid("to", "timestamp", "must be an RFC 3339 timestamp")},
		{"actor too long", "actor=" + strings.Repeat("a", 301), elInvalid("actor", "length", "must be at most 300 bytes")},
		{"actor with NUL", "actor=a%00b", elInvalid("actor", "text", "must be UTF-8 text without the NUL character")},
		{"actor not UTF-8", "actor=%ff%fe", elInvalid("actor", "text", "must be UTF-8 text without the NUL character")},
	}
	check := func(route string, cases []bad, key string) {
		for _, c := range cases {
			t.Run(route+"/"+c.name, func(t *testing.T) {
				h := h.as(t)
				code := "VALIDATION_ERROR"
				if c.body == elBadCursor {
					code = "BAD_REQUEST"
				}
				before := h.counts()
				res := h.elRequest(route+"?"+c.query, key, nil).expectError(400, code)
				h.unchanged(before, route)
				elExactBody(t, res, c.body)
			})
		}
	}
	for _, route := range []string{"/api/v1/events/log", "/api/v1/audit", "/api/v1/events/log/stream"} {
		check(route, cursors, keyB)
		check(route, filters, keyA)
	}
	check("/api/v1/audit", times, keyA)

	// The stream also takes its cursor from Last-Event-ID.
	for _, c := range []string{"garbage", cursorA, elFlip(cursorA, 20)} {
		res := h.elRequest("/api/v1/events/log/stream", keyB, map[string]string{"Last-Event-ID": c}).expectError(400, "BAD_REQUEST")
		elExactBody(t, res, elBadCursor)
	}

	// Good input still works: A's own cursor for A, limits at the bounds,
	// the credential in the query on /events routes.
	for _, q := range []string{"after=" + url.QueryEscape(cursorA), "limit=1", "limit=1000", "type=job.enqueued&queue=q"} {
		h.do("GET", "/api/v1/events/log?"+q, keyA, nil).expect(200)
		h.do("GET", "/api/v1/audit?"+q, keyA, nil).expect(200)
	}
	h.do("GET", "/api/v1/audit?from=2024-01-01T00:00:00Z&to="+url.QueryEscape("2999-01-01T00:00:00.123456+02:00"), keyA, nil).expect(200)
	for _, cred := range []string{"api_key", "token"} {
		evs, _ := h.elPage("/api/v1/events/log?"+cred+"="+url.QueryEscape(keyA), "")
		h.elSame("credential in ?"+cred, orgA, evs, h.elRows(orgA, ""))
	}
}

// elStream is an open /events/log/stream on a real socket: a goroutine
// parses the events into ch and closes it when the stream ends.
type elStream struct {
	ch     chan elEvent
	done   chan struct{}
	err    error
	cancel context.CancelFunc
}

func elOpenStream(addr, key string) *elStream {
	ctx, cancel := context.WithCancel(context.Background())
	s := &elStream{ch: make(chan elEvent, 1024), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(s.done)
		defer close(s.ch)
		s.err = func() error {
			req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/api/v1/events/log/stream", nil)
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", "Bearer "+key)
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				raw, _ := io.ReadAll(resp.Body)
				return fmt.Errorf("status %d: %s", resp.StatusCode, raw)
			}
			br := bufio.NewReader(resp.Body)
			var id, typ, data string
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					return err
				}
				line = strings.TrimRight(line, "\r\n")
				switch {
				case line == "" && data != "":
					var e elEvent
					if err := json.Unmarshal([]byte(data), &e); err != nil {
						return err
					}
					if e.Cursor != id || e.Type != typ {
						return fmt.Errorf("id %q / event %q do not match the data %v", id, typ, e)
					}
					select {
					case s.ch <- e:
					case <-ctx.Done():
						return ctx.Err()
					}
					id, typ, data = "", "", ""
				case strings.HasPrefix(line, "id: "):
					id = line[4:]
				case strings.HasPrefix(line, "event: "):
					typ = line[7:]
				case strings.HasPrefix(line, "data: "):
					data = line[6:]
				}
			}
		}()
	}()
	return s
}

func (s *elStream) close() {
	s.cancel()
	<-s.done
}

// read collects events until there are n, failing after a minute.
func (s *elStream) read(t *testing.T, got []elEvent, n int) []elEvent {
	t.Helper()
	deadline := time.NewTimer(time.Minute)
	defer deadline.Stop()
	for len(got) < n {
		select {
		case e, ok := <-s.ch:
			if !ok {
				t.Fatalf("stream ended after %d events: %v", len(got), s.err)
			}
			got = append(got, e)
		case <-deadline.C:
			t.Fatalf("stream: %d of %d events after a minute: %v", len(got), n, got)
		}
	}
	return got
}

// TestEventLogTenantWall: two organizations write to queues of the same
// names with the same worker ids; each one's /events/log, /audit (with and
// without filters) and stream show exactly its own events as the database
// holds them, and another organization's job id, key or worker matches
// nothing.
func TestEventLogTenantWall(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *config.Config) { c.WorkerFallbackPollInterval = 20 * time.Millisecond })
	addr := h.listen()
	orgA, keyA := h.org("wall-a")
	orgB, keyB := h.org("wall-b")
	keyAID, keyBID := h.elKeyID(orgA), h.elKeyID(orgB)
	streamA := elOpenStream(addr, keyA)
	t.Cleanup(streamA.close)
	streamB := elOpenStream(addr, keyB)
	t.Cleanup(streamB.close)

	var jobsB []string
	for i := range 3 {
		for _, key := range []string{keyA, keyB} {
			id := h.enqueue(key, "shared", map[string]any{"payload": map[string]any{"i": i}})
			if key == keyB {
				jobsB = append(jobsB, id)
			}
		}
	}
	for _, key := range []string{keyA, keyB} {
		c := h.claim(key, "shared", "w-shared", 2)
		if len(c) != 2 {
			t.Fatalf("claimed %d", len(c))
		}
		h.do("POST", "/api/v1/jobs/"+c[0].ID+"/complete", key, map[string]any{"worker_id": "w-shared", "lease_id": c[0].Lease}).expect(200)
		h.do("POST", "/api/v1/jobs/"+c[1].ID+"/fail", key, map[string]any{"worker_id": "w-shared", "lease_id": c[1].Lease, "error": "boom"}).expect(200)
		h.do("POST", "/api/v1/queues/shared/pause", key, nil).expect(200)
	}
	h.newKey(keyB, "b-second", nil)
	h.elSettled(orgA, orgB)

	for _, o := range []struct{ id, key, other, otherKey string }{{orgA, keyA, orgB, keyBID}, {orgB, keyB, orgA, keyAID}} {
		all := h.elRows(o.id, "")
		h.elSame("log", o.id, h.elAll("/api/v1/events/log", "", o.key, 4), all)
		h.elSame("audit", o.id, h.elAll("/api/v1/audit", "", o.key, 1000), all)
		h.elSame("audit by queue", o.id, h.elAll("/api/v1/audit", "queue=shared", o.key, 3),
			h.elRows(o.id, "AND queue_name = $2", "shared"))
		h.elSame("audit by worker", o.id, h.elAll("/api/v1/audit", "actor=worker:w-shared", o.key, 3),
			h.elRows(o.id, "AND actor = $2", "worker:w-shared"))
		h.elSame("log by type", o.id, h.elAll("/api/v1/events/log", "type=job.enqueued", o.key, 2),
			h.elRows(o.id, "AND event_type = $2", "job.enqueued"))
		if n := len(h.elRows(o.other, "")); n == 0 {
			t.Fatal("the other organization has no events")
		}
		// The other organization's key and organization id match nothing.
		h.elSame("audit by the other's key", o.id, h.elAll("/api/v1/audit", "actor=api_key:"+o.otherKey, o.key, 10), nil)
	}
	for _, id := range jobsB {
		for _, route := range []string{"/api/v1/events/log", "/api/v1/audit"} {
			h.elSame("A asking for B's job", orgA, h.elAll(route, "job_id="+id, keyA, 10), nil)
		}
		h.elSame("B asking for its job", orgB, h.elAll("/api/v1/events/log", "job_id="+id, keyB, 10),
			h.elRows(orgB, "AND stream_id = $2", id))
	}

	// The streams: each exactly its organization's log; then B writes and A
	// writes once more: A's next event is its own.
	rowsA, rowsB := h.elRows(orgA, ""), h.elRows(orgB, "")
	gotA := streamA.read(t, nil, len(rowsA))
	h.elSame("A's stream", orgA, gotA, rowsA)
	gotB := streamB.read(t, nil, len(rowsB))
	h.elSame("B's stream", orgB, gotB, rowsB)
	h.enqueue(keyB, "shared", nil)
	h.enqueue(keyB, "other", nil)
	h.elSettled(orgB)
	gotB = streamB.read(t, gotB, len(rowsB)+2)
	sentinel := h.enqueue(keyA, "shared", nil)
	h.elSettled(orgA)
	gotA = streamA.read(t, gotA, len(rowsA)+1)
	if last := gotA[len(gotA)-1]; last.StreamID != sentinel {
		t.Fatalf("A's stream sent %v after its log, want its job %s", last, sentinel)
	}
	h.elSame("A's stream at the end", orgA, gotA, h.elRows(orgA, ""))
	h.elSame("B's stream at the end", orgB, gotB, h.elRows(orgB, ""))
}

// TestAuditFilters: with the clock pinned, events happen at known times by
// known actors (two API keys, two workers, the lease reaper) on two queues,
// in two organizations. GET /audit by actor, type, queue, time window
// (from inclusive, to exclusive) and their combinations answers exactly
// what SQL selects, whatever the page size.
func TestAuditFilters(t *testing.T) {
	t.Parallel()
	clk := clock.NewPinned(time.Now().Add(-time.Hour))
	h := newHarnessClock(t, clk)
	ctx := context.Background()
	orgA, keyA := h.org("audit-a")
	orgB, keyB := h.org("audit-b")
	key1 := "api_key:" + h.elKeyID(orgA)
	key2ID, key2 := h.newKey(keyA, "second", nil)
	key2Actor := "api_key:" + key2ID

	// t0: the first key enqueues (B does the same).
	t0 := *clk.Now()
	for _, key := range []string{keyA, keyB} {
		h.enqueue(key, "mail", nil)
		h.enqueue(key, "mail", nil)
		h.enqueue(key, "sms", nil)
	}
	h.enqueue(keyA, "push", nil)
	// t1: worker w-1 claims both mail jobs, completes one and fails the
	// other; the second key enqueues on sms.
	clk.Advance(time.Minute)
	t1 := *clk.Now()
	c := h.claim(keyA, "mail", "w-1", 2)
	if len(c) != 2 {
		t.Fatalf("claimed %d", len(c))
	}
	h.do("POST", "/api/v1/jobs/"+c[0].ID+"/complete", keyA, map[string]any{"worker_id": "w-1", "lease_id": c[0].Lease}).expect(200)
	h.do("POST", "/api/v1/jobs/"+c[1].ID+"/fail", keyA, map[string]any{"worker_id": "w-1", "lease_id": c[1].Lease, "error": "boom"}).expect(200)
	h.enqueue(key2, "sms", nil)
	// t2: worker w-2 claims the sms jobs with a short lease (in B too).
	clk.Advance(time.Minute)
	t2 := *clk.Now()
	for _, key := range []string{keyA, keyB} {
		res := h.do("POST", "/api/v1/jobs/claim", key,
			map[string]any{"queue_name": "sms", "worker_id": "w-2", "limit": 5, "lease_duration_secs": 5}).expect(200)
		if n := len(res.json["jobs"].([]any)); n == 0 {
			t.Fatal("nothing claimed on sms")
		}
	}
	// t3: the leases have expired; the reaper takes them back.
	clk.Advance(10 * time.Second)
	t3 := *clk.Now()
	if exp, err := h.cmd.ExpireLeases(ctx, 100); err != nil || len(exp) != 3 {
		t.Fatalf("expired %d leases (%v), want 3", len(exp), err)
	}
	// t4: the first key pauses mail; worker w-10 (whose name starts like
	// w-1's) claims on push.
	clk.Advance(time.Minute)
	h.do("POST", "/api/v1/queues/mail/pause", keyA, nil).expect(200)
	if c := h.claim(keyA, "push", "w-10", 1); len(c) != 1 {
		t.Fatalf("w-10 claimed %d", len(c))
	}
	h.elSettled(orgA, orgB)

	rfc := func(t time.Time) string { return t.Format(time.RFC3339Nano) }
	cases := []struct {
		name, query, where string
		args               []any
	}{
		{"first key", "actor=" + key1, "AND actor = $2", []any{key1}},
		{"second key", "actor=" + key2Actor, "AND actor = $2", []any{key2Actor}},
		{"worker w-1", "actor=worker:w-1", "AND actor = $2", []any{"worker:w-1"}},
		{"worker w-2", "actor=worker:w-2", "AND actor = $2", []any{"worker:w-2"}},
		{"worker w-10", "actor=worker:w-10", "AND actor = $2", []any{"worker:w-10"}},
		{"lease reaper", "actor=system:lease_reaper", "AND actor = $2", []any{"system:lease_reaper"}},
		{"enqueued", "type=job.enqueued", "AND event_type = $2", []any{"job.enqueued"}},
		{"claimed", "type=job.claimed", "AND event_type = $2", []any{"job.claimed"}},
		{"lease expired", "type=job.lease_expired", "AND event_type = $2", []any{"job.lease_expired"}},
		{"paused", "type=queue.paused", "AND event_type = $2", []any{"queue.paused"}},
		{"queue mail", "queue=mail", "AND queue_name = $2", []any{"mail"}},
		{"queue sms", "queue=sms", "AND queue_name = $2", []any{"sms"}},
		{"from t1", "from=" + rfc(t1), "AND occurred_at >= $2", []any{t1}},
		{"to t1", "to=" + rfc(t1), "AND occurred_at < $2", []any{t1}},
		{"t1 to t2", "from=" + rfc(t1) + "&to=" + rfc(t2), "AND occurred_at >= $2 AND occurred_at < $3", []any{t1, t2}},
		{"t2 to t3 in +02:00", "from=" + rfc(t2.In(time.FixedZone("", 2*3600))) + "&to=" + rfc(t3.In(time.FixedZone("", 2*3600))),
			"AND occurred_at >= $2 AND occurred_at < $3", []any{t2, t3}},
		{"from t0 to t0", "from=" + rfc(t0) + "&to=" + rfc(t0), "AND false", nil},
		{"w-2's sms claims in [t2, t3)", "actor=worker:w-2&type=job.claimed&queue=sms&from=" + rfc(t2) + "&to=" + rfc(t3),
			"AND actor = 'worker:w-2' AND event_type = 'job.claimed' AND queue_name = 'sms' AND occurred_at >= $2 AND occurred_at < $3", []any{t2, t3}},
		{"reaper on mail", "actor=system:lease_reaper&queue=mail", "AND false", nil},
		{"nobody", "actor=api_key:00000000-0000-0000-0000-000000000000", "AND false", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := h.as(t)
			want := h.elRows(orgA, c.where, c.args...)
			if c.where != "AND false" && len(want) == 0 {
				t.Fatalf("the workload made no events for %s", c.query)
			}
			q := url.Values{}
			for _, kv := range strings.Split(c.query, "&") {
				k, v, _ := strings.Cut(kv, "=")
				q.Set(k, v)
			}
			for _, limit := range []int{1, 2, 1000} {
				h.elSame(fmt.Sprintf("audit %s, limit %d", c.query, limit), orgA, h.elAll("/api/v1/audit", q.Encode(), keyA, limit), want)
			}
		})
	}

	// The window bounds in detail: from includes events at that instant, to
	// excludes them.
	atT1 := h.elRows(orgA, "AND occurred_at = $2", t1)
	if len(atT1) == 0 {
		t.Fatal("no events at t1")
	}
	in := h.elAll("/api/v1/audit", url.Values{"from": {rfc(t1)}, "to": {rfc(t1.Add(time.Microsecond))}}.Encode(), keyA, 100)
	h.elSame("audit [t1, t1+1µs)", orgA, in, atT1)
	out := h.elAll("/api/v1/audit", url.Values{"from": {rfc(t1.Add(-time.Minute))}, "to": {rfc(t1)}}.Encode(), keyA, 100)
	for _, e := range out {
		if at, _ := time.Parse(time.RFC3339Nano, e.OccurredAt); !at.Before(t1) {
			t.Fatalf("audit to=t1 returned %v at %s", e, e.OccurredAt)
		}
	}
	// The reaper's events are those of A's leases only, each by the reaper.
	reaped := h.elAll("/api/v1/audit", "actor=system:lease_reaper", keyA, 100)
	for _, e := range reaped {
		if e.QueueName == nil || *e.QueueName != "sms" {
			t.Fatalf("reaper event %v not on sms", e)
		}
	}
}
