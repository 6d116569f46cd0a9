package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spooled-go/spooled/events"
	"github.com/spooled-go/spooled/internal/app"
	"github.com/spooled-go/spooled/internal/config"
	"github.com/spooled-go/spooled/internal/testdb"
	"github.com/spooled-go/spooled/queries"
)

// These tests follow the log through the API while writers commit out of
// order (DESIGN.md, invariant 5): a transaction that started early but
// commits late must still reach every reader, after the events it precedes
// in (tx_id, position) order and after events with higher positions that
// were already delivered.

// lfSecret signs the servers' cursors (JWT_SECRET), so the tests can open
// them and check the (tx_id, position) inside against the database.
const lfSecret = "logfollow-test-secret-0123456789abcdef"

// lfStartApp starts a server on a fresh schema and returns it with a pool
// of the test's own on the same schema (for held transactions and checks).
func lfStartApp(t *testing.T) (*app.App, *pgxpool.Pool) {
	t.Helper()
	pool, dbURL := testdb.NewWithURL(t, testdb.Options{})
	a := wkStartApp(t, dbURL, nil, func(c *config.Config) {
		c.JWTSecret = lfSecret
		c.DatabaseMaxConnections = 16
		// The readers poll as one client; the per-client limit is not what
		// these tests are about.
		c.RateLimitRequestsPerSecond = 0
	})
	return a, pool
}

// lfOrg is an organization of a running server: a client holding its key,
// and its id (to check the log with SQL).
type lfOrg struct {
	api *wkAPI
	id  string
	key string
}

func lfNewOrg(t *testing.T, a *app.App) lfOrg {
	t.Helper()
	c := wkNewAPI(t, a, "")
	slug := "lf-" + wkRandHex(6)
	admin := &wkAPI{base: c.base, admin: wkAdminKey, hc: c.hc}
	out := admin.must(t, 201, "POST", "/api/v1/admin/organizations",
		map[string]any{"name": "Log " + slug, "slug": slug, "plan_tier": "enterprise"})
	org, _ := out["organization"].(map[string]any)
	k, _ := out["api_key"].(map[string]any)
	id, _ := org["id"].(string)
	key, _ := k["key"].(string)
	if id == "" || key == "" {
		t.Fatalf("organization without id or key: %v", out)
	}
	return lfOrg{api: c.as(key), id: id, key: key}
}

// lfEvent is an event as /events/log, /audit and the stream show it.
type lfEvent struct {
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

// String keeps failure messages short (no data).
func (e lfEvent) String() string {
	return fmt.Sprintf("{%d %s %s:%s %s}", e.Position, e.Type, e.StreamType, e.StreamID, e.Actor)
}

// lfRow is an event as the database holds it.
type lfRow struct {
	TxID, Position                    int64
	Type, StreamType, StreamID, Actor string
	Seq                               int32
	Queue                             string // "" when the event has none
}

const lfRowCols = `tx_id::text::bigint, position, event_type, stream_type, stream_id, actor, stream_seq, coalesce(queue_name, '')`

func lfScanRows(rows pgx.Rows) ([]lfRow, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (lfRow, error) {
		var x lfRow
		err := r.Scan(&x.TxID, &x.Position, &x.Type, &x.StreamType, &x.StreamID, &x.Actor, &x.Seq, &x.Queue)
		return x, err
	})
}

