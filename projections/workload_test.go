package projections_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/events"
	"github.com/spooled-go/spooled/internal/clock"
	"github.com/spooled-go/spooled/internal/testdb"
	"github.com/spooled-go/spooled/projections"
	"github.com/spooled-go/spooled/queries"
)

// lease is a claim as the worker that made it remembers it. Workers keep
// leases after they lapse, so stale calls happen as they do in production.
type lease struct {
	org     string
	job     uuid.UUID
	worker  string
	leaseID uuid.UUID
}

type workload struct {
	t      *testing.T
	ctx    context.Context
	rng    *rand.Rand
	svc    *commands.Service
	clk    *clock.Pinned
	orgs   []commands.Actor
	queues []string
	jobs   map[string][]uuid.UUID // by organization
	leases []lease
	ops    map[string]int
	// registered holds each organization's registered worker ids.
	registered map[string][]string
}

// TestRebuildMatchesLiveAfterRandomWorkload is invariant 3: after a random
// mix of every job command, the fold of the log equals the live projections
// row for row. Set PROJECTIONS_SEED to replay a logged seed.
func TestRebuildMatchesLiveAfterRandomWorkload(t *testing.T) {
	seed := time.Now().UnixNano()
	if s := os.Getenv("PROJECTIONS_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatalf("PROJECTIONS_SEED: %v", err)
		}
	}
	t.Logf("seed %d (replay with PROJECTIONS_SEED=%d)", seed, seed)

	ctx := context.Background()
	pool := testdb.New(t)
	clk := clock.NewPinned(time.Now())
	w := &workload{
		t: t, ctx: ctx, rng: rand.New(rand.NewSource(seed)), svc: newService(pool, clk), clk: clk,
		queues: []string{"emails", "reports", "billing.v2"}, jobs: map[string][]uuid.UUID{}, ops: map[string]int{},
		registered: map[string][]string{},
	}
	for _, slug := range []string{"acme", "globex", "initech"} {
		w.orgs = append(w.orgs, newOrg(t, w.svc, slug))
	}

	type op struct {
		name   string
		weight int
		run    func()
	}
	ops := []op{
		{"enqueue", 14, w.enqueue},
		{"enqueue_bulk", 5, w.enqueueBulk},
		{"claim", 18, w.claim},
		{"complete", 12, w.complete},
		{"fail", 11, w.fail},
		{"renew", 6, w.renew},
		{"cancel", 5, w.cancel},
		{"set_priority", 4, w.setPriority},
		{"retry", 3, w.retry},
		{"retry_dlq", 3, w.retryDeadLetters},
		{"purge_dlq", 2, w.purge},
		{"expire", 8, w.advanceAndExpire},
		{"register_worker", 3, w.registerWorker},
		{"deregister_worker", 2, w.deregisterWorker},
		{"sweep_worker_health", 2, w.sweepWorkerHealth},
		{"replay", 2, w.replay},
	}
	total := 0
	for _, o := range ops {
		total += o.weight
	}
	const steps = 600
	verified := map[string]int{} // most jobs per status a clean Verify compared
	for i := 1; i <= steps; i++ {
		n := w.rng.Intn(total)
		for _, o := range ops {
			if n < o.weight {
				o.run()
				w.ops[o.name]++
				break
			}
			n -= o.weight
		}
		if i%150 == 0 {
			mustVerify(t, pool, fmt.Sprintf("after %d commands", i))
			// Leases come and go with the clock, so how many jobs a
			// checkpoint finds in each status varies; the most any clean
			// checkpoint compared is what the test proved.
			for status, n := range countRows(t, pool, "jobs", "status") {
				verified[status] = max(verified[status], n)
			}
		}
	}
	t.Logf("commands run: %v", w.ops)
	w.coverRareCorners()
	// A last checkpoint after the corner cases, which leave at least five
	// jobs in every status whatever the seed.
	mustVerify(t, pool, "after the corner cases")
	for status, n := range countRows(t, pool, "jobs", "status") {
		verified[status] = max(verified[status], n)
	}

	// The workload must have reached every corner of the fold, or a clean
	// verify proves little.
	types := countRows(t, pool, "job_events WHERE stream_type = 'job'", "event_type")
	for _, typ := range []string{events.JobEnqueued, events.JobClaimed, events.JobCompleted, events.JobFailed,
		events.JobRetryScheduled, events.JobDeadLettered, events.JobCancelled, events.JobLeaseExpired,
		events.JobLeaseRenewed, events.JobAttemptRejected, events.JobPriorityChanged, events.JobRetried,
		events.JobPurged, events.JobReleased, events.JobReplayed} {
		if types[typ] == 0 {
			t.Errorf("workload appended no %s event: %v", typ, types)
		}
	}
	live := countRows(t, pool, "jobs", "status")
	t.Logf("live jobs by status: %v; events by type: %v", live, types)
	for _, status := range []string{"pending", "scheduled", "processing", "completed", "deadletter", "cancelled"} {
		if verified[status] < 5 {
			t.Errorf("no checkpoint compared more than %d %s jobs: the workload is too thin to prove the fold",
				verified[status], status)
		}
	}

	// A committed rebuild holds the same rows, counted per status.
	st, err := projections.Rebuild(ctx, pool)
	if err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	t.Logf("rebuild: %+v", st)
	rebuilt := countRows(t, pool, "jobs_rebuild", "status")
	if fmt.Sprint(rebuilt) != fmt.Sprint(live) {
		t.Errorf("jobs by status: rebuilt %v, live %v", rebuilt, live)
	}
	for _, c := range []struct {
		table string
		got   int64
	}{{"jobs", st.Jobs}, {"pending_jobs", st.Pending}, {"processing_jobs", st.Processing}} {
		if want := sum(countRows(t, pool, c.table, "true")); int(c.got) != want {
			t.Errorf("%s: rebuilt %d rows, live has %d", c.table, c.got, want)
		}
		if again := sum(countRows(t, pool, c.table+"_rebuild", "true")); int(c.got) != again {
			t.Errorf("%s_rebuild holds %d rows, the rebuild wrote %d", c.table, again, c.got)
		}
	}
	if want := sum(types); int(st.Events) != want {
		t.Errorf("rebuild read %d events, the log holds %d", st.Events, want)
	}
}

