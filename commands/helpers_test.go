package commands_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/events"
	"github.com/spooled-go/spooled/internal/clock"
	"github.com/spooled-go/spooled/internal/testdb"
	"github.com/spooled-go/spooled/queries"
	"github.com/spooled-go/spooled/workers"
)

// env is one test's database, a service on a pinned clock, and a tenant.
type env struct {
	t     testing.TB
	ctx   context.Context
	pool  *pgxpool.Pool
	clk   *clock.Pinned
	svc   *commands.Service
	actor commands.Actor
}

var testDefaults = commands.Defaults{
	MaxRetries: 3, TimeoutSecs: 300, LeaseSecs: 30, MaxPayload: 1 << 20,
	KeyPrefix: "sk_test_", Registration: "open",
}

func newEnv(t testing.TB) *env { return newEnvWith(t, testdb.Options{}) }

// newWaitingEnv is an env on the real clock whose claims can wait on a
// wake-up hub, with a fallback poll of a minute: a waiting claim that
// slept through a job would not get it within a test's waits.
func newWaitingEnv(t *testing.T, slug string, o testdb.Options, opts ...commands.Option) (*env, *workers.Wakeups) {
	t.Helper()
	pool := testdb.NewWith(t, o)
	hub := workers.NewWakeups(nil)
	svc := commands.New(pool, nil, hub, testDefaults, append([]commands.Option{commands.WithWaiter(hub, time.Minute)}, opts...)...)
	e := &env{t: t, ctx: t.Context(), pool: pool, svc: svc}
	e.actor = e.newOrg(slug)
	return e, hub
}

// claimAnswer is what a waiting claim returned.
type claimAnswer struct {
	jobs []queries.Job
	err  error
}

// claimWait starts a long-polling claim of the env's tenant and returns
// where its answer will arrive.
func (e *env) claimWait(queue, worker string, d time.Duration) <-chan claimAnswer {
	out := make(chan claimAnswer, 1)
	go func() {
		jobs, err := e.svc.ClaimWait(e.ctx, e.actor.OrgID, commands.ClaimRequest{QueueName: queue, WorkerID: worker}, d)
		out <- claimAnswer{jobs, err}
	}()
	return out
}

func newEnvWith(t testing.TB, o testdb.Options) *env {
	t.Helper()
	pool := testdb.NewWith(t, o)
	// Pinned near the real present: log partitions exist from last month on,
	// and JobHistory prunes by the (wall-clock) time in the UUIDv7 job id.
	clk := clock.NewPinned(time.Now())
	svc := commands.New(pool, clk, nil, testDefaults)
	e := &env{t: t, ctx: context.Background(), pool: pool, clk: clk, svc: svc}
	e.actor = e.newOrg("acme")
	return e
}

// newOrg creates a tenant and returns an actor for its initial key.
func (e *env) newOrg(slug string) commands.Actor {
	e.t.Helper()
	org, err := e.svc.CreateOrganization(e.ctx, commands.NewOrganization{Name: "Org " + slug, Slug: slug})
	if err != nil {
		e.t.Fatalf("create organization %s: %v", slug, err)
	}
	return commands.Actor{OrgID: org.Organization.ID, Name: events.ActorAPIKey(org.Key.Key.ID)}
}

func ptr[T any](v T) *T { return &v }

func payload(i int) json.RawMessage { return json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)) }

// enqueue creates one job and fails the test unless it was created.
func (e *env) enqueue(a commands.Actor, j commands.NewJob) uuid.UUID {
	e.t.Helper()
	if j.Payload == nil {
		j.Payload = payload(0)
	}
	res, err := e.svc.Enqueue(e.ctx, a, []commands.NewJob{j})
	if err != nil {
		e.t.Fatalf("enqueue: %v", err)
	}
	if len(res) != 1 || !res[0].Created {
		e.t.Fatalf("enqueue: %+v", res)
	}
	return res[0].ID
}

// enqueueBulk creates n jobs on queue in one bulk call, their payloads
// numbered from first.
func (e *env) enqueueBulk(queue string, first, n int) {
	e.t.Helper()
	batch := make([]commands.NewJob, n)
	for i := range batch {
		batch[i] = commands.NewJob{QueueName: queue, Payload: payload(first + i)}
	}
	if _, err := e.svc.EnqueueBulk(e.ctx, e.actor, batch); err != nil {
		e.t.Fatalf("bulk enqueue on %s: %v", queue, err)
	}
}