// lfOrgRows is every committed event of an organization, in (tx_id,
// position) order: what a reader that started at the beginning must have
// received, exactly.
func lfOrgRows(t *testing.T, pool *pgxpool.Pool, orgID string) []lfRow {
	t.Helper()
	rows, err := pool.Query(context.Background(),
		`SELECT `+lfRowCols+` FROM job_events WHERE organization_id = $1 ORDER BY tx_id, position`, orgID)
	if err != nil {
		t.Fatal(err)
	}
	out, err := lfScanRows(rows)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// lfSeq is what one subscriber received, checked event by event against
// the database: each is a committed event of the organization, delivered
// once, in strictly increasing (tx_id, position), with a cursor that opens
// to that pair.
type lfSeq struct {
	name  string
	orgID string
	pool  *pgxpool.Pool
	got   []lfEvent
	rows  []lfRow
	seen  map[int64]bool
	maxPo int64
	// regressions counts events delivered after an event with a higher
	// position: each one a reader paging by position alone would have
	// skipped.
	regressions int
}

func newLfSeq(name, orgID string, pool *pgxpool.Pool) *lfSeq {
	return &lfSeq{name: name, orgID: orgID, pool: pool, seen: map[int64]bool{}}
}

func (s *lfSeq) add(evs []lfEvent) error {
	if len(evs) == 0 {
		return nil
	}
	pos := make([]int64, len(evs))
	for i, e := range evs {
		pos[i] = e.Position
	}
	rows, err := s.pool.Query(context.Background(),
		`SELECT `+lfRowCols+` FROM job_events WHERE organization_id = $1 AND position = ANY($2)`, s.orgID, pos)
	if err != nil {
		return err
	}
	found, err := lfScanRows(rows)
	if err != nil {
		return err
	}
	byPos := make(map[int64]lfRow, len(found))
	for _, r := range found {
		byPos[r.Position] = r
	}
	for _, e := range evs {
		r, ok := byPos[e.Position]
		if !ok {
			return fmt.Errorf("%s: event %+v at position %d is no committed event of the organization", s.name, e, e.Position)
		}
		if s.seen[e.Position] {
			return fmt.Errorf("%s: position %d delivered twice", s.name, e.Position)
		}
		cur, err := events.DecodeCursor(e.Cursor, s.orgID, []byte(lfSecret))
		if err != nil || cur.TxID != r.TxID || cur.Position != r.Position {
			return fmt.Errorf("%s: cursor of position %d opens to %+v (%v), want tx %d position %d",
				s.name, e.Position, cur, err, r.TxID, r.Position)
		}
		if e.Type != r.Type || e.StreamType != r.StreamType || e.StreamID != r.StreamID || e.Actor != r.Actor ||
			e.Sequence != r.Seq || !lfSameQueue(e.QueueName, r.Queue) {
			return fmt.Errorf("%s: event %+v does not match the row %+v", s.name, e, r)
		}
		if n := len(s.rows); n > 0 {
			last := s.rows[n-1]
			if r.TxID < last.TxID || (r.TxID == last.TxID && r.Position <= last.Position) {
				return fmt.Errorf("%s: (tx %d, position %d) delivered after (tx %d, position %d): out of cursor order",
					s.name, r.TxID, r.Position, last.TxID, last.Position)
			}
		}
		if r.Position < s.maxPo {
			s.regressions++
		}
		s.maxPo = max(s.maxPo, r.Position)
		s.seen[e.Position] = true
		s.got = append(s.got, e)
		s.rows = append(s.rows, r)
	}
	return nil
}

// equal checks that the subscriber received exactly want, in its order.
func (s *lfSeq) equal(want []lfRow) error {
	if len(s.rows) != len(want) {
		return fmt.Errorf("%s received %d events, the organization has %d committed", s.name, len(s.rows), len(want))
	}
	for i := range want {
		if s.rows[i] != want[i] {
			return fmt.Errorf("%s: event %d is %+v, want %+v", s.name, i, s.rows[i], want[i])
		}
	}
	return nil
}

// prefixOf checks that what the subscriber received so far is the start of
// want: a skipped event shows at once, not as a count that never arrives.
func (s *lfSeq) prefixOf(want []lfRow) error {
	if len(s.rows) > len(want) {
		return fmt.Errorf("%s received %d events, the organization has %d committed", s.name, len(s.rows), len(want))
	}
	return (&lfSeq{name: s.name, rows: s.rows}).equal(want[:len(s.rows)])
}

func (s *lfSeq) has(streamID string) bool {
	for _, e := range s.got {
		if e.StreamID == streamID {
			return true
		}
	}
	return false
}

func lfSameQueue(a *string, b string) bool {
	if a == nil {
		return b == ""
	}
	return *a == b && b != ""
}

// lfPager reads GET /events/log page by page, each from the previous
// page's next_cursor.
type lfPager struct {
	c     *wkAPI
	limit int
	after string
}

func (p *lfPager) next() ([]lfEvent, error) {
	path := fmt.Sprintf("/api/v1/events/log?limit=%d", p.limit)
	if p.after != "" {
		path += "&after=" + url.QueryEscape(p.after)
	}
	st, raw, err := p.c.call("GET", path, nil)
	if err != nil {
		return nil, err
	}
	if st != 200 {
		return nil, fmt.Errorf("GET %s: %d %s", path, st, raw)
	}
	var pg struct {
		Events     []lfEvent `json:"events"`
		NextCursor string    `json:"next_cursor"`
	}
	if err := json.Unmarshal(raw, &pg); err != nil {
		return nil, fmt.Errorf("decode page %s: %w", raw, err)
	}
	if len(pg.Events) > p.limit {
		return nil, fmt.Errorf("page of %d events with limit %d", len(pg.Events), p.limit)
	}
	switch {
	case len(pg.Events) > 0 && pg.NextCursor != pg.Events[len(pg.Events)-1].Cursor:
		return nil, fmt.Errorf("next_cursor %s is not the last event's cursor %s", pg.NextCursor, pg.Events[len(pg.Events)-1].Cursor)
	case len(pg.Events) == 0 && p.after != "" && pg.NextCursor != p.after:
		return nil, fmt.Errorf("an empty page moved the cursor from %s to %s", p.after, pg.NextCursor)
	case pg.NextCursor == "":
		return nil, fmt.Errorf("page without next_cursor: %s", raw)
	}
	p.after = pg.NextCursor
	return pg.Events, nil
}

// lfPageUntil pages into seq until done holds, failing after limit.
func lfPageUntil(t *testing.T, p *lfPager, seq *lfSeq, limit time.Duration, what string, done func() bool) {
	t.Helper()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for i := 0; !done(); i++ {
		evs, err := p.next()
		if err != nil {
			t.Fatal(err)
		}
		if err := seq.add(evs); err != nil {
			t.Fatal(err)
		}
		if len(evs) > 0 {
			continue
		}
		select {
		case <-deadline.C:
			t.Fatalf("%s: not within %s (%d events received)", what, limit, len(seq.got))
		case <-tick.C:
		}
	}
}

// lfStream is an open /events/log/stream: a goroutine parses the
// Server-Sent Events into ch and closes it when the stream ends (err then
// says why).
type lfStream struct {
	ch     chan lfEvent
	done   chan struct{}
	err    error
	cancel context.CancelFunc
}

func lfOpenStream(base, path string, header map[string]string) *lfStream {
	ctx, cancel := context.WithCancel(context.Background())
	s := &lfStream{ch: make(chan lfEvent, 4096), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(s.done)
		defer close(s.ch)
		s.err = s.read(ctx, base+path, header)
	}()
	return s
}

func (s *lfStream) read(ctx context.Context, u string, header map[string]string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return err
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	// Headers must come at once, before the first event (see sseClient).
	tr := &http.Transport{ResponseHeaderTimeout: 5 * time.Second}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		raw, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("stream: status %d: %s", resp.StatusCode, raw)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		return fmt.Errorf("stream: Content-Type %q", ct)
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
		case line == "":
			if id == "" && typ == "" && data == "" {
				continue
			}
			var e lfEvent
			if err := json.Unmarshal([]byte(data), &e); err != nil {
				return fmt.Errorf("stream: data %q: %w", data, err)
			}
			if e.Cursor != id || e.Type != typ {
				return fmt.Errorf("stream: id %q and event %q do not match the data's cursor %q and type %q", id, typ, e.Cursor, e.Type)
			}
			select {
			case s.ch <- e:
			case <-ctx.Done():
				return ctx.Err()
			}
			id, typ, data = "", "", ""
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "id: "):
			id = line[len("id: "):]
		case strings.HasPrefix(line, "event: "):
			typ = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			if data != "" {
				return fmt.Errorf("stream: two data lines in one event")
			}
			data = line[len("data: "):]
		default:
			return fmt.Errorf("stream: unexpected line %q", line)
		}
	}
}