func (w *workload) org() commands.Actor { return w.orgs[w.rng.Intn(len(w.orgs))] }

func (w *workload) queue() string { return w.queues[w.rng.Intn(len(w.queues))] }

func (w *workload) worker() string { return "worker-" + strconv.Itoa(w.rng.Intn(4)) }

// someJob is any job the organization ever enqueued, whatever became of it.
func (w *workload) someJob(org string) (uuid.UUID, bool) {
	ids := w.jobs[org]
	if len(ids) == 0 {
		return uuid.Nil, false
	}
	return ids[w.rng.Intn(len(ids))], true
}

func (w *workload) newJob(org string) commands.NewJob {
	r := w.rng
	j := commands.NewJob{
		QueueName: w.queue(),
		Payload:   json.RawMessage(fmt.Sprintf(`{"n":%d,"nested":{"ok":true,"list":[1,2.5,"x"]}}`, r.Intn(1000))),
	}
	if r.Intn(3) > 0 {
		p := r.Intn(21) - 10
		j.Priority = &p
	}
	if r.Intn(4) > 0 {
		m := r.Intn(4)
		j.MaxRetries = &m
	}
	if r.Intn(4) == 0 {
		s := r.Intn(3600) + 1
		j.TimeoutSeconds = &s
	}
	switch r.Intn(6) {
	case 0: // in the future, with sub-microsecond noise the database rounds away
		at := w.svc.Now().Add(time.Duration(r.Intn(40)+1)*time.Minute + time.Duration(r.Intn(1000)))
		j.ScheduledAt = &at
	case 1: // in the past: ready at once
		at := w.svc.Now().Add(-time.Duration(r.Intn(60)+1) * time.Minute)
		j.ScheduledAt = &at
	}
	if r.Intn(8) == 0 {
		at := w.svc.Now().Add(time.Duration(r.Intn(30)+1) * time.Minute)
		j.ExpiresAt = &at
	}
	switch r.Intn(5) {
	case 0:
		j.Tags = json.RawMessage(`{"env":"prod","team":"` + w.queue() + `"}`)
	case 1:
		j.Tags = json.RawMessage(`["a","b"]`)
	case 2:
		j.Tags = json.RawMessage(`null`)
	}
	if r.Intn(3) == 0 {
		// A small key space, so keys repeat within and across calls.
		k := "key-" + strconv.Itoa(r.Intn(15))
		j.IdempotencyKey = &k
	}
	if r.Intn(6) == 0 {
		hook := "https://example.com/hooks/" + strconv.Itoa(r.Intn(5))
		j.CompletionWebhook = &hook
	}
	if r.Intn(8) == 0 {
		if parent, ok := w.someJob(org); ok {
			p := parent.String()
			j.ParentJobID = &p
		}
	}
	return j
}