// claim claims from a queue of the env's tenant.
func (e *env) claim(queue, worker string, limit int) []queries.Job {
	e.t.Helper()
	jobs, err := e.svc.Claim(e.ctx, e.actor.OrgID, commands.ClaimRequest{
		QueueName: queue, WorkerID: worker, Limit: limit, LeaseSecs: 30,
	})
	if err != nil {
		e.t.Fatalf("claim %s as %s: %v", queue, worker, err)
	}
	return jobs
}

// claimOne claims exactly one job and fails the test otherwise.
func (e *env) claimOne(queue, worker string) queries.Job {
	e.t.Helper()
	jobs := e.claim(queue, worker, 1)
	if len(jobs) != 1 {
		e.t.Fatalf("claim %s as %s: got %d jobs, want 1", queue, worker, len(jobs))
	}
	return jobs[0]
}

func (e *env) get(orgID string, id uuid.UUID) queries.Job {
	e.t.Helper()
	j, err := queries.New().JobGet(e.ctx, e.pool, queries.JobGetParams{ID: id, OrganizationID: orgID})
	if err != nil {
		e.t.Fatalf("get job %s: %v", id, err)
	}
	return j
}

func (e *env) history(orgID string, id uuid.UUID) []events.Event {
	e.t.Helper()
	h, err := events.JobHistory(e.ctx, e.pool, orgID, id)
	if err != nil {
		e.t.Fatalf("history %s: %v", id, err)
	}
	for i, ev := range h {
		if int(ev.Sequence) != i+1 {
			e.t.Fatalf("history %s: event %d (%s) has sequence %d, want %d", id, i, ev.Type, ev.Sequence, i+1)
		}
	}
	return h
}

func types(h []events.Event) []string {
	out := make([]string, len(h))
	for i, ev := range h {
		out[i] = ev.Type
	}
	return out
}

// wantHistory checks a job's event types, in order (history has already
// checked that the sequences run 1..n).
func (e *env) wantHistory(orgID string, id uuid.UUID, want ...string) []events.Event {
	e.t.Helper()
	h := e.history(orgID, id)
	if got := types(h); !slices.Equal(got, want) {
		e.t.Fatalf("history of %s:\n got %v\nwant %v", id, got, want)
	}
	return h
}

// scalar runs a count-style query (test-only SQL).
func (e *env) scalar(sql string, args ...any) int64 {
	e.t.Helper()
	var n int64
	if err := e.pool.QueryRow(e.ctx, sql, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// footprint counts everything a tenant has written: read model rows, hot
// table rows and job events.
type footprint struct{ jobs, pending, processing, events, versionSum int64 }

func (e *env) footprint(orgID string) footprint {
	e.t.Helper()
	return footprint{
		jobs:       e.scalar(`SELECT count(*) FROM jobs WHERE organization_id = $1`, orgID),
		pending:    e.scalar(`SELECT count(*) FROM pending_jobs WHERE organization_id = $1`, orgID),
		processing: e.scalar(`SELECT count(*) FROM processing_jobs WHERE organization_id = $1`, orgID),
		events:     e.scalar(`SELECT count(*) FROM job_events WHERE organization_id = $1 AND stream_type = 'job'`, orgID),
		versionSum: e.scalar(`SELECT coalesce(sum(version), 0) FROM jobs WHERE organization_id = $1`, orgID),
	}
}

func decode[T any](t testing.TB, ev events.Event) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(ev.Data, &v); err != nil {
		t.Fatalf("decode %s data %s: %v", ev.Type, ev.Data, err)
	}
	return v
}

func asLeaseError(t *testing.T, what string, err error) *commands.LeaseError {
	t.Helper()
	var le *commands.LeaseError
	if !errors.As(err, &le) {
		t.Fatalf("%s: got %v (%T), want *commands.LeaseError", what, err, err)
	}
	return le
}

func asValidationError(t *testing.T, what string, err error) *commands.ValidationError {
	t.Helper()
	var ve *commands.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("%s: got %v (%T), want *commands.ValidationError", what, err, err)
	}
	return ve
}

func wantIs(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got %v, want %v", what, err, target)
	}
}

func wantNoRows(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, pgx.ErrNoRows) {
		t.Fatalf("%s: got %v, want pgx.ErrNoRows", what, err)
	}
}

// eventually polls cond until it holds or limit passes, and reports whether
// it held: for state that settles asynchronously.
func eventually(limit time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(limit); ; time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}