// close disconnects and waits for the reader to finish.
func (s *lfStream) close() {
	s.cancel()
	<-s.done
}

// take reads from the stream into seq until done holds, failing after
// limit or if the stream ends.
func (s *lfStream) take(t *testing.T, seq *lfSeq, limit time.Duration, what string, done func() bool) {
	t.Helper()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for !done() {
		select {
		case e, ok := <-s.ch:
			if !ok {
				t.Fatalf("%s: stream ended: %v", what, s.err)
			}
			if err := seq.add([]lfEvent{e}); err != nil {
				t.Fatal(err)
			}
		case <-deadline.C:
			t.Fatalf("%s: not within %s (%d events received)", what, limit, len(seq.got))
		}
	}
}

// lfEnqueueParams is a JobEnqueueBatch of ready jobs, as the enqueue
// command would build it, for a transaction the test holds open.
func lfEnqueueParams(orgID, queue string, ids []uuid.UUID) queries.JobEnqueueBatchParams {
	n := len(ids)
	p := queries.JobEnqueueBatchParams{
		DefaultMaxRetries: 3, DefaultTimeoutSecs: 300,
		Ids: ids, OrganizationIds: make([]string, n), Actors: make([]string, n),
		QueueNames: make([]string, n), Payloads: make([]json.RawMessage, n),
		Priorities: make([]int32, n), MaxRetries: make([]int32, n), TimeoutSeconds: make([]int32, n),
		ScheduledAts: make([]time.Time, n), ExpiresAts: make([]time.Time, n), Tags: make([]json.RawMessage, n),
		ParentJobIds: make([]uuid.UUID, n), CompletionWebhooks: make([]string, n), IdempotencyKeys: make([]string, n),
		ReplayOf: make([]uuid.UUID, n),
	}
	for i := range ids {
		p.OrganizationIds[i], p.Actors[i] = orgID, events.ActorSystem("logfollow_test")
		p.QueueNames[i] = queue
		p.Payloads[i] = json.RawMessage(fmt.Sprintf(`{"held":%d}`, i))
		p.MaxRetries[i], p.TimeoutSeconds[i] = -1, -1
		p.Tags[i] = json.RawMessage("null")
	}
	return p
}

