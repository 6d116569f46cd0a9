package commands_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/events"
	"github.com/spooled-go/spooled/queries"
)

func ref(j queries.Job) commands.LeaseRef {
	return commands.LeaseRef{JobID: j.ID.String(), WorkerID: *j.AssignedWorkerID, LeaseID: j.LeaseID}
}

// deadLetter enqueues a job in queue (which must hold no ready job) and
// dead-letters it with a non-retryable failure.
func (e *env) deadLetter(a commands.Actor, queue string) uuid.UUID {
	e.t.Helper()
	id := e.enqueue(a, commands.NewJob{QueueName: queue, MaxRetries: ptr(3)})
	jobs, err := e.svc.Claim(e.ctx, a.OrgID, commands.ClaimRequest{QueueName: queue, WorkerID: "w", Limit: 1})
	if err != nil || len(jobs) != 1 || jobs[0].ID != id {
		e.t.Fatalf("claim for dead-lettering: %v %v", jobs, err)
	}
	out, err := e.svc.Fail(e.ctx, a.OrgID, ref(jobs[0]), "fatal", false)
	if err != nil || out.WillRetry || out.RetryAt != nil {
		e.t.Fatalf("fail without retry: %+v %v", out, err)
	}
	if j := e.get(a.OrgID, id); j.Status != "deadletter" || j.RetryCount != 0 {
		e.t.Fatalf("fail without retry left %s with retry_count %d", j.Status, j.RetryCount)
	}
	// Retries were left: the history says the worker declined them.
	h, err := events.JobHistory(e.ctx, e.pool, a.OrgID, id)
	if err != nil {
		e.t.Fatal(err)
	}
	if d := decode[events.DeadLettered](e.t, h[len(h)-1]); d.Reason != "retry_declined" {
		e.t.Fatalf("dead-letter reason %q, want retry_declined", d.Reason)
	}
	e.clk.Advance(time.Second) // distinct created_at for "oldest first"
	return id
}

