package commands_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/queries"
)

func jobIDs(jobs []queries.Job) []uuid.UUID {
	out := make([]uuid.UUID, len(jobs))
	for i, j := range jobs {
		out[i] = j.ID
	}
	return out
}

// TestClaimOrder: highest priority first, then oldest, both across claims
// and within one claimed batch.
func TestClaimOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	byPrio := map[string]int{"a": 0, "b": 5, "c": 0, "d": 5, "e": -5, "f": 100}
	ids := map[string]uuid.UUID{}
	for _, name := range []string{"a", "b", "c", "d", "e", "f"} {
		ids[name] = e.enqueue(e.actor, commands.NewJob{QueueName: "q", Priority: ptr(byPrio[name])})
		e.clk.Advance(time.Second)
	}
	want := func(names ...string) []uuid.UUID {
		out := make([]uuid.UUID, len(names))
		for i, n := range names {
			out[i] = ids[n]
		}
		return out
	}
	if got := jobIDs(e.claim("q", "w", 3)); !slices.Equal(got, want("f", "b", "d")) {
		t.Fatalf("first batch %v, want f b d %v", got, want("f", "b", "d"))
	}
	if got := jobIDs(e.claim("q", "w", 1)); !slices.Equal(got, want("a")) {
		t.Fatalf("second claim %v, want a", got)
	}
	if got := jobIDs(e.claim("q", "w", 10)); !slices.Equal(got, want("c", "e")) {
		t.Fatalf("third claim %v, want c e", got)
	}

	// One bulk call stamps one created_at; its jobs keep their input order
	// within a priority.
	batch := make([]commands.NewJob, 6)
	for i := range batch {
		batch[i] = commands.NewJob{QueueName: "bulk", Payload: payload(i), Priority: ptr(i % 2)}
	}
	res, err := e.svc.EnqueueBulk(e.ctx, e.actor, batch)
	if err != nil {
		t.Fatal(err)
	}
	wantBulk := []uuid.UUID{res[1].ID, res[3].ID, res[5].ID, res[0].ID, res[2].ID, res[4].ID}
	var got []uuid.UUID
	for range batch {
		got = append(got, e.claimOne("bulk", "w").ID)
	}
	if !slices.Equal(got, wantBulk) {
		t.Fatalf("bulk claim order %v, want %v", got, wantBulk)
	}
}

// TestClaimFilters: run-at, expiry, queue, tenant and limit.
func TestClaimFilters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.actor.OrgID
	now := *e.clk.Now()

	// scheduled_at in the future: status scheduled, claimable from that
	// instant on.
	later := e.enqueue(e.actor, commands.NewJob{QueueName: "sched", ScheduledAt: ptr(now.Add(10 * time.Minute))})
	past := e.enqueue(e.actor, commands.NewJob{QueueName: "sched", ScheduledAt: ptr(now.Add(-time.Minute)), Priority: ptr(-1)})
	if j := e.get(org, later); j.Status != "scheduled" {
		t.Fatalf("future scheduled_at gives %s", j.Status)
	}
	if j := e.get(org, past); j.Status != "pending" {
		t.Fatalf("past scheduled_at gives %s", j.Status)
	}
	if got := jobIDs(e.claim("sched", "w", 10)); !slices.Equal(got, []uuid.UUID{past}) {
		t.Fatalf("claimed %v, want only the job already due", got)
	}
	e.clk.Advance(10*time.Minute - time.Microsecond)
	if got := e.claim("sched", "w", 10); len(got) != 0 {
		t.Fatalf("claimed %v before its scheduled_at", jobIDs(got))
	}
	e.clk.Advance(time.Microsecond)
	if j := e.claimOne("sched", "w"); j.ID != later || j.Status != "processing" {
		t.Fatalf("claim at scheduled_at: %+v", j)
	}

	// expires_at: a job past it is never claimed, and stays pending.
	now = *e.clk.Now()
	expired := e.enqueue(e.actor, commands.NewJob{QueueName: "exp", ExpiresAt: ptr(now.Add(-time.Second)), Priority: ptr(10)})
	expiring := e.enqueue(e.actor, commands.NewJob{QueueName: "exp", ExpiresAt: ptr(now.Add(time.Minute)), Priority: ptr(10)})
	e.clk.Advance(time.Minute)
	fresh := e.enqueue(e.actor, commands.NewJob{QueueName: "exp", ExpiresAt: ptr(now.Add(time.Hour))})
	if got := jobIDs(e.claim("exp", "w", 10)); !slices.Equal(got, []uuid.UUID{fresh}) {
		t.Fatalf("claimed %v, want only the unexpired job %s", got, fresh)
	}
	e.clk.Advance(24 * time.Hour)
	if got := e.claim("exp", "w", 10); len(got) != 0 {
		t.Fatalf("claimed expired jobs %v", jobIDs(got))
	}
	for _, id := range []uuid.UUID{expired, expiring} {
		if j := e.get(org, id); j.Status != "pending" || j.Version != 1 {
			t.Fatalf("expired job %s: status %s version %d", id, j.Status, j.Version)
		}
	}

	// Queues and tenants: a claim sees only its own queue of its own tenant.
	other := e.newOrg("globex")
	var mine []uuid.UUID
	for i := 0; i < 25; i++ {
		mine = append(mine, e.enqueue(e.actor, commands.NewJob{QueueName: "work", Payload: payload(i)}))
		e.enqueue(e.actor, commands.NewJob{QueueName: "work2", Payload: payload(i), Priority: ptr(100)})
		e.enqueue(other, commands.NewJob{QueueName: "work", Payload: payload(i), Priority: ptr(100)})
	}
	var got []queries.Job
	for _, limit := range []int{7, 1, 0, 100} {
		batch := e.claim("work", "w", limit)
		if want := min(max(limit, 1), 25-len(got)); len(batch) != want {
			t.Fatalf("limit %d: claimed %d, want %d", limit, len(batch), want)
		}
		got = append(got, batch...)
	}
	for _, j := range got {
		if j.OrganizationID != org || j.QueueName != "work" {
			t.Fatalf("claim of work returned a job of %s/%s", j.OrganizationID, j.QueueName)
		}
	}
	if ids := jobIDs(got); !slices.Equal(ids, mine) {
		t.Fatalf("claimed %v, want %v", ids, mine)
	}
	if n := e.scalar(`SELECT count(*) FROM pending_jobs WHERE organization_id = $1`, other.OrgID); n != 25 {
		t.Fatalf("other tenant has %d pending jobs, want 25", n)
	}
	if n := e.scalar(`SELECT count(*) FROM pending_jobs WHERE organization_id = $1 AND queue_name = 'work2'`, org); n != 25 {
		t.Fatalf("work2 has %d pending jobs, want 25", n)
	}
}