func lfMintIDs(n int) ([]uuid.UUID, error) {
	ids := make([]uuid.UUID, n)
	for i := range ids {
		id, err := uuid.NewV7()
		if err != nil {
			return nil, err
		}
		ids[i] = id
	}
	return ids, nil
}

// lfHeldEnqueue appends job.enqueued events for n new jobs inside tx and
// returns the jobs and the positions their events took.
func lfHeldEnqueue(ctx context.Context, tx pgx.Tx, orgID, queue string, n int) ([]uuid.UUID, []int64, error) {
	ids, err := lfMintIDs(n)
	if err != nil {
		return nil, nil, err
	}
	rows, err := queries.New().JobEnqueueBatch(ctx, tx, lfEnqueueParams(orgID, queue, ids))
	if err != nil {
		return nil, nil, err
	}
	if len(rows) != n {
		return nil, nil, fmt.Errorf("enqueued %d jobs, want %d", len(rows), n)
	}
	r, err := tx.Query(ctx, `SELECT position FROM job_events WHERE tx_id = pg_current_xact_id() AND stream_id = ANY($1) ORDER BY position`,
		lfStrings(ids))
	if err != nil {
		return nil, nil, err
	}
	pos, err := pgx.CollectRows(r, pgx.RowTo[int64])
	if err != nil {
		return nil, nil, err
	}
	if len(pos) != n {
		return nil, nil, fmt.Errorf("the transaction sees %d of its %d events", len(pos), n)
	}
	return ids, pos, nil
}

func lfXID(ctx context.Context, tx pgx.Tx) (int64, error) {
	var x int64
	err := tx.QueryRow(ctx, `SELECT pg_current_xact_id()::text::bigint`).Scan(&x)
	return x, err
}

func lfStrings(ids []uuid.UUID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}

// lfHeld tracks the jobs of held transactions: a subscriber that receives
// one of their events before its transaction was told to commit has read
// uncommitted work.
type lfHeld struct {
	mu    sync.Mutex
	state map[string]string // job id -> open, committing, committed, rolled back
	bad   []string
}

func (h *lfHeld) set(ids []uuid.UUID, st string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, id := range ids {
		h.state[id.String()] = st
	}
}

// check is called by a subscriber right after it received evs.
func (h *lfHeld) check(who string, evs []lfEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range evs {
		if st, ok := h.state[e.StreamID]; ok && st != "committing" && st != "committed" {
			h.bad = append(h.bad, fmt.Sprintf("%s received %s of job %s while its transaction was %s", who, e.Type, e.StreamID, st))
		}
	}
}

func (h *lfHeld) rolledBack() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for id, st := range h.state {
		if st == "rolled back" {
			out = append(out, id)
		}
	}
	return out
}

// lfProgress counts the API writers' committed requests; held writers wait
// for it to move so that later transactions commit before theirs.
type lfProgress struct {
	mu      sync.Mutex
	n       int
	waiters []lfWaiter
}

type lfWaiter struct {
	n  int
	ch chan struct{}
}

func (p *lfProgress) add() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	kept := p.waiters[:0]
	for _, w := range p.waiters {
		if p.n >= w.n {
			close(w.ch)
		} else {
			kept = append(kept, w)
		}
	}
	p.waiters = kept
}

func (p *lfProgress) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

func (p *lfProgress) reached(n int) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	ch := make(chan struct{})
	if p.n >= n {
		close(ch)
	} else {
		p.waiters = append(p.waiters, lfWaiter{n, ch})
	}
	return ch
}

// lfAPIJob runs one job through the API: enqueue, claim, complete (three
// committed transactions, three events), counting each on progress.
func lfAPIJob(c *wkAPI, queue, worker string, progress *lfProgress) error {
	id, err := c.tryEnqueue(queue, nil)
	if err != nil {
		return err
	}
	progress.add()
	r := c.claim(queue, worker, 0, 1)
	if r.err != nil {
		return r.err
	}
	if len(r.jobs) != 1 || r.jobs[0].ID != id {
		return fmt.Errorf("claim on %s returned %v, want [%s]", queue, r.ids(), id)
	}
	progress.add()
	st, raw, err := c.call("POST", "/api/v1/jobs/"+id+"/complete",
		map[string]any{"worker_id": worker, "lease_id": r.jobs[0].LeaseID, "result": map[string]any{"ok": true}})
	if err != nil {
		return err
	}
	if st != 200 {
		return fmt.Errorf("complete %s: %d %s", id, st, raw)
	}
	progress.add()
	return nil
}

// lfPage is one non-empty page a pager goroutine received.
type lfPage struct {
	evs []lfEvent
	err error
}

