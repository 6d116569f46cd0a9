package commands_test

import (
	"sync"
	"testing"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/events"
	"github.com/spooled-go/spooled/internal/testdb"
)

func (e *env) enqueuedEvents(orgID string) int64 {
	e.t.Helper()
	return e.scalar(`SELECT count(*) FROM job_events WHERE organization_id = $1 AND event_type = $2`, orgID, events.JobEnqueued)
}

// TestIdempotencyKeyRace: 20 concurrent enqueues with one key make one job.
func TestIdempotencyKeyRace(t *testing.T) {
	t.Parallel()
	const n = 20
	e := newEnvWith(t, testdb.Options{MaxConns: n + 2})
	key := "order-42"
	start := make(chan struct{})
	var wg sync.WaitGroup
	results := make([]commands.EnqueueResult, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			res, err := e.svc.Enqueue(e.ctx, e.actor, []commands.NewJob{{
				QueueName: "orders", Payload: payload(i), IdempotencyKey: &key,
			}})
			errs[i] = err
			if err == nil {
				results[i] = res[0]
			}
		}(i)
	}
	close(start)
	wg.Wait()

	created := 0
	for i := 0; i < n; i++ {
		if errs[i] != nil {
			t.Fatalf("enqueue %d: %v", i, errs[i])
		}
		if results[i].Created {
			created++
		}
		if results[i].ID != results[0].ID {
			t.Fatalf("enqueue %d returned %s, enqueue 0 returned %s", i, results[i].ID, results[0].ID)
		}
	}
	if created != 1 {
		t.Fatalf("%d results say created, want 1", created)
	}
	if f := e.footprint(e.actor.OrgID); f.jobs != 1 || f.pending != 1 || f.events != 1 {
		t.Fatalf("footprint %+v, want one job, one pending row, one event", f)
	}
	if n := e.enqueuedEvents(e.actor.OrgID); n != 1 {
		t.Fatalf("%d job.enqueued events", n)
	}
	j := e.get(e.actor.OrgID, results[0].ID)
	if j.IdempotencyKey == nil || *j.IdempotencyKey != key || j.Version != 1 {
		t.Fatalf("job %+v", j)
	}
}

// TestIdempotencyKeyWithinBatch: a key twice in one call makes one job; the
// first occurrence is the one created.
func TestIdempotencyKeyWithinBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	k1, k2 := "dup", "single"
	for _, bulk := range []bool{true, false} {
		a := e.newOrg(map[bool]string{true: "bulk-org", false: "plain-org"}[bulk])
		batch := []commands.NewJob{
			{QueueName: "q", Payload: payload(0), IdempotencyKey: &k1},
			{QueueName: "q", Payload: payload(1), IdempotencyKey: &k2},
			{QueueName: "q", Payload: payload(2), IdempotencyKey: &k1},
			{QueueName: "q", Payload: payload(3)},
		}
		enqueue := e.svc.Enqueue
		if bulk {
			enqueue = e.svc.EnqueueBulk
		}
		res, err := enqueue(e.ctx, a, batch)
		if err != nil {
			t.Fatalf("bulk=%v: %v", bulk, err)
		}
		if !res[0].Created || res[2].Created || res[2].ID != res[0].ID || res[2].Err != nil {
			t.Fatalf("bulk=%v: duplicate key results %+v and %+v", bulk, res[0], res[2])
		}
		if !res[1].Created || !res[3].Created || res[1].ID == res[0].ID || res[3].ID == res[1].ID {
			t.Fatalf("bulk=%v: results %+v", bulk, res)
		}
		if f := e.footprint(a.OrgID); f.jobs != 3 || f.pending != 3 || f.events != 3 {
			t.Fatalf("bulk=%v: footprint %+v, want 3 jobs", bulk, f)
		}
		if j := e.get(a.OrgID, res[0].ID); string(j.Payload) != `{"n": 0}` {
			t.Fatalf("bulk=%v: the kept job has payload %s, want the first", bulk, j.Payload)
		}
	}
}

// TestIdempotencyKeyScope: a key names one job per organization, across
// queues and whatever the job's state; other organizations have their own.
func TestIdempotencyKeyScope(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	key := "shared"
	first, err := e.svc.Enqueue(e.ctx, e.actor, []commands.NewJob{{QueueName: "a", Payload: payload(1), IdempotencyKey: &key}})
	if err != nil || !first[0].Created {
		t.Fatalf("first: %+v %v", first, err)
	}
	id := first[0].ID

	// Another queue, another payload: still the same job, unchanged.
	again, err := e.svc.EnqueueBulk(e.ctx, e.actor, []commands.NewJob{{QueueName: "b", Payload: payload(2), IdempotencyKey: &key}})
	if err != nil || again[0].Created || again[0].ID != id {
		t.Fatalf("other queue: %+v %v", again, err)
	}
	j := e.get(e.actor.OrgID, id)
	if j.QueueName != "a" || string(j.Payload) != `{"n": 1}` || j.Version != 1 {
		t.Fatalf("job changed by the replay: %+v", j)
	}
	if got := e.claim("b", "w", 10); len(got) != 0 {
		t.Fatalf("replay put a job in queue b: %+v", got)
	}

	// Finished jobs keep their key.
	c := e.claimOne("a", "w")
	if err := e.svc.Complete(e.ctx, e.actor.OrgID, commands.LeaseRef{JobID: c.ID.String(), WorkerID: "w", LeaseID: c.LeaseID}, nil); err != nil {
		t.Fatal(err)
	}
	after, err := e.svc.Enqueue(e.ctx, e.actor, []commands.NewJob{{QueueName: "a", Payload: payload(3), IdempotencyKey: &key}})
	if err != nil || after[0].Created || after[0].ID != id {
		t.Fatalf("after completion: %+v %v", after, err)
	}
	if n := e.enqueuedEvents(e.actor.OrgID); n != 1 {
		t.Fatalf("%d job.enqueued events", n)
	}

	// Another organization with the same key gets its own job.
	other := e.newOrg("globex")
	theirs, err := e.svc.Enqueue(e.ctx, other, []commands.NewJob{{QueueName: "a", Payload: payload(4), IdempotencyKey: &key}})
	if err != nil || !theirs[0].Created || theirs[0].ID == id {
		t.Fatalf("other org: %+v %v", theirs, err)
	}
	if n := e.enqueuedEvents(other.OrgID); n != 1 {
		t.Fatalf("other org: %d job.enqueued events", n)
	}
}