func (w *workload) enqueue() {
	a := w.org()
	res, err := w.svc.Enqueue(w.ctx, a, []commands.NewJob{w.newJob(a.OrgID)})
	if w.parentGone(err) {
		return
	}
	w.check("enqueue", err)
	w.record(a.OrgID, res)
}

func (w *workload) enqueueBulk() {
	a := w.org()
	batch := make([]commands.NewJob, w.rng.Intn(7)+2)
	for i := range batch {
		batch[i] = w.newJob(a.OrgID)
	}
	if w.rng.Intn(3) == 0 {
		k := "bulk-dup-" + strconv.Itoa(w.rng.Intn(5))
		batch[0].IdempotencyKey, batch[len(batch)-1].IdempotencyKey = &k, &k
	}
	res, err := w.svc.EnqueueBulk(w.ctx, a, batch)
	if w.parentGone(err) {
		return
	}
	w.check("enqueue bulk", err)
	// Two items with one key are one job.
	byKey := map[string]uuid.UUID{}
	for i, j := range batch {
		if j.IdempotencyKey == nil || res[i].Err != nil {
			continue
		}
		if id, ok := byKey[*j.IdempotencyKey]; ok && id != res[i].ID {
			w.t.Fatalf("key %s named jobs %s and %s in one batch", *j.IdempotencyKey, id, res[i].ID)
		}
		byKey[*j.IdempotencyKey] = res[i].ID
	}
	w.record(a.OrgID, res)
}

// parentGone accepts the one enqueue refusal the workload can cause: a
// parent it picked was purged meanwhile (named bare for one job, in its
// item, "jobs[2].parent_job_id", for a batch).
func (w *workload) parentGone(err error) bool {
	var v *commands.ValidationError
	return errors.As(err, &v) && strings.HasSuffix(v.Field, "parent_job_id") && v.Code == "not_found"
}

func (w *workload) record(org string, res []commands.EnqueueResult) {
	for _, r := range res {
		if r.Err != nil {
			w.t.Fatalf("enqueue item refused: %v", r.Err)
		}
		if r.Created {
			w.jobs[org] = append(w.jobs[org], r.ID)
		}
	}
}

func (w *workload) claim() {
	a := w.org()
	secs := 0 // the configured lease
	switch w.rng.Intn(4) {
	case 0:
		secs = 5 + w.rng.Intn(56)
	case 1, 2:
		secs = 60 + w.rng.Intn(841)
	}
	worker := w.workerFor(a.OrgID)
	jobs, err := w.svc.Claim(w.ctx, a.OrgID, commands.ClaimRequest{
		QueueName: w.queue(), WorkerID: worker, Limit: w.rng.Intn(5) + 1, LeaseSecs: secs,
	})
	w.check("claim", err)
	for _, j := range jobs {
		if j.LeaseID == nil || j.AssignedWorkerID == nil || *j.AssignedWorkerID != worker {
			w.t.Fatalf("claimed job %s without this worker's lease", j.ID)
		}
		w.leases = append(w.leases, lease{org: a.OrgID, job: j.ID, worker: worker, leaseID: *j.LeaseID})
	}
}