// TestLogFollowGapFreeUnderOutOfOrderCommits: while eight writers commit
// events for one organization (four through the API, four in transactions
// the test holds open while the API writers commit later transactions, one
// of them rolled back), a reader paging GET /events/log with limit 7 and a
// reader following the SSE stream each receive every committed event
// exactly once, in strictly increasing (tx_id, position), nothing of a
// transaction before it commits, and nothing of the rolled-back one. Both
// end up with exactly the organization's events in the database.
func TestLogFollowGapFreeUnderOutOfOrderCommits(t *testing.T) {
	t.Parallel()
	a, pool := lfStartApp(t)
	o := lfNewOrg(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	const (
		apiWriters, apiJobs       = 4, 10
		heldWriters, heldRounds   = 4, 3
		heldJobs                  = 3
		apiSteps                  = apiWriters * apiJobs * 3
		rollbackWriter, rollbackR = 2, 1
	)
	held := &lfHeld{state: map[string]string{}}
	progress := &lfProgress{}

	// The subscribers start before any writer.
	pagerCtx, stopPager := context.WithCancel(ctx)
	defer stopPager()
	pager := &lfPager{c: o.api, limit: 7}
	pages := make(chan lfPage, 1024)
	pagerDone := make(chan struct{})
	go func() {
		defer close(pagerDone)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < 200000 && pagerCtx.Err() == nil; i++ {
			evs, err := pager.next()
			if err != nil {
				pages <- lfPage{err: err}
				return
			}
			held.check("pager", evs)
			if len(evs) > 0 {
				pages <- lfPage{evs: evs}
				continue
			}
			select {
			case <-pagerCtx.Done():
			case <-tick.C:
			}
		}
	}()
	stream := lfOpenStream("http://"+a.Addr(), "/api/v1/events/log/stream", map[string]string{"Authorization": "Bearer " + o.key})
	defer stream.close()
	// The stream's events are checked for uncommitted work as they arrive,
	// by a goroutine of their own (the test goroutine may be busy).
	sse := make(chan lfEvent, 4096)
	go func() {
		defer close(sse)
		for e := range stream.ch {
			held.check("stream", []lfEvent{e})
			sse <- e
		}
	}()

	errs := make(chan error, apiWriters+heldWriters)
	var wg sync.WaitGroup
	for w := range apiWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q, worker := fmt.Sprintf("api-%d", w), fmt.Sprintf("w-%d", w)
			for range apiJobs {
				if err := lfAPIJob(o.api, q, worker, progress); err != nil {
					errs <- fmt.Errorf("api writer %d: %w", w, err)
					return
				}
			}
		}()
	}
	wait := func(n int) error {
		select {
		case <-progress.reached(min(n, apiSteps)):
			return nil
		case <-ctx.Done():
			return fmt.Errorf("API writers stopped at %d of %d steps: %w", progress.count(), apiSteps, ctx.Err())
		}
	}
	for w := range heldWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := func() error {
				for r := range heldRounds {
					tx, err := pool.Begin(ctx)
					if err != nil {
						return err
					}
					defer func() { _ = tx.Rollback(context.Background()) }()
					// The transaction id is taken first; the events are
					// appended only after later transactions appended
					// (lower positions, higher tx ids) and committed.
					if _, err := lfXID(ctx, tx); err != nil {
						return err
					}
					if err := wait(progress.count() + 6); err != nil {
						return err
					}
					ids, err := lfMintIDs(heldJobs)
					if err != nil {
						return err
					}
					held.set(ids, "open")
					rows, err := queries.New().JobEnqueueBatch(ctx, tx, lfEnqueueParams(o.id, fmt.Sprintf("held-%d", w), ids))
					if err != nil {
						return err
					}
					if len(rows) != heldJobs {
						return fmt.Errorf("held enqueue inserted %d jobs", len(rows))
					}
					// Held open while more API transactions commit.
					if err := wait(progress.count() + 6); err != nil {
						return err
					}
					if w == rollbackWriter && r == rollbackR {
						held.set(ids, "rolled back")
						if err := tx.Rollback(ctx); err != nil {
							return err
						}
						continue
					}
					held.set(ids, "committing")
					if err := tx.Commit(ctx); err != nil {
						return err
					}
					held.set(ids, "committed")
				}
				return nil
			}()
			if err != nil {
				errs <- fmt.Errorf("held writer %d: %w", w, err)
			}
		}()
	}
	writersDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(writersDone)
	}()

	pagerSeq := newLfSeq("pager", o.id, pool)
	sseSeq := newLfSeq("stream", o.id, pool)
	var want []lfRow
	npages := 0
	deadline := time.NewTimer(2 * time.Minute)
	defer deadline.Stop()
	for want == nil || len(pagerSeq.got) < len(want) || len(sseSeq.got) < len(want) {
		if want != nil {
			for _, seq := range []*lfSeq{pagerSeq, sseSeq} {
				if err := seq.prefixOf(want); err != nil {
					t.Fatal(err)
				}
			}
		}
		select {
		case pg := <-pages:
			if pg.err != nil {
				t.Fatal(pg.err)
			}
			npages++
			if err := pagerSeq.add(pg.evs); err != nil {
				t.Fatal(err)
			}
		case e, ok := <-sse:
			if !ok {
				t.Fatalf("stream ended after %d events: %v", len(sseSeq.got), stream.err)
			}
			if err := sseSeq.add([]lfEvent{e}); err != nil {
				t.Fatal(err)
			}
		case <-writersDone:
			writersDone = nil
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			want = lfOrgRows(t, pool, o.id)
		case <-deadline.C:
			t.Fatalf("after 2m: pager has %d, stream %d of %d events (writers done: %v)",
				len(pagerSeq.got), len(sseSeq.got), len(want), want != nil)
		}
	}
	stopPager()
	<-pagerDone
	for len(pages) > 0 {
		pg := <-pages
		if pg.err == nil {
			t.Fatalf("pager received %d events beyond the organization's %d", len(pg.evs), len(want))
		}
	}
	if extra, err := pager.next(); err != nil || len(extra) != 0 {
		t.Fatalf("a page after the last event: %d events, %v", len(extra), err)
	}

	held.mu.Lock()
	bad := held.bad
	held.mu.Unlock()
	if len(bad) > 0 {
		t.Fatalf("events delivered before their transaction committed:\n%s", strings.Join(bad, "\n"))
	}
	if want[0].Type != events.OrganizationCreated {
		t.Fatalf("the log starts with %s, want %s", want[0].Type, events.OrganizationCreated)
	}
	wantEvents := 2 + apiSteps + (heldWriters*heldRounds-1)*heldJobs // organization, key, jobs
	if len(want) != wantEvents {
		t.Fatalf("the organization has %d events, want %d", len(want), wantEvents)
	}
	for _, seq := range []*lfSeq{pagerSeq, sseSeq} {
		if err := seq.equal(want); err != nil {
			t.Fatal(err)
		}
		// Held transactions appended after later ones had: their events
		// come first in (tx_id, position) order, and the lower positions
		// of the later transactions after them. A reader paging by
		// position alone would have skipped those.
		if seq.regressions == 0 {
			t.Fatalf("%s: no event was delivered after a higher position; the test did not commit out of order", seq.name)
		}
	}
	rolled := held.rolledBack()
	if len(rolled) != heldJobs {
		t.Fatalf("%d rolled-back jobs, want %d", len(rolled), heldJobs)
	}
	for _, id := range rolled {
		if pagerSeq.has(id) || sseSeq.has(id) {
			t.Fatalf("an event of rolled-back job %s was delivered", id)
		}
	}
	t.Logf("%d events, each delivered once in order to the pager (%d non-empty pages of at most 7) and the stream; %d and %d delivered after a higher position",
		len(want), npages, pagerSeq.regressions, sseSeq.regressions)
}

