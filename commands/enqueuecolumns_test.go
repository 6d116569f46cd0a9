package commands_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/spooled-go/spooled/commands"
)

// TestEnqueueOptionalColumns: the enqueue statement gets an optional column
// as an array only when some job of the batch sets it (NULL otherwise), so
// a job that leaves a field unset must read the same whether or not the
// other jobs of its batch set it: the queue's defaults, no schedule, no
// tags, key or parent, priority 0.
func TestEnqueueOptionalColumns(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, err := e.svc.ConfigureQueue(e.ctx, e.actor, "cols", commands.QueueSettings{MaxRetries: ptr(7), DefaultTimeout: ptr(77)}); err != nil {
		t.Fatal(err)
	}
	parent := e.enqueue(e.actor, commands.NewJob{QueueName: "cols"})
	at := e.clk.Now().Add(time.Hour).Truncate(time.Microsecond)
	expires := at.Add(time.Hour)
	full := commands.NewJob{
		QueueName: "cols", Payload: payload(1), Priority: ptr(5), MaxRetries: ptr(2), TimeoutSeconds: ptr(20),
		ScheduledAt: &at, ExpiresAt: &expires, Tags: json.RawMessage(`{"k":"v"}`), ParentJobID: ptr(parent.String()),
		CompletionWebhook: ptr("https://example.com/hook"), IdempotencyKey: ptr("cols-1"),
	}
	plain := commands.NewJob{QueueName: "cols", Payload: payload(0)}
	lowPriority := commands.NewJob{QueueName: "cols", Payload: payload(2), Priority: ptr(-3)}
	mixed, err := e.svc.EnqueueBulk(e.ctx, e.actor, []commands.NewJob{plain, full, lowPriority, plain})
	if err != nil {
		t.Fatal(err)
	}
	bare, err := e.svc.EnqueueBulk(e.ctx, e.actor, []commands.NewJob{plain, plain})
	if err != nil {
		t.Fatal(err)
	}

	type row struct {
		status               string
		priority, retries    int32
		timeout, pendingPrio int32
		scheduled, expiresAt *time.Time
		tags                 json.RawMessage
		parentID             *uuid.UUID
		webhook, key         *string
	}
	read := func(id uuid.UUID) row {
		t.Helper()
		var r row
		if err := e.pool.QueryRow(e.ctx, `
			SELECT j.status, j.priority, j.max_retries, j.timeout_seconds, p.priority, j.scheduled_at, j.expires_at,
			       j.tags, j.parent_job_id, j.completion_webhook, j.idempotency_key
			FROM jobs j JOIN pending_jobs p ON p.job_id = j.id WHERE j.id = $1`, id).Scan(
			&r.status, &r.priority, &r.retries, &r.timeout, &r.pendingPrio, &r.scheduled, &r.expiresAt,
			&r.tags, &r.parentID, &r.webhook, &r.key); err != nil {
			t.Fatalf("job %s: %v", id, err)
		}
		return r
	}
	unset := func(name string, id uuid.UUID, wantPriority int32) {
		t.Helper()
		r := read(id)
		if r.status != "pending" || r.priority != wantPriority || r.pendingPrio != wantPriority || r.retries != 7 || r.timeout != 77 ||
			r.scheduled != nil || r.expiresAt != nil || r.tags != nil || r.parentID != nil || r.webhook != nil || r.key != nil {
			t.Errorf("%s: %+v; want pending, priority %d, the queue's 7 retries and 77 s, nothing else set", name, r, wantPriority)
		}
	}
	unset("first of the mixed batch", mixed[0].ID, 0)
	unset("the low-priority job", mixed[2].ID, -3)
	unset("last of the mixed batch", mixed[3].ID, 0)
	unset("first of a batch that sets nothing", bare[0].ID, 0)
	unset("second of a batch that sets nothing", bare[1].ID, 0)

	r := read(mixed[1].ID)
	if r.status != "scheduled" || r.priority != 5 || r.pendingPrio != 5 || r.retries != 2 || r.timeout != 20 ||
		r.scheduled == nil || !r.scheduled.Equal(at) || r.expiresAt == nil || !r.expiresAt.Equal(expires) ||
		canonicalJSON(t, r.tags) != `{"k":"v"}` || r.parentID == nil || *r.parentID != parent ||
		r.webhook == nil || *r.webhook != *full.CompletionWebhook || r.key == nil || *r.key != "cols-1" {
		t.Errorf("the job that sets every field: %+v", r)
	}
}