// leaseRef picks a remembered lease and, now and then, spoils it: another
// worker, another lease id, or no lease id at all (which Spooled allows).
func (w *workload) leaseRef() (string, commands.LeaseRef, bool) {
	if len(w.leases) == 0 {
		return "", commands.LeaseRef{}, false
	}
	// Recent leases are more likely to still hold.
	i := len(w.leases) - 1 - w.rng.Intn(min(len(w.leases), 12))
	if w.rng.Intn(5) == 0 {
		i = w.rng.Intn(len(w.leases))
	}
	l := w.leases[i]
	ref := commands.LeaseRef{JobID: l.job.String(), WorkerID: l.worker, LeaseID: &l.leaseID}
	switch w.rng.Intn(10) {
	case 0:
		ref.WorkerID = "intruder"
	case 1:
		other := uuid.New()
		ref.LeaseID = &other
	case 2:
		ref.LeaseID = nil
	}
	return l.org, ref, true
}

// leaseRefused is the expected answer to a stale or foreign worker call.
func (w *workload) leaseRefused(err error) bool {
	var le *commands.LeaseError
	return errors.As(err, &le)
}

func (w *workload) complete() {
	org, ref, ok := w.leaseRef()
	if !ok {
		return
	}
	var result json.RawMessage
	switch w.rng.Intn(6) {
	case 0: // no result
	case 1:
		result = json.RawMessage(`null`)
	case 5: // still JSON null: stored as SQL NULL, like the bare spelling
		result = json.RawMessage(" null\n")
	case 2:
		result = json.RawMessage(`"sent"`)
	default:
		result = json.RawMessage(fmt.Sprintf(`{"delivered":%d,"ids":["a","b"]}`, w.rng.Intn(100)))
	}
	err := w.svc.Complete(w.ctx, org, ref, result)
	if w.leaseRefused(err) {
		return
	}
	w.check("complete", err)
}

func (w *workload) fail() {
	org, ref, ok := w.leaseRef()
	if !ok {
		return
	}
	_, err := w.svc.Fail(w.ctx, org, ref, "error #"+strconv.Itoa(w.rng.Intn(100)), w.rng.Intn(6) > 0)
	if w.leaseRefused(err) {
		return
	}
	w.check("fail", err)
}

func (w *workload) renew() {
	org, ref, ok := w.leaseRef()
	if !ok {
		return
	}
	_, err := w.svc.RenewLease(w.ctx, org, ref, []int{0, 10, 60, 300}[w.rng.Intn(4)])
	if w.leaseRefused(err) {
		return
	}
	w.check("renew lease", err)
}

// stateRefused is the expected answer to a management command on a job in
// the wrong state, or one that was purged.
func (w *workload) stateRefused(err error) bool {
	return errors.Is(err, commands.ErrConflict) || errors.Is(err, commands.ErrNotFound)
}

func (w *workload) cancel() {
	a := w.org()
	id, ok := w.someJob(a.OrgID)
	if !ok {
		return
	}
	if err := w.svc.Cancel(w.ctx, a, id.String()); !w.stateRefused(err) {
		w.check("cancel", err)
	}
}

func (w *workload) setPriority() {
	a := w.org()
	id, ok := w.someJob(a.OrgID)
	if !ok {
		return
	}
	if _, err := w.svc.SetPriority(w.ctx, a, id.String(), w.rng.Intn(201)-100); !w.stateRefused(err) {
		w.check("set priority", err)
	}
}

