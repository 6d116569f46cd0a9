package commands_test

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/events"
	"github.com/spooled-go/spooled/internal/testdb"
	"github.com/spooled-go/spooled/queries"
)

// TestStaleWorkerIsFenced: once a lease expired and the job went to another
// worker, nothing the first worker does (with or without its old lease_id)
// touches the job, every refusal is in the history, and the new owner
// finishes normally.
func TestStaleWorkerIsFenced(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.actor.OrgID
	id := e.enqueue(e.actor, commands.NewJob{QueueName: "emails", MaxRetries: ptr(3)})

	a := e.claimOne("emails", "worker-a")
	if a.ID != id || a.LeaseID == nil || a.LeaseExpiresAt == nil {
		t.Fatalf("A's claim: %+v", a)
	}
	if want := e.clk.Now().Add(30 * time.Second); !a.LeaseExpiresAt.Equal(want) {
		t.Fatalf("A's lease expires at %s, want %s", a.LeaseExpiresAt, want)
	}

	// Not yet expired: the reaper leaves it alone.
	e.clk.Advance(29 * time.Second)
	if got, err := e.svc.ExpireLeases(e.ctx, 100); err != nil || len(got) != 0 {
		t.Fatalf("reaper before expiry: %v %v", got, err)
	}
	e.clk.Advance(2 * time.Second)
	reaped, err := e.svc.ExpireLeases(e.ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(reaped) != 1 || reaped[0].ID != id || reaped[0].Status != "pending" || reaped[0].OrgID != org {
		t.Fatalf("reaped %+v", reaped)
	}
	if j := e.get(org, id); j.Status != "pending" || j.RetryCount != 1 || j.LeaseID != nil {
		t.Fatalf("after reaping: status %s retry_count %d lease %v", j.Status, j.RetryCount, j.LeaseID)
	}

	b := e.claimOne("emails", "worker-b")
	if b.ID != id || *b.LeaseID == *a.LeaseID {
		t.Fatalf("B's claim: %+v (A's lease %s)", b, a.LeaseID)
	}

	staleRefs := []commands.LeaseRef{
		{JobID: id.String(), WorkerID: "worker-a", LeaseID: a.LeaseID},
		{JobID: id.String(), WorkerID: "worker-a"},
	}
	type attempt struct {
		action string
		lease  *uuid.UUID
	}
	var want []attempt
	for _, ref := range staleRefs {
		err := e.svc.Complete(e.ctx, org, ref, payload(1))
		if le := asLeaseError(t, "A's complete", err); !le.JobFound {
			t.Fatalf("A's complete: %+v", le)
		}
		want = append(want, attempt{"complete", ref.LeaseID})
		_, err = e.svc.Fail(e.ctx, org, ref, "too late", true)
		asLeaseError(t, "A's fail", err)
		want = append(want, attempt{"fail", ref.LeaseID})
		_, err = e.svc.RenewLease(e.ctx, org, ref, 60)
		asLeaseError(t, "A's renew_lease", err)
		want = append(want, attempt{"renew_lease", ref.LeaseID})
	}

	// A's refusals changed nothing about B's lease.
	j := e.get(org, id)
	if j.Status != "processing" || *j.AssignedWorkerID != "worker-b" || *j.LeaseID != *b.LeaseID ||
		!j.LeaseExpiresAt.Equal(*b.LeaseExpiresAt) || j.RetryCount != 1 {
		t.Fatalf("after A's attempts: %+v", j)
	}
	if n := e.scalar(`SELECT count(*) FROM processing_jobs WHERE job_id = $1 AND worker_id = 'worker-b' AND lease_id = $2`, id, *b.LeaseID); n != 1 {
		t.Fatalf("B's processing_jobs row: %d", n)
	}

	if err := e.svc.Complete(e.ctx, org, commands.LeaseRef{JobID: id.String(), WorkerID: "worker-b", LeaseID: b.LeaseID}, payload(2)); err != nil {
		t.Fatalf("B's complete: %v", err)
	}
	if j := e.get(org, id); j.Status != "completed" || string(j.Result) != `{"n": 2}` {
		t.Fatalf("after B's complete: status %s result %s", j.Status, j.Result)
	}

	h := e.wantHistory(org, id,
		events.JobEnqueued, events.JobClaimed, events.JobLeaseExpired, events.JobRetryScheduled, events.JobClaimed,
		events.JobAttemptRejected, events.JobAttemptRejected, events.JobAttemptRejected,
		events.JobAttemptRejected, events.JobAttemptRejected, events.JobAttemptRejected,
		events.JobCompleted)
	if c := decode[events.Claimed](t, h[1]); c.WorkerID != "worker-a" || c.LeaseID != *a.LeaseID {
		t.Fatalf("first claim: %+v", c)
	}
	if le := decode[events.LeaseExpired](t, h[2]); le.WorkerID != "worker-a" || le.LeaseID != *a.LeaseID {
		t.Fatalf("lease_expired: %+v", le)
	}
	if rs := decode[events.RetryScheduled](t, h[3]); rs.RetryCount != 1 || h[3].Actor != events.ActorSystem("lease_reaper") {
		t.Fatalf("retry_scheduled: %+v by %s", rs, h[3].Actor)
	}
	if c := decode[events.Claimed](t, h[4]); c.WorkerID != "worker-b" || c.LeaseID != *b.LeaseID || c.Attempt != 2 {
		t.Fatalf("second claim: %+v", c)
	}
	for i, w := range want {
		ev := h[5+i]
		r := decode[events.AttemptRejected](t, ev)
		if r.Action != w.action || r.WorkerID != "worker-a" || ev.Actor != events.ActorWorker("worker-a") {
			t.Fatalf("rejection %d: %+v by %s, want %s by worker-a", i, r, ev.Actor, w.action)
		}
		if (w.lease == nil) != (r.LeaseID == nil) || (w.lease != nil && *w.lease != *r.LeaseID) {
			t.Fatalf("rejection %d names lease %v, want %v", i, r.LeaseID, w.lease)
		}
		if !strings.Contains(r.Reason, "another worker") {
			t.Fatalf("rejection %d reason %q", i, r.Reason)
		}
	}
	if c := decode[events.Completed](t, h[11]); c.WorkerID != "worker-b" || c.LeaseID != *b.LeaseID {
		t.Fatalf("completed: %+v", c)
	}

	// After completion, A is still refused, and says why.
	err = e.svc.Complete(e.ctx, org, staleRefs[0], nil)
	if le := asLeaseError(t, "A's complete after B's", err); !strings.Contains(le.Reason, "completed") {
		t.Fatalf("reason %q", le.Reason)
	}
}

// TestWrongLeaseIDIsRejected: the right worker with a lease_id that is not
// the current one is refused, and the lease stays usable.
func TestWrongLeaseIDIsRejected(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.actor.OrgID
	id := e.enqueue(e.actor, commands.NewJob{QueueName: "q"})
	j := e.claimOne("q", "w1")
	wrong := uuid.New()
	ref := commands.LeaseRef{JobID: id.String(), WorkerID: "w1", LeaseID: &wrong}

	err := e.svc.Complete(e.ctx, org, ref, nil)
	if le := asLeaseError(t, "complete with a wrong lease_id", err); !strings.Contains(le.Reason, "lease_id") {
		t.Fatalf("reason %q", le.Reason)
	}
	_, err = e.svc.Fail(e.ctx, org, ref, "x", true)
	asLeaseError(t, "fail with a wrong lease_id", err)
	_, err = e.svc.RenewLease(e.ctx, org, ref, 60)
	asLeaseError(t, "renew with a wrong lease_id", err)
	if got := e.get(org, id); got.Status != "processing" || *got.LeaseID != *j.LeaseID || !got.LeaseExpiresAt.Equal(*j.LeaseExpiresAt) {
		t.Fatalf("after refusals: %+v", got)
	}

	// Another worker naming the right lease is refused too.
	err = e.svc.Complete(e.ctx, org, commands.LeaseRef{JobID: id.String(), WorkerID: "w2", LeaseID: j.LeaseID}, nil)
	asLeaseError(t, "complete by another worker", err)

	// The right lease renews and then completes.
	e.clk.Advance(20 * time.Second)
	good := commands.LeaseRef{JobID: id.String(), WorkerID: "w1", LeaseID: j.LeaseID}
	exp, err := e.svc.RenewLease(e.ctx, org, good, 60)
	if err != nil {
		t.Fatal(err)
	}
	if want := e.clk.Now().Add(60 * time.Second); !exp.Equal(want) {
		t.Fatalf("renewed to %s, want %s", exp, want)
	}
	// Past the original expiry, inside the renewed one.
	e.clk.Advance(30 * time.Second)
	if err := e.svc.Complete(e.ctx, org, good, nil); err != nil {
		t.Fatalf("complete under the renewed lease: %v", err)
	}
	h := e.wantHistory(org, id, events.JobEnqueued, events.JobClaimed,
		events.JobAttemptRejected, events.JobAttemptRejected, events.JobAttemptRejected, events.JobAttemptRejected,
		events.JobLeaseRenewed, events.JobCompleted)
	for i, action := range []string{"complete", "fail", "renew_lease"} {
		r := decode[events.AttemptRejected](t, h[2+i])
		if r.Action != action || r.WorkerID != "w1" || r.LeaseID == nil || *r.LeaseID != wrong {
			t.Fatalf("rejection %d: %+v", i, r)
		}
	}
	if r := decode[events.AttemptRejected](t, h[5]); r.WorkerID != "w2" || r.Action != "complete" {
		t.Fatalf("w2's rejection: %+v", r)
	}
}

// TestExpiredUnreapedLeaseIsRejected: a lease past its expiry is dead even
// before the reaper has run; the job stays leased until the reaper takes it.
func TestExpiredUnreapedLeaseIsRejected(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.actor.OrgID
	id := e.enqueue(e.actor, commands.NewJob{QueueName: "q", MaxRetries: ptr(0)})
	j := e.claimOne("q", "w1")
	e.clk.Advance(30 * time.Second) // exactly at expiry: already expired
	for _, ref := range []commands.LeaseRef{
		{JobID: id.String(), WorkerID: "w1", LeaseID: j.LeaseID},
		{JobID: id.String(), WorkerID: "w1"},
	} {
		err := e.svc.Complete(e.ctx, org, ref, nil)
		if le := asLeaseError(t, "complete after expiry", err); !strings.Contains(le.Reason, "expired") {
			t.Fatalf("reason %q", le.Reason)
		}
		_, err = e.svc.Fail(e.ctx, org, ref, "x", true)
		asLeaseError(t, "fail after expiry", err)
		_, err = e.svc.RenewLease(e.ctx, org, ref, 60)
		asLeaseError(t, "renew after expiry", err)
	}
	if got := e.get(org, id); got.Status != "processing" || got.CompletedAt != nil || got.RetryCount != 0 {
		t.Fatalf("after refusals: %+v", got)
	}
	if n := e.scalar(`SELECT count(*) FROM processing_jobs WHERE job_id = $1`, id); n != 1 {
		t.Fatalf("processing_jobs rows: %d", n)
	}
	// Nobody else can claim it until it is reaped; max_retries 0 sends it to
	// the dead-letter queue.
	if got := e.claim("q", "w2", 10); len(got) != 0 {
		t.Fatalf("claimed a leased job: %+v", got)
	}
	reaped, err := e.svc.ExpireLeases(e.ctx, 100)
	if err != nil || len(reaped) != 1 || reaped[0].Status != "deadletter" {
		t.Fatalf("reaped %+v %v", reaped, err)
	}
	got := e.get(org, id)
	if got.Status != "deadletter" || got.LastError == nil || *got.LastError != "Max retries exceeded after lease expiration" {
		t.Fatalf("after reaping: %+v", got)
	}
	if n := e.scalar(`SELECT count(*) FROM processing_jobs WHERE job_id = $1`, id); n != 0 {
		t.Fatalf("processing_jobs rows after reaping: %d", n)
	}
	rejected := make([]string, 6)
	for i := range rejected {
		rejected[i] = events.JobAttemptRejected
	}
	want := append(append([]string{events.JobEnqueued, events.JobClaimed}, rejected...),
		events.JobLeaseExpired, events.JobDeadLettered)
	h := e.wantHistory(org, id, want...)
	if d := decode[events.DeadLettered](t, h[len(h)-1]); d.Reason != "lease_expired" {
		t.Fatalf("deadlettered: %+v", d)
	}
}

// TestUnknownJobLeaseCalls: worker calls naming no job of the tenant are
// refused without writing anything.
func TestUnknownJobLeaseCalls(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	other := e.newOrg("globex")
	foreign := e.enqueue(other, commands.NewJob{QueueName: "q"})
	fj, err := e.svc.Claim(e.ctx, other.OrgID, commands.ClaimRequest{QueueName: "q", WorkerID: "w1"})
	if err != nil || len(fj) != 1 {
		t.Fatalf("claim in other org: %v %v", fj, err)
	}
	before := e.footprint(other.OrgID)
	for _, id := range []string{uuid.NewString(), "not-a-uuid", foreign.String()} {
		ref := commands.LeaseRef{JobID: id, WorkerID: "w1"}
		err := e.svc.Complete(e.ctx, e.actor.OrgID, ref, nil)
		if le := asLeaseError(t, "complete "+id, err); le.JobFound {
			t.Fatalf("complete %s: %+v", id, le)
		}
		_, err = e.svc.Fail(e.ctx, e.actor.OrgID, ref, "x", true)
		asLeaseError(t, "fail "+id, err)
		_, err = e.svc.RenewLease(e.ctx, e.actor.OrgID, ref, 60)
		asLeaseError(t, "renew "+id, err)
	}
	if after := e.footprint(other.OrgID); after != before {
		t.Fatalf("another tenant's calls changed the job's tenant: %+v -> %+v", before, after)
	}
	if n := e.footprint(e.actor.OrgID); n != (footprint{}) {
		t.Fatalf("caller's tenant: %+v", n)
	}
}

// TestRejectionsRaceWithOwner: a stale worker hammering a job while its new
// owner renews and completes it. Every call lands as exactly one event, the
// stream stays gap-free and in order, and the owner is never disturbed.
func TestRejectionsRaceWithOwner(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, testdb.Options{MaxConns: 12})
	org := e.actor.OrgID
	id := e.enqueue(e.actor, commands.NewJob{QueueName: "q", MaxRetries: ptr(1)})
	a := e.claimOne("q", "worker-a")
	e.clk.Advance(31 * time.Second)
	if got, err := e.svc.ExpireLeases(e.ctx, 10); err != nil || len(got) != 1 {
		t.Fatalf("reap: %v %v", got, err)
	}
	b := e.claimOne("q", "worker-b")
	owner := commands.LeaseRef{JobID: id.String(), WorkerID: "worker-b", LeaseID: b.LeaseID}
	stale := commands.LeaseRef{JobID: id.String(), WorkerID: "worker-a", LeaseID: a.LeaseID}

	const staleCallers, callsEach, renewals = 6, 5, 10
	start := make(chan struct{})
	errs := make(chan error, staleCallers*callsEach+renewals+1)
	var wg sync.WaitGroup
	for g := 0; g < staleCallers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			<-start
			for i := 0; i < callsEach; i++ {
				var err error
				switch (g + i) % 3 {
				case 0:
					err = e.svc.Complete(e.ctx, org, stale, nil)
				case 1:
					_, err = e.svc.Fail(e.ctx, org, stale, "late", true)
				default:
					_, err = e.svc.RenewLease(e.ctx, org, stale, 60)
				}
				var le *commands.LeaseError
				if !errors.As(err, &le) {
					errs <- fmt.Errorf("stale call %d/%d: %v", g, i, err)
				}
			}
		}(g)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-start
		for i := 0; i < renewals; i++ {
			if _, err := e.svc.RenewLease(e.ctx, org, owner, 60); err != nil {
				errs <- fmt.Errorf("owner renewal %d: %v", i, err)
			}
		}
		if err := e.svc.Complete(e.ctx, org, owner, payload(7)); err != nil {
			errs <- fmt.Errorf("owner complete: %v", err)
		}
	}()
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	h := e.history(org, id) // checks sequences 1..n
	counts := map[string]int{}
	for _, ev := range h {
		counts[ev.Type]++
	}
	want := map[string]int{
		events.JobEnqueued: 1, events.JobClaimed: 2, events.JobLeaseExpired: 1, events.JobRetryScheduled: 1,
		events.JobLeaseRenewed: renewals, events.JobAttemptRejected: staleCallers * callsEach, events.JobCompleted: 1,
	}
	if !maps.Equal(counts, want) {
		t.Fatalf("event counts %v, want %v", counts, want)
	}
	// The owner's events keep their order (every renewal before the
	// completion), and nothing of worker-b's was rejected.
	completedAt := slices.IndexFunc(h, func(ev events.Event) bool { return ev.Type == events.JobCompleted })
	for i, ev := range h {
		if ev.Type == events.JobAttemptRejected && decode[events.AttemptRejected](t, ev).WorkerID != "worker-a" {
			t.Fatalf("event %d rejects %s", i, ev.Data)
		}
		if ev.Type == events.JobLeaseRenewed && i > completedAt {
			t.Fatalf("renewal %d is logged after the completion (%d)", i, completedAt)
		}
	}
	j := e.get(org, id)
	if j.Status != "completed" || int(j.Version) != len(h) || string(j.Result) != `{"n": 7}` {
		t.Fatalf("job: status %s version %d (history %d) result %s", j.Status, j.Version, len(h), j.Result)
	}
}