// TestLogLongOpenTransaction: the reason for (tx_id, position). E takes its
// transaction id, then A appends and stays open, then E appends (higher
// positions than A's) and commits, then the API commits job J. Readers get
// E's events while A is open, but neither A's (not committed) nor J's
// (committed, but behind A in cursor order). A rolled-back transaction R
// never shows. Once A commits, A's events arrive although events with
// higher positions (E's) were already delivered, and J's after them: on the
// page cursor and on the stream, which then holds exactly the log.
func TestLogLongOpenTransaction(t *testing.T) {
	t.Parallel()
	a, pool := lfStartApp(t)
	o := lfNewOrg(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Catch up with the organization's creation, then follow from there.
	pager := &lfPager{c: o.api, limit: 7}
	seq := newLfSeq("pager", o.id, pool)
	start := lfOrgRows(t, pool, o.id)
	lfPageUntil(t, pager, seq, 60*time.Second, "creation events", func() bool { return len(seq.got) >= len(start) })
	if err := seq.equal(start); err != nil {
		t.Fatal(err)
	}
	stream := lfOpenStream("http://"+a.Addr(), "/api/v1/events/log/stream?after="+url.QueryEscape(pager.after),
		map[string]string{"Authorization": "Bearer " + o.key})
	defer stream.close()
	sseSeq := newLfSeq("stream", o.id, pool)
	for _, r := range start {
		sseSeq.seen[r.Position] = true
	}
	sseSeq.rows = append(sseSeq.rows, start...)

	begin := func() pgx.Tx {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
		return tx
	}
	txE := begin()
	xE, err := lfXID(ctx, txE)
	if err != nil {
		t.Fatal(err)
	}
	txA := begin()
	aIDs, aPos, err := lfHeldEnqueue(ctx, txA, o.id, "long-open", 2)
	if err != nil {
		t.Fatal(err)
	}
	xA, err := lfXID(ctx, txA)
	if err != nil {
		t.Fatal(err)
	}
	eIDs, ePos, err := lfHeldEnqueue(ctx, txE, o.id, "early-id", 2)
	if err != nil {
		t.Fatal(err)
	}
	if !(xE < xA) || !(aPos[len(aPos)-1] < ePos[0]) {
		t.Fatalf("setup: E (tx %d, positions %v) must have the lower tx id and the higher positions than A (tx %d, positions %v)",
			xE, ePos, xA, aPos)
	}
	txR := begin()
	rIDs, rPos, err := lfHeldEnqueue(ctx, txR, o.id, "rolled-back", 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := txR.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := txE.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	j := o.api.enqueue(t, "after-long-open", nil)
	var xJ, pJ int64
	if err := pool.QueryRow(ctx, `SELECT tx_id::text::bigint, position FROM job_events WHERE stream_id = $1`, j).Scan(&xJ, &pJ); err != nil {
		t.Fatal(err)
	}
	if !(xJ > xA) || !(pJ > ePos[len(ePos)-1]) {
		t.Fatalf("setup: J (tx %d, position %d) must come after A (tx %d) and E (positions %v)", xJ, pJ, xA, ePos)
	}

	onlyE := func(s *lfSeq) {
		t.Helper()
		for _, id := range append(append(append([]uuid.UUID{}, aIDs...), rIDs...), uuid.MustParse(j)) {
			if s.has(id.String()) {
				t.Fatalf("%s received job %s while A was open: %+v", s.name, id, s.got)
			}
		}
		if got := len(s.rows) - len(start); got != len(eIDs) {
			t.Fatalf("%s received %d events while A was open, want E's %d", s.name, got, len(eIDs))
		}
	}
	// E is committed and below every running transaction once those older
	// than it (anywhere in the cluster) end.
	lfPageUntil(t, pager, seq, 60*time.Second, "E's events on the pager", func() bool { return len(seq.got) >= len(start)+len(eIDs) })
	onlyE(seq)
	// J is committed too, but its tx id is above A's: while A runs, the
	// reader must not pass it (it would never come back for A's events).
	for range 5 {
		evs, err := pager.next()
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 0 {
			t.Fatalf("the pager received %+v while A was open", evs)
		}
	}
	stream.take(t, sseSeq, 60*time.Second, "E's events on the stream", func() bool { return len(sseSeq.rows) >= len(start)+len(eIDs) })
	onlyE(sseSeq)
	select {
	case e := <-stream.ch:
		t.Fatalf("the stream sent %+v while A was open", e)
	default:
	}
	delivered := seq.maxPo

	if err := txA.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	total := len(start) + len(eIDs) + len(aIDs) + 1
	lfPageUntil(t, pager, seq, 60*time.Second, "A's and J's events on the pager", func() bool { return len(seq.got) >= total })
	stream.take(t, sseSeq, 60*time.Second, "A's and J's events on the stream", func() bool { return len(sseSeq.rows) >= total })

	want := lfOrgRows(t, pool, o.id)
	for _, s := range []*lfSeq{seq, sseSeq} {
		if err := s.equal(want); err != nil {
			t.Fatal(err)
		}
		tail := s.rows[len(start):]
		order := []int64{ePos[0], ePos[1], aPos[0], aPos[1], pJ}
		for i, p := range order {
			if tail[i].Position != p {
				t.Fatalf("%s: delivery order %+v, want positions %v (E, then A, then J)", s.name, tail, order)
			}
		}
		if s.regressions != len(aPos) {
			t.Fatalf("%s: %d events delivered after a higher position, want %d (A's)", s.name, s.regressions, len(aPos))
		}
	}
	// A's events arrived although higher positions had been delivered: a
	// reader resuming after position alone would have skipped them.
	for _, p := range aPos {
		if p >= delivered {
			t.Fatalf("A's position %d is not below the %d delivered before A committed", p, delivered)
		}
	}
	for _, p := range rPos {
		if seq.seen[p] || sseSeq.seen[p] {
			t.Fatalf("rolled-back position %d delivered", p)
		}
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM job_events WHERE stream_id = ANY($1)`, lfStrings(rIDs)).Scan(&n); err != nil || n != 0 {
		t.Fatalf("rolled-back events in the log: %d (%v)", n, err)
	}
	if extra, err := pager.next(); err != nil || len(extra) != 0 {
		t.Fatalf("a page after the last event: %+v, %v", extra, err)
	}
}

// TestLogStreamReconnect: a stream client reads part of the backlog,
// disconnects mid-stream, and reconnects from the last id it received
// (Last-Event-ID, or ?after= with the key in ?api_key=) while writers keep
// committing, before and during the second session. The two sessions
// together hold every event of the organization exactly once, in order.
func TestLogStreamReconnect(t *testing.T) {
	t.Parallel()
	a, pool := lfStartApp(t)
	for _, mode := range []string{"last-event-id", "after"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			o := lfNewOrg(t, a)
			base := "http://" + a.Addr()
			for range 12 {
				o.api.enqueue(t, "backlog", nil)
			}
			open := func(last string) *lfStream {
				path, hdr := "/api/v1/events/log/stream", map[string]string{}
				switch {
				case mode == "after":
					path += "?api_key=" + url.QueryEscape(o.key)
					if last != "" {
						path += "&after=" + url.QueryEscape(last)
					}
				default:
					hdr["Authorization"] = "Bearer " + o.key
					if last != "" {
						hdr["Last-Event-ID"] = last
					}
				}
				return lfOpenStream(base, path, hdr)
			}

			seq := newLfSeq(mode, o.id, pool)
			s1 := open("")
			s1.take(t, seq, 60*time.Second, "first session", func() bool { return len(seq.got) == 10 })
			s1.close()
			first := append([]lfRow(nil), seq.rows...)
			if err := (&lfSeq{name: "first session", rows: first}).equal(lfOrgRows(t, pool, o.id)[:10]); err != nil {
				t.Fatal(err)
			}

			// Writes while disconnected, and on during the second session.
			progress := &lfProgress{}
			errs := make(chan error, 1)
			go func() {
				defer close(errs)
				for i := range 8 {
					if err := lfAPIJob(o.api, "live", "w-live", progress); err != nil {
						errs <- fmt.Errorf("job %d: %w", i, err)
						return
					}
				}
			}()
			select {
			case <-progress.reached(9):
			case <-time.After(30 * time.Second):
				t.Fatal("writer did not get going")
			}
			s2 := open(seq.got[len(seq.got)-1].Cursor)
			defer s2.close()
			select {
			case err, ok := <-errs:
				if ok {
					t.Fatal(err)
				}
			case <-time.After(60 * time.Second):
				t.Fatal("writer did not finish")
			}
			want := lfOrgRows(t, pool, o.id)
			s2.take(t, seq, 60*time.Second, "second session", func() bool { return len(seq.got) >= len(want) })
			if err := seq.equal(want); err != nil {
				t.Fatal(err)
			}
			if wantN := 2 + 12 + 8*3; len(want) != wantN {
				t.Fatalf("the organization has %d events, want %d", len(want), wantN)
			}
			select {
			case e, ok := <-s2.ch:
				if ok {
					t.Fatalf("the second session sent %+v beyond the log", e)
				}
			default:
			}
		})
	}
}

// TestLogStreamOutlivesWriteTimeout: a live stream keeps following past the
// server's 60 s WriteTimeout (set once per response): an event committed 65
// s after the stream opened still arrives on it, and the stream has not
// ended. It used to be cut at 60 s, in the middle of its chunked body.
func TestLogStreamOutlivesWriteTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for more than a minute")
	}
	t.Parallel()
	a, pool := lfStartApp(t)
	o := lfNewOrg(t, a)
	seq := newLfSeq("stream", o.id, pool)
	s := lfOpenStream("http://"+a.Addr(), "/api/v1/events/log/stream", map[string]string{"Authorization": "Bearer " + o.key})
	defer s.close()
	opened := time.Now()
	start := lfOrgRows(t, pool, o.id)
	s.take(t, seq, 60*time.Second, "creation events", func() bool { return len(seq.got) >= len(start) })

	// One event on the way, so the stream is live throughout; then quiet
	// until the write timeout has long passed.
	o.api.enqueue(t, "early", nil)
	s.take(t, seq, 30*time.Second, "the early event", func() bool { return len(seq.got) >= len(start)+1 })
	quiet := time.NewTimer(time.Until(opened.Add(65 * time.Second)))
	defer quiet.Stop()
	select {
	case e, ok := <-s.ch:
		if !ok {
			t.Fatalf("the stream ended %s after it opened: %v", time.Since(opened).Round(time.Millisecond), s.err)
		}
		t.Fatalf("unexpected event %v", e)
	case <-quiet.C:
	}
	late := o.api.enqueue(t, "late", nil)
	s.take(t, seq, 30*time.Second, "the late event", func() bool { return len(seq.got) >= len(start)+2 })
	if got := seq.got[len(seq.got)-1]; got.StreamID != late {
		t.Fatalf("last event %v, want job %s", got, late)
	}
	if err := seq.equal(lfOrgRows(t, pool, o.id)); err != nil {
		t.Fatal(err)
	}
}