// TestBackoffAndDeadLetter: each failure waits min(2^retry_count, 60)
// minutes; the job is invisible to claims until then; the last failure
// dead-letters it; a manual retry brings it back as one more attempt.
func TestBackoffAndDeadLetter(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.actor.OrgID
	const maxRetries = 8
	id := e.enqueue(e.actor, commands.NewJob{QueueName: "q", MaxRetries: ptr(maxRetries)})
	j := e.claimOne("q", "w")
	want := []string{events.JobEnqueued, events.JobClaimed}
	for i := 0; i < maxRetries; i++ {
		now := *e.clk.Now()
		backoff := time.Duration(min(1<<i, 60)) * time.Minute
		out, err := e.svc.Fail(e.ctx, org, ref(j), fmt.Sprintf("boom %d", i), true)
		if err != nil {
			t.Fatalf("fail %d: %v", i, err)
		}
		if !out.WillRetry || out.RetryCount != i+1 || out.RetryAt == nil || !out.RetryAt.Equal(now.Add(backoff)) {
			t.Fatalf("fail %d: %+v (retry at %v), want retry %d at +%s", i, out, out.RetryAt, i+1, backoff)
		}
		got := e.get(org, id)
		if got.Status != "pending" || int(got.RetryCount) != i+1 || got.ScheduledAt == nil ||
			!got.ScheduledAt.Equal(now.Add(backoff)) || got.LastError == nil || *got.LastError != fmt.Sprintf("boom %d", i) ||
			got.LeaseID != nil || got.LeaseExpiresAt != nil {
			t.Fatalf("after fail %d: %+v", i, got)
		}
		e.clk.Advance(backoff - time.Second)
		if early := e.claim("q", "w", 10); len(early) != 0 {
			t.Fatalf("claimed %s before its backoff of %s ended", early[0].ID, backoff)
		}
		e.clk.Advance(time.Second)
		j = e.claimOne("q", "w")
		if j.ID != id || int(j.RetryCount) != i+1 {
			t.Fatalf("claim after backoff %d: %+v", i, j)
		}
		want = append(want, events.JobFailed, events.JobRetryScheduled, events.JobClaimed)
	}
	out, err := e.svc.Fail(e.ctx, org, ref(j), "final", true)
	if err != nil || out.WillRetry || out.RetryCount != maxRetries || out.RetryAt != nil {
		t.Fatalf("last fail: %+v %v", out, err)
	}
	got := e.get(org, id)
	if got.Status != "deadletter" || got.RetryCount != maxRetries || *got.LastError != "final" || got.LeaseID != nil {
		t.Fatalf("after last fail: %+v", got)
	}
	if f := e.footprint(org); f.pending != 0 || f.processing != 0 {
		t.Fatalf("dead letter still in a hot table: %+v", f)
	}
	e.clk.Advance(24 * time.Hour)
	if got := e.claim("q", "w", 10); len(got) != 0 {
		t.Fatalf("claimed a dead letter: %+v", got)
	}
	want = append(want, events.JobFailed, events.JobDeadLettered)
	h := e.wantHistory(org, id, want...)
	for i := 0; i < maxRetries; i++ {
		rs := decode[events.RetryScheduled](t, h[2+3*i+1])
		if int(rs.RetryCount) != i+1 {
			t.Fatalf("retry_scheduled %d: %+v", i, rs)
		}
		if f := decode[events.Failed](t, h[2+3*i]); f.Error != fmt.Sprintf("boom %d", i) || f.WorkerID != "w" {
			t.Fatalf("failed %d: %+v", i, f)
		}
	}
	if d := decode[events.DeadLettered](t, h[len(h)-1]); d.RetryCount != maxRetries || d.Reason != "retries_exhausted" {
		t.Fatalf("deadlettered: %+v", d)
	}

	// A pending job cannot be retried by hand.
	pending := e.enqueue(e.actor, commands.NewJob{QueueName: "other"})
	_, err = e.svc.Retry(e.ctx, e.actor, pending.String())
	wantIs(t, "retry a pending job", err, commands.ErrConflict)

	// Manual retry: one more attempt, ready at once.
	r, err := e.svc.Retry(e.ctx, e.actor, id.String())
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != id || r.Status != "pending" || r.RetryCount != maxRetries+1 || r.LastError != nil {
		t.Fatalf("manual retry: %+v", r)
	}
	_, err = e.svc.Retry(e.ctx, e.actor, id.String())
	wantIs(t, "retry twice", err, commands.ErrConflict)
	j = e.claimOne("q", "w")
	if j.ID != id {
		t.Fatalf("claimed %s after manual retry", j.ID)
	}
	// Its retries are spent: the next failure dead-letters again.
	if out, err := e.svc.Fail(e.ctx, org, ref(j), "again", true); err != nil || out.WillRetry {
		t.Fatalf("fail after manual retry: %+v %v", out, err)
	}
	h = e.wantHistory(org, id, append(want, events.JobRetried, events.JobClaimed, events.JobFailed, events.JobDeadLettered)...)
	if rt := decode[events.Retried](t, h[len(want)]); rt.Source != "manual" || rt.RetryCount != maxRetries+1 {
		t.Fatalf("retried: %+v", rt)
	}
}

// TestBackoffCap: the wait stops doubling at 60 minutes.
func TestBackoffCap(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.enqueue(e.actor, commands.NewJob{QueueName: "q", MaxRetries: ptr(100)})
	for i := 0; i < 9; i++ {
		j := e.claimOne("q", "w")
		now := *e.clk.Now()
		out, err := e.svc.Fail(e.ctx, e.actor.OrgID, ref(j), "x", true)
		if err != nil {
			t.Fatal(err)
		}
		wait := out.RetryAt.Sub(now)
		if want := time.Duration(min(1<<i, 60)) * time.Minute; wait != want {
			t.Fatalf("failure %d waits %s, want %s", i+1, wait, want)
		}
		e.clk.Advance(wait)
	}
	if j := e.get(e.actor.OrgID, id); j.RetryCount != 9 {
		t.Fatalf("retry_count %d", j.RetryCount)
	}
}

