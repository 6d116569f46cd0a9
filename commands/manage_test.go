package commands_test

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/events"
)

// TestCancel: only jobs that have not started can be cancelled; every
// refusal leaves the job and its history as they were.
func TestCancel(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.actor.OrgID

	pending := e.enqueue(e.actor, commands.NewJob{QueueName: "q"})
	scheduled := e.enqueue(e.actor, commands.NewJob{QueueName: "q", ScheduledAt: ptr(e.clk.Now().Add(time.Hour))})
	for _, id := range []uuid.UUID{pending, scheduled} {
		if err := e.svc.Cancel(e.ctx, e.actor, id.String()); err != nil {
			t.Fatalf("cancel %s: %v", id, err)
		}
		if j := e.get(org, id); j.Status != "cancelled" {
			t.Fatalf("cancelled job is %s", j.Status)
		}
		h := e.wantHistory(org, id, events.JobEnqueued, events.JobCancelled)
		if h[1].Actor != e.actor.Name {
			t.Fatalf("job.cancelled by %s", h[1].Actor)
		}
	}
	if f := e.footprint(org); f.pending != 0 {
		t.Fatalf("cancelled jobs left in pending_jobs: %+v", f)
	}
	e.clk.Advance(2 * time.Hour)
	if got := e.claim("q", "w", 10); len(got) != 0 {
		t.Fatalf("claimed a cancelled job: %v", jobIDs(got))
	}

	processing := e.enqueue(e.actor, commands.NewJob{QueueName: "q"})
	e.claimOne("q", "w")
	completed := e.enqueue(e.actor, commands.NewJob{QueueName: "q"})
	c := e.claimOne("q", "w")
	if err := e.svc.Complete(e.ctx, org, ref(c), nil); err != nil {
		t.Fatal(err)
	}
	dead := e.deadLetter(e.actor, "q")

	other := e.newOrg("globex")
	theirs := e.enqueue(other, commands.NewJob{QueueName: "q"})

	before, beforeOther := e.footprint(org), e.footprint(other.OrgID)
	for _, id := range []uuid.UUID{processing, completed, dead, pending} {
		err := e.svc.Cancel(e.ctx, e.actor, id.String())
		wantIs(t, "cancel "+e.get(org, id).Status, err, commands.ErrConflict)
	}
	for name, id := range map[string]string{
		"unknown": uuid.NewString(), "not a uuid": "nope", "empty": "", "other tenant's": theirs.String(),
	} {
		wantIs(t, "cancel "+name, e.svc.Cancel(e.ctx, e.actor, id), commands.ErrNotFound)
	}
	if after := e.footprint(org); after != before {
		t.Fatalf("refused cancels changed the tenant: %+v -> %+v", before, after)
	}
	if after := e.footprint(other.OrgID); after != beforeOther {
		t.Fatalf("cancel reached another tenant: %+v -> %+v", beforeOther, after)
	}
	if j := e.get(other.OrgID, theirs); j.Status != "pending" {
		t.Fatalf("other tenant's job is %s", j.Status)
	}
}