// TestLeaseIDPerClaim: the jobs one claim leases share its lease id, in
// the projections and in their job.claimed events; the next claim's is a
// new one; and a lease is the job and its lease id together, so a lease id
// that another job of the worker holds completes nothing but that job.
func TestLeaseIDPerClaim(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.actor.OrgID
	ids := make([]uuid.UUID, 4)
	for i := range ids {
		ids[i] = e.enqueue(e.actor, commands.NewJob{QueueName: "leases", Payload: payload(i)})
	}

	first := e.claim("leases", "w", 3)
	if len(first) != 3 || first[0].LeaseID == nil {
		t.Fatalf("first claim: %+v", first)
	}
	lease := *first[0].LeaseID
	for _, j := range first {
		if j.LeaseID == nil || *j.LeaseID != lease {
			t.Fatalf("job %s has lease %v, the claim's first job %s", j.ID, j.LeaseID, lease)
		}
		if n := e.scalar(`SELECT count(*) FROM processing_jobs WHERE job_id = $1 AND lease_id = $2`, j.ID, lease); n != 1 {
			t.Fatalf("job %s: %d processing_jobs rows with the claim's lease", j.ID, n)
		}
		h := e.wantHistory(org, j.ID, "job.enqueued", "job.claimed")
		if c := decode[events.Claimed](t, h[1]); c.LeaseID != lease {
			t.Fatalf("job %s: job.claimed names lease %s, the claim's is %s", j.ID, c.LeaseID, lease)
		}
	}

	second := e.claimOne("leases", "w")
	if second.ID != ids[3] || second.LeaseID == nil || *second.LeaseID == lease {
		t.Fatalf("second claim: %+v (the first claim's lease %s)", second, lease)
	}

	// The first claim's lease id does not reach the job of the second.
	err := e.svc.Complete(e.ctx, org, commands.LeaseRef{JobID: second.ID.String(), WorkerID: "w", LeaseID: &lease}, nil)
	asLeaseError(t, "complete with another claim's lease id", err)
	if j := e.get(org, second.ID); j.Status != "processing" || *j.LeaseID != *second.LeaseID {
		t.Fatalf("after the refused complete: status %s lease %v", j.Status, j.LeaseID)
	}
	for _, ref := range []commands.LeaseRef{
		{JobID: second.ID.String(), WorkerID: "w", LeaseID: second.LeaseID},
		{JobID: first[1].ID.String(), WorkerID: "w", LeaseID: &lease},
	} {
		if err := e.svc.Complete(e.ctx, org, ref, nil); err != nil {
			t.Fatalf("complete %s with its own lease: %v", ref.JobID, err)
		}
	}
	for _, j := range []queries.Job{first[0], first[2]} {
		if got := e.get(org, j.ID); got.Status != "processing" || *got.LeaseID != lease {
			t.Fatalf("job %s after its claim-mates completed: status %s lease %v", j.ID, got.Status, got.LeaseID)
		}
	}
}