// TestFailWithoutRetry dead-letters at once, retries left or not.
func TestFailWithoutRetry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.deadLetter(e.actor, "q")
	j := e.get(e.actor.OrgID, id)
	if j.MaxRetries != 3 || *j.LastError != "fatal" {
		t.Fatalf("%+v", j)
	}
	e.wantHistory(e.actor.OrgID, id, events.JobEnqueued, events.JobClaimed, events.JobFailed, events.JobDeadLettered)
}

// TestRetryDeadLetters: by ids (which win over a queue), by queue, and all
// with a limit, oldest first; the retry count starts again from zero.
func TestRetryDeadLetters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.actor.OrgID
	other := e.newOrg("globex")
	theirs := e.deadLetter(other, "q1")

	// d[0] used up its retries the slow way, so it has a count to reset.
	d := []uuid.UUID{e.enqueue(e.actor, commands.NewJob{QueueName: "q1", MaxRetries: ptr(1)})}
	j := e.claimOne("q1", "w")
	if _, err := e.svc.Fail(e.ctx, org, ref(j), "once", true); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(time.Minute)
	j = e.claimOne("q1", "w")
	if out, err := e.svc.Fail(e.ctx, org, ref(j), "twice", true); err != nil || out.WillRetry || out.RetryCount != 1 {
		t.Fatalf("%+v %v", out, err)
	}
	e.clk.Advance(time.Second)
	for _, q := range []string{"q1", "q1", "q1", "q2", "q2", "q2"} {
		d = append(d, e.deadLetter(e.actor, q))
	}
	// q1: d0 d1 d2 d3; q2: d4 d5 d6.
	pending := e.enqueue(e.actor, commands.NewJob{QueueName: "q1"})

	ids := func(jobs []queries.Job) []uuid.UUID {
		out := make([]uuid.UUID, len(jobs))
		for i, j := range jobs {
			out[i] = j.ID
			if j.Status != "pending" || j.RetryCount != 0 || j.LastError != nil {
				t.Fatalf("retried job %s: status %s retry_count %d last_error %v", j.ID, j.Status, j.RetryCount, j.LastError)
			}
		}
		return out
	}
	check := func(what string, got []queries.Job, err error, want ...uuid.UUID) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if g := ids(got); !slices.Equal(g, want) {
			t.Fatalf("%s: retried %v, want %v", what, g, want)
		}
		for _, id := range want {
			h := e.history(org, id)
			last := h[len(h)-1]
			if r := decode[events.Retried](t, last); last.Type != events.JobRetried || r.Source != "dlq" || r.RetryCount != 0 {
				t.Fatalf("%s: %s ends with %s %s", what, id, last.Type, last.Data)
			}
		}
	}

	got, err := e.svc.RetryDeadLetters(e.ctx, e.actor,
		[]string{d[4].String(), d[0].String(), pending.String(), "garbage", uuid.NewString(), theirs.String()}, nil, 0)
	check("by ids", got, err, d[0], d[4])
	got, err = e.svc.RetryDeadLetters(e.ctx, e.actor, []string{d[1].String()}, ptr("q2"), 0)
	check("by ids and queue", got, err, d[1])
	got, err = e.svc.RetryDeadLetters(e.ctx, e.actor, []string{"garbage"}, nil, 0)
	check("by an id that names nothing", got, err)
	got, err = e.svc.RetryDeadLetters(e.ctx, e.actor, nil, ptr("q2"), 0)
	check("by queue", got, err, d[5], d[6])
	got, err = e.svc.RetryDeadLetters(e.ctx, e.actor, nil, nil, 1)
	check("all, limit 1", got, err, d[2])

	for _, still := range []struct {
		org string
		id  uuid.UUID
	}{{org, d[3]}, {other.OrgID, theirs}} {
		if j := e.get(still.org, still.id); j.Status != "deadletter" {
			t.Fatalf("%s is %s, want deadletter", still.id, j.Status)
		}
	}
	if j := e.get(org, pending); j.Status != "pending" || j.Version != 1 {
		t.Fatalf("pending job touched: %+v", j)
	}
	_, err = e.svc.RetryDeadLetters(e.ctx, e.actor, nil, nil, 101)
	asValidationError(t, "limit 101", err)

	// Retried jobs are claimable at once, oldest first within a priority.
	claimed := e.claim("q1", "w", 100)
	var order []uuid.UUID
	for _, c := range claimed {
		order = append(order, c.ID)
	}
	if want := []uuid.UUID{d[0], d[1], d[2], pending}; !slices.Equal(order, want) {
		t.Fatalf("claimed %v, want %v", order, want)
	}
}