// TestClaimLease: the lease lasts what was asked, or the default; requests
// out of range are refused.
func TestClaimLease(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i := 0; i < 2; i++ {
		e.enqueue(e.actor, commands.NewJob{QueueName: "q", Payload: payload(i)})
	}
	now := *e.clk.Now()
	j, err := e.svc.Claim(e.ctx, e.actor.OrgID, commands.ClaimRequest{QueueName: "q", WorkerID: "w", LeaseSecs: 300})
	if err != nil || len(j) != 1 || !j[0].LeaseExpiresAt.Equal(now.Add(300*time.Second)) || !j[0].StartedAt.Equal(now) {
		t.Fatalf("claim with lease 300: %+v %v", j, err)
	}
	j, err = e.svc.Claim(e.ctx, e.actor.OrgID, commands.ClaimRequest{QueueName: "q", WorkerID: "w"})
	if err != nil || len(j) != 1 || !j[0].LeaseExpiresAt.Equal(now.Add(30*time.Second)) {
		t.Fatalf("claim with the default lease: %+v %v", j, err)
	}
	if n := e.scalar(`SELECT count(*) FROM processing_jobs WHERE organization_id = $1`, e.actor.OrgID); n != 2 {
		t.Fatalf("%d processing_jobs rows", n)
	}

	e.enqueue(e.actor, commands.NewJob{QueueName: "q"})
	for name, r := range map[string]commands.ClaimRequest{
		"limit 101":     {QueueName: "q", WorkerID: "w", Limit: 101},
		"limit -1":      {QueueName: "q", WorkerID: "w", Limit: -1},
		"lease 4":       {QueueName: "q", WorkerID: "w", LeaseSecs: 4},
		"lease 3601":    {QueueName: "q", WorkerID: "w", LeaseSecs: 3601},
		"no worker":     {QueueName: "q"},
		"bad queue":     {QueueName: "a/b", WorkerID: "w"},
		"long worker":   {QueueName: "q", WorkerID: strings.Repeat("w", 256)},
		"missing queue": {WorkerID: "w"},
	} {
		_, err := e.svc.Claim(e.ctx, e.actor.OrgID, r)
		asValidationError(t, name, err)
	}
	if n := e.scalar(`SELECT count(*) FROM pending_jobs WHERE organization_id = $1`, e.actor.OrgID); n != 1 {
		t.Fatalf("a refused claim took a job: %d pending", n)
	}
}