// TestSetPriority: a waiting job's priority changes its place in line;
// started jobs, bad values and foreign jobs are refused without a trace.
func TestSetPriority(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.actor.OrgID
	older := e.enqueue(e.actor, commands.NewJob{QueueName: "q"})
	e.clk.Advance(time.Second)
	newer := e.enqueue(e.actor, commands.NewJob{QueueName: "q"})
	e.clk.Advance(time.Second)
	scheduled := e.enqueue(e.actor, commands.NewJob{QueueName: "q", ScheduledAt: ptr(e.clk.Now().Add(time.Minute))})

	ch, err := e.svc.SetPriority(e.ctx, e.actor, newer.String(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if ch != (commands.PriorityChange{JobID: newer, OldPriority: 0, NewPriority: 10}) {
		t.Fatalf("change %+v", ch)
	}
	if ch, err := e.svc.SetPriority(e.ctx, e.actor, scheduled.String(), 20); err != nil || ch.NewPriority != 20 {
		t.Fatalf("scheduled job: %+v %v", ch, err)
	}
	if j := e.get(org, newer); j.Priority != 10 {
		t.Fatalf("read model priority %d", j.Priority)
	}
	first := e.claimOne("q", "w")
	if first.ID != newer || first.Priority != 10 {
		t.Fatalf("claimed %s (priority %d) first, want the raised job %s", first.ID, first.Priority, newer)
	}
	h := e.wantHistory(org, newer, events.JobEnqueued, events.JobPriorityChanged, events.JobClaimed)
	if pc := decode[events.PriorityChanged](t, h[1]); pc.OldPriority != 0 || pc.NewPriority != 10 {
		t.Fatalf("priority_changed %+v", pc)
	}
	// Lowering works too: the older job now goes after the scheduled one.
	if _, err := e.svc.SetPriority(e.ctx, e.actor, older.String(), -100); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(time.Minute)
	if got := jobIDs(e.claim("q", "w", 10)); len(got) != 2 || got[0] != scheduled || got[1] != older {
		t.Fatalf("claim order after lowering %v, want scheduled then older", got)
	}

	other := e.newOrg("globex")
	theirs := e.enqueue(other, commands.NewJob{QueueName: "q"})
	waiting := e.enqueue(e.actor, commands.NewJob{QueueName: "q"})
	before, beforeOther := e.footprint(org), e.footprint(other.OrgID)

	_, err = e.svc.SetPriority(e.ctx, e.actor, newer.String(), 50)
	wantIs(t, "set priority of a processing job", err, commands.ErrConflict)
	for _, p := range []int{101, -101} {
		_, err = e.svc.SetPriority(e.ctx, e.actor, waiting.String(), p)
		if ve := asValidationError(t, "priority out of range", err); ve.Field != "priority" {
			t.Fatalf("field %q", ve.Field)
		}
	}
	for name, id := range map[string]string{"unknown": uuid.NewString(), "not a uuid": "x", "other tenant's": theirs.String()} {
		_, err = e.svc.SetPriority(e.ctx, e.actor, id, 1)
		wantIs(t, "set priority of "+name, err, commands.ErrNotFound)
	}
	if after := e.footprint(org); after != before {
		t.Fatalf("refused changes changed the tenant: %+v -> %+v", before, after)
	}
	if after := e.footprint(other.OrgID); after != beforeOther {
		t.Fatalf("set priority reached another tenant: %+v -> %+v", beforeOther, after)
	}
	if j := e.get(other.OrgID, theirs); j.Priority != 0 {
		t.Fatalf("other tenant's job has priority %d", j.Priority)
	}
}

// TestRetryRefusals: only failed or dead-lettered jobs of the caller's
// tenant can be retried by hand.
func TestRetryRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.actor.OrgID
	other := e.newOrg("globex")
	theirs := e.deadLetter(other, "q")
	pending := e.enqueue(e.actor, commands.NewJob{QueueName: "q"})
	processing := e.enqueue(e.actor, commands.NewJob{QueueName: "p"})
	e.claimOne("p", "w")

	before, beforeOther := e.footprint(org), e.footprint(other.OrgID)
	for _, id := range []uuid.UUID{pending, processing} {
		_, err := e.svc.Retry(e.ctx, e.actor, id.String())
		wantIs(t, "retry "+e.get(org, id).Status, err, commands.ErrConflict)
	}
	for name, id := range map[string]string{"unknown": uuid.NewString(), "not a uuid": "x", "other tenant's": theirs.String()} {
		_, err := e.svc.Retry(e.ctx, e.actor, id)
		wantIs(t, "retry "+name, err, commands.ErrNotFound)
	}
	if after := e.footprint(org); after != before {
		t.Fatalf("refused retries changed the tenant: %+v -> %+v", before, after)
	}
	if after := e.footprint(other.OrgID); after != beforeOther {
		t.Fatalf("retry reached another tenant: %+v -> %+v", beforeOther, after)
	}
}