// TestPurgeDeadLetters: purged jobs leave every read, their history stays
// and ends with job.purged, and their idempotency key is free again.
func TestPurgeDeadLetters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.actor.OrgID
	other := e.newOrg("globex")
	theirs := e.deadLetter(other, "q1")

	key := "purge-me"
	p0 := e.enqueue(e.actor, commands.NewJob{QueueName: "q1", IdempotencyKey: &key})
	j := e.claimOne("q1", "w")
	if _, err := e.svc.Fail(e.ctx, org, ref(j), "fatal", false); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(time.Second)
	p1 := e.deadLetter(e.actor, "q1")
	p2 := e.deadLetter(e.actor, "q2")
	p3 := e.deadLetter(e.actor, "q2")
	live := e.enqueue(e.actor, commands.NewJob{QueueName: "q1"})

	p1Created := e.get(org, p1).CreatedAt
	n, err := e.svc.PurgeDeadLetters(e.ctx, e.actor, ptr("q1"), &p1Created, 0)
	if err != nil || n != 1 {
		t.Fatalf("purge q1 older than p1: %d %v", n, err)
	}
	n, err = e.svc.PurgeDeadLetters(e.ctx, e.actor, nil, nil, 2)
	if err != nil || n != 2 {
		t.Fatalf("purge all, limit 2: %d %v", n, err)
	}
	// p0, then the oldest two of the rest (p1, p2) are gone; p3 is not.
	for _, id := range []uuid.UUID{p0, p1, p2} {
		_, err := queries.New().JobGet(e.ctx, e.pool, queries.JobGetParams{ID: id, OrganizationID: org})
		wantNoRows(t, "get purged "+id.String(), err)
		h := e.wantHistory(org, id, events.JobEnqueued, events.JobClaimed, events.JobFailed,
			events.JobDeadLettered, events.JobPurged)
		if h[4].Actor != e.actor.Name {
			t.Fatalf("job.purged by %s", h[4].Actor)
		}
		_, err = e.svc.Retry(e.ctx, e.actor, id.String())
		wantIs(t, "retry purged", err, commands.ErrNotFound)
	}
	if j := e.get(org, p3); j.Status != "deadletter" {
		t.Fatalf("p3 is %s", j.Status)
	}
	if j := e.get(other.OrgID, theirs); j.Status != "deadletter" {
		t.Fatalf("other org's dead letter is %s", j.Status)
	}
	if j := e.get(org, live); j.Status != "pending" {
		t.Fatalf("live job is %s", j.Status)
	}
	n, err = e.svc.PurgeDeadLetters(e.ctx, e.actor, nil, nil, 0)
	if err != nil || n != 1 {
		t.Fatalf("purge the rest: %d %v", n, err)
	}
	if c := e.scalar(`SELECT count(*) FROM jobs WHERE organization_id = $1`, org); c != 1 {
		t.Fatalf("%d jobs left, want only the live one", c)
	}
	_, err = e.svc.PurgeDeadLetters(e.ctx, e.actor, nil, nil, 10001)
	asValidationError(t, "limit 10001", err)

	res, err := e.svc.Enqueue(e.ctx, e.actor, []commands.NewJob{{QueueName: "q1", Payload: payload(9), IdempotencyKey: &key}})
	if err != nil || !res[0].Created || res[0].ID == p0 {
		t.Fatalf("reusing a purged job's key: %+v %v", res, err)
	}
}