func (w *workload) retry() {
	a := w.org()
	id, ok := w.someJob(a.OrgID)
	if !ok {
		return
	}
	if _, err := w.svc.Retry(w.ctx, a, id.String()); !w.stateRefused(err) {
		w.check("retry", err)
	}
}

func (w *workload) retryDeadLetters() {
	a := w.org()
	var ids []string
	var queue *string
	switch w.rng.Intn(3) {
	case 0:
		for range w.rng.Intn(5) + 1 {
			if id, ok := w.someJob(a.OrgID); ok {
				ids = append(ids, id.String())
			}
		}
	case 1:
		q := w.queue()
		queue = &q
	}
	_, err := w.svc.RetryDeadLetters(w.ctx, a, ids, queue, w.rng.Intn(4)+1)
	w.check("retry dead letters", err)
}

func (w *workload) purge() {
	a := w.org()
	var queue *string
	if w.rng.Intn(2) == 0 {
		q := w.queue()
		queue = &q
	}
	var olderThan *time.Time
	if w.rng.Intn(3) == 0 {
		t := w.svc.Now().Add(-5 * time.Minute)
		olderThan = &t
	}
	_, err := w.svc.PurgeDeadLetters(w.ctx, a, queue, olderThan, w.rng.Intn(3)+1)
	w.check("purge dead letters", err)
}

// advanceAndExpire moves time on, sometimes by seconds (leases run out),
// sometimes by minutes (backoffs and schedules come due), and runs the
// reaper, sometimes in small sweeps so some expired leases wait for the next.
func (w *workload) advanceAndExpire() {
	if w.rng.Intn(3) > 0 {
		w.clk.Advance(time.Duration(w.rng.Intn(45)+1) * time.Second)
	} else {
		w.clk.Advance(time.Duration(w.rng.Intn(5)+1) * time.Minute)
	}
	_, err := w.svc.ExpireLeases(w.ctx, []int{2, 100}[w.rng.Intn(2)])
	w.check("expire leases", err)
}

// coverRareCorners makes sure the rare transitions happened at least once,
// whatever the seed: a registered worker that deregisters while holding a
// lease (job.released), and a replay (job.replayed).
func (w *workload) coverRareCorners() {
	a := w.orgs[0]
	res, err := w.svc.Enqueue(w.ctx, a, []commands.NewJob{{QueueName: "corners", Payload: json.RawMessage(`{}`)}})
	w.check("enqueue corner job", err)
	w.jobs[a.OrgID] = append(w.jobs[a.OrgID], res[0].ID)
	one := 1
	wk, err := w.svc.RegisterWorker(w.ctx, a, commands.NewWorker{QueueName: "corners", Hostname: "corner-host", MaxConcurrency: &one})
	w.check("register corner worker", err)
	jobs, err := w.svc.Claim(w.ctx, a.OrgID, commands.ClaimRequest{QueueName: "corners", WorkerID: wk.ID})
	w.check("claim corner job", err)
	if len(jobs) != 1 {
		w.t.Fatalf("corner claim got %d jobs", len(jobs))
	}
	w.check("deregister corner worker", w.svc.DeregisterWorker(w.ctx, a, wk.ID))
	r, err := w.svc.Replay(w.ctx, a, res[0].ID.String())
	w.check("replay corner job", err)
	w.jobs[a.OrgID] = append(w.jobs[a.OrgID], r.JobID)

	// Five jobs in each status, in queues of their own, so the final
	// checkpoint compares every kind of row.
	zero := 0
	later := w.clk.Now().Add(24 * time.Hour)
	batch := func(queue string, job commands.NewJob) []uuid.UUID {
		jobs := make([]commands.NewJob, 5)
		for i := range jobs {
			jobs[i] = job
			jobs[i].QueueName = queue
			jobs[i].Payload = json.RawMessage(`{}`)
		}
		res, err := w.svc.Enqueue(w.ctx, a, jobs)
		w.check("enqueue corner batch", err)
		ids := make([]uuid.UUID, len(res))
		for i, r := range res {
			ids[i] = r.ID
			w.jobs[a.OrgID] = append(w.jobs[a.OrgID], r.ID)
		}
		return ids
	}
	claimAll := func(queue string) []queries.Job {
		jobs, err := w.svc.Claim(w.ctx, a.OrgID, commands.ClaimRequest{QueueName: queue, WorkerID: "corner", Limit: 5, LeaseSecs: 3600})
		w.check("claim corner batch", err)
		if len(jobs) != 5 {
			w.t.Fatalf("corner claim of %s got %d jobs", queue, len(jobs))
		}
		return jobs
	}
	batch("corner-pending", commands.NewJob{})
	batch("corner-scheduled", commands.NewJob{ScheduledAt: &later})
	batch("corner-processing", commands.NewJob{})
	claimAll("corner-processing")
	batch("corner-completed", commands.NewJob{})
	for _, j := range claimAll("corner-completed") {
		w.check("complete corner job", w.svc.Complete(w.ctx, a.OrgID, commands.LeaseRef{JobID: j.ID.String(), WorkerID: "corner", LeaseID: j.LeaseID}, nil))
	}
	batch("corner-dead", commands.NewJob{MaxRetries: &zero})
	for _, j := range claimAll("corner-dead") {
		_, err := w.svc.Fail(w.ctx, a.OrgID, commands.LeaseRef{JobID: j.ID.String(), WorkerID: "corner", LeaseID: j.LeaseID}, "corner", true)
		w.check("fail corner job", err)
	}
	for _, id := range batch("corner-cancelled", commands.NewJob{}) {
		w.check("cancel corner job", w.svc.Cancel(w.ctx, a, id.String()))
	}
}

// workerFor is a free-text worker id, or now and then one of the org's
// registered workers (whose claims are capped by max_concurrency).
func (w *workload) workerFor(org string) string {
	if ids := w.registered[org]; len(ids) > 0 && w.rng.Intn(2) == 0 {
		return ids[w.rng.Intn(len(ids))]
	}
	return w.worker()
}

func (w *workload) registerWorker() {
	a := w.org()
	conc := 1 + w.rng.Intn(4)
	wk, err := w.svc.RegisterWorker(w.ctx, a, commands.NewWorker{
		QueueName: w.queue(), Hostname: "host-" + strconv.Itoa(w.rng.Intn(3)), MaxConcurrency: &conc,
	})
	w.check("register worker", err)
	w.registered[a.OrgID] = append(w.registered[a.OrgID], wk.ID)
}

// deregisterWorker hands a registered worker's leases back (job.released).
func (w *workload) deregisterWorker() {
	a := w.org()
	ids := w.registered[a.OrgID]
	if len(ids) == 0 {
		return
	}
	i := w.rng.Intn(len(ids))
	w.check("deregister worker", w.svc.DeregisterWorker(w.ctx, a, ids[i]))
	w.registered[a.OrgID] = append(ids[:i:i], ids[i+1:]...)
}

// sweepWorkerHealth: registered workers never heartbeat here, so once the
// clock has moved five intervals on they go offline and their leases come
// back through the lease-expiry path.
func (w *workload) sweepWorkerHealth() {
	_, err := w.svc.SweepWorkerHealth(w.ctx, 10*time.Second)
	w.check("sweep worker health", err)
}

// replay enqueues a copy of a random job (dead-lettered ones most often
// matter, but any job can be replayed); a purged original still replays.
func (w *workload) replay() {
	a := w.org()
	id, ok := w.someJob(a.OrgID)
	if !ok {
		return
	}
	r, err := w.svc.Replay(w.ctx, a, id.String())
	if w.stateRefused(err) {
		return
	}
	w.check("replay", err)
	w.jobs[a.OrgID] = append(w.jobs[a.OrgID], r.JobID)
}

func (w *workload) check(what string, err error) {
	w.t.Helper()
	if err != nil {
		w.t.Fatalf("%s: unexpected error: %v", what, err)
	}
}
