package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/spooled-go/spooled/internal/clock"
	"github.com/spooled-go/spooled/projections"
)

// statsOrg is one organization of the stats workload, as its clients know
// it: the jobs they created, the leases workers hold (kept after they
// lapse, so stale calls happen), the workers registered.
type statsOrg struct {
	slug, id, key string
	queues        []string
	jobs          []string
	leases        []statsLease
	workers       []string
}

type statsLease struct{ job, worker, lease string }

type statsWorkload struct {
	t     *testing.T
	h     *harness
	clk   *clock.Pinned
	start time.Time
	rng   *rand.Rand
	orgs  []*statsOrg
	quiet *statsOrg // an organization that never does anything
	ops   map[string]int
	seen  map[string]int64 // the largest value each compared figure reached
}

// TestStatsEqualFoldOfLog: after a random workload through the REST API
// across organizations, queues and hours (pinned clock), GET /jobs/stats,
// /queues/{name}/stats, /dashboard and /jobs/status answer exactly what a
// brute-force fold of each organization's own log gives. Set STATS_SEED to
// replay a logged seed.
func TestStatsEqualFoldOfLog(t *testing.T) {
	t.Parallel()
	seed := time.Now().UnixNano()
	if s := os.Getenv("STATS_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatalf("STATS_SEED: %v", err)
		}
	}
	t.Logf("seed %d (replay with STATS_SEED=%d)", seed, seed)

	// Start a little after an hour begins, so the first buckets are full
	// hours of activity; the log's partitions cover this month and the
	// next three, far more than the workload's two days.
	start := time.Now().UTC().Truncate(time.Hour).Add(5*time.Minute + 123456*time.Microsecond)
	clk := clock.NewPinned(start)
	h := newHarnessClock(t, clk)
	w := &statsWorkload{t: t, h: h, clk: clk, start: start, rng: rand.New(rand.NewSource(seed)),
		ops: map[string]int{}, seen: map[string]int64{}}
	common := []string{"emails", "reports", "billing.v2"}
	for _, slug := range []string{"acme", "globex", "initech"} {
		id, key := h.org(slug)
		// The plan's per-organization request rate is real time; this test
		// is about the numbers, not the limiter.
		if _, err := h.pool.Exec(context.Background(),
			`UPDATE organizations SET custom_limits = '{"rate_limit_requests_per_second": 0}' WHERE id = $1`, id); err != nil {
			t.Fatal(err)
		}
		o := &statsOrg{slug: slug, id: id, key: key, queues: common}
		if slug == "globex" {
			o.queues = append(slices.Clone(common), "only.globex")
		}
		if slug == "initech" {
			w.quiet = o
			continue
		}
		w.orgs = append(w.orgs, o)
	}

	type op struct {
		name   string
		weight int
		run    func(*statsOrg)
	}
	ops := []op{
		{"enqueue", 14, w.enqueue},
		{"enqueue_bulk", 5, w.enqueueBulk},
		{"claim", 18, w.claim},
		{"complete", 16, w.complete},
		{"fail", 9, w.fail},
		{"heartbeat", 3, w.heartbeat},
		{"cancel", 4, w.cancel},
		{"set_priority", 2, w.setPriority},
		{"retry", 3, w.retryJob},
		{"retry_dlq", 3, w.retryDeadLetters},
		{"purge_dlq", 2, w.purge},
		{"expire_leases", 3, w.expireLeases},
		{"tick", 10, func(*statsOrg) { w.advance(time.Duration(w.rng.Int63n(int64(5 * time.Second)))) }},
		{"minutes", 5, func(*statsOrg) {
			w.advance(time.Duration(1+w.rng.Intn(20))*time.Minute + time.Duration(w.rng.Int63n(int64(time.Second))))
		}},
		{"hours", 1, func(*statsOrg) {
			w.advance(time.Duration(1+w.rng.Intn(3))*time.Hour + time.Duration(w.rng.Intn(60))*time.Minute)
		}},
		{"pause", 2, w.pause},
		{"resume", 3, w.resume},
		{"configure", 1, w.configure},
		{"register_worker", 2, w.registerWorker},
		{"deregister_worker", 1, w.deregisterWorker},
		{"worker_leaves_holding_jobs", 1, w.workerLeavesHoldingJobs},
	}
	total := 0
	for _, o := range ops {
		total += o.weight
	}
	step := func() {
		n := w.rng.Intn(total)
		org := w.orgs[0]
		if w.rng.Intn(100) >= 55 {
			org = w.orgs[1]
		}
		for _, o := range ops {
			if n < o.weight {
				o.run(org)
				w.ops[o.name]++
				return
			}
			n -= o.weight
		}
	}

	const steps = 800
	for i := 1; i <= steps; i++ {
		step()
		if i%100 == 0 {
			w.check(fmt.Sprintf("after %d commands", i))
		}
		switch i {
		case 200:
			// A quiet night: the activity so far leaves the 24 h window
			// before the end.
			w.advance(20 * time.Hour)
		case 300:
			// Exactly on an hour boundary: the 1 h window is the instant.
			w.clk.Set(w.clk.Now().UTC().Truncate(time.Hour).Add(time.Hour))
			w.check("at the top of an hour")
			for range 5 {
				step()
			}
			w.check("at the top of an hour, after activity")
		case 450:
			// The last microsecond of an hour.
			w.clk.Set(w.clk.Now().UTC().Truncate(time.Hour).Add(time.Hour - time.Microsecond))
			w.check("at the end of an hour")
		case 650:
			if gone := w.clk.Now().Sub(w.start); gone < 26*time.Hour {
				w.advance(26*time.Hour - gone)
			}
		}
	}
	// A random workload can miss a path (no dead letter left to purge when
	// a purge comes, say): keep going, checking as before, until every
	// event type and figure the numbers depend on has been reached. Each
	// extra hundred commands misses a path with small odds, so the cap is
	// far out of reach unless a path is broken.
	const maxExtraSteps = 3000
	for extra := 1; len(w.missing()) > 0; extra++ {
		if extra > maxExtraSteps {
			break
		}
		step()
		if extra%100 == 0 {
			w.check(fmt.Sprintf("after %d commands", steps+extra))
		}
	}
	w.check("at the end")
	t.Logf("commands run: %v; clock advanced %s", w.ops, w.clk.Now().Sub(w.start))
	t.Logf("events by type: %v", w.eventTypes())
	t.Logf("largest values compared: %v", w.seen)
	// The workload must have reached every path the numbers depend on, or
	// equal numbers prove little.
	for _, m := range w.missing() {
		t.Error(m)
	}
}

// statsEventTypes are the events whose folds the stats depend on;
// statsFigures are the figures a check must have seen nonzero.
var (
	statsEventTypes = []string{"job.enqueued", "job.claimed", "job.completed", "job.failed", "job.retry_scheduled",
		"job.deadlettered", "job.cancelled", "job.lease_expired", "job.retried", "job.purged", "job.released",
		"job.attempt_rejected", "job.priority_changed", "queue.paused", "queue.resumed", "worker.registered"}
	statsFigures = []string{"pending", "scheduled", "processing", "completed", "deadletter", "cancelled",
		"completed_24h", "failed_24h", "completed_jobs_24h", "failed_jobs_24h", "deadlettered_jobs_24h",
		"jobs_created_1h", "jobs_completed_1h", "avg_wait_time_ms", "avg_processing_time_ms", "max_job_age_seconds",
		"active_workers", "paused_queues", "events_before_window", "status_entries", "workers"}
)

// eventTypes counts the log's events by type, across organizations.
func (w *statsWorkload) eventTypes() map[string]int {
	w.t.Helper()
	types := map[string]int{}
	rows, err := w.h.pool.Query(context.Background(), `SELECT event_type, count(*) FROM job_events GROUP BY 1`)
	if err != nil {
		w.t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var typ string
		var n int
		if err := rows.Scan(&typ, &n); err != nil {
			w.t.Fatal(err)
		}
		types[typ] = n
	}
	if err := rows.Err(); err != nil {
		w.t.Fatal(err)
	}
	return types
}

// missing names the paths the workload has not reached yet: event types
// never appended, and figures no check has compared nonzero.
func (w *statsWorkload) missing() []string {
	var gaps []string
	types := w.eventTypes()
	for _, typ := range statsEventTypes {
		if types[typ] == 0 {
			gaps = append(gaps, "the workload appended no "+typ+" event")
		}
	}
	for _, k := range statsFigures {
		if w.seen[k] == 0 {
			gaps = append(gaps, "no check compared a nonzero "+k+": the workload is too thin to prove the stats")
		}
	}
	return gaps
}

func (w *statsWorkload) queue(o *statsOrg) string { return o.queues[w.rng.Intn(len(o.queues))] }

// advance moves the clock by d, to the microsecond (what Postgres keeps).
func (w *statsWorkload) advance(d time.Duration) { w.clk.Advance(d.Truncate(time.Microsecond)) }

func (w *statsWorkload) at(d time.Duration) string {
	return w.clk.Now().Add(d).Format(time.RFC3339Nano)
}

func (w *statsWorkload) accept(res response, what string, codes ...int) response {
	w.t.Helper()
	if !slices.Contains(codes, res.status) {
		w.t.Fatalf("%s: status %d, want one of %v; body %s", what, res.status, codes, res.raw)
	}
	return res
}

func (w *statsWorkload) job(o *statsOrg) (string, bool) {
	if len(o.jobs) == 0 {
		return "", false
	}
	return o.jobs[w.rng.Intn(len(o.jobs))], true
}

// takeLease removes and returns a random remembered lease.
func (w *statsWorkload) takeLease(o *statsOrg) (statsLease, bool) {
	if len(o.leases) == 0 {
		return statsLease{}, false
	}
	// Workers mostly finish what they claimed last.
	i := len(o.leases) - 1
	if w.rng.Intn(2) == 0 {
		i = w.rng.Intn(len(o.leases))
	}
	l := o.leases[i]
	o.leases = slices.Delete(o.leases, i, i+1)
	return l, true
}

func (w *statsWorkload) enqueue(o *statsOrg) {
	body := map[string]any{"queue_name": w.queue(o), "payload": map[string]any{"n": w.rng.Intn(1000)},
		"priority": w.rng.Intn(11) - 5}
	if w.rng.Intn(2) == 0 {
		body["max_retries"] = w.rng.Intn(3)
	}
	switch r := w.rng.Intn(10); {
	case r < 3:
		body["scheduled_at"] = w.at(time.Duration(1+w.rng.Intn(120))*time.Minute + time.Duration(w.rng.Intn(1000))*time.Millisecond)
	case r == 3:
		body["scheduled_at"] = w.at(-10 * time.Minute)
	}
	if w.rng.Intn(8) == 0 {
		body["idempotency_key"] = fmt.Sprintf("idem-%d", w.rng.Intn(12))
	}
	res := w.accept(w.h.do("POST", "/api/v1/jobs", o.key, body), "enqueue", 201, 200)
	if res.status == 201 {
		o.jobs = append(o.jobs, res.json["id"].(string))
	}
}

func (w *statsWorkload) enqueueBulk(o *statsOrg) {
	var jobs []any
	for i := range 1 + w.rng.Intn(8) {
		j := map[string]any{"payload": i}
		if w.rng.Intn(4) == 0 {
			j["scheduled_at"] = w.at(time.Duration(1+w.rng.Intn(90)) * time.Minute)
		}
		if w.rng.Intn(3) == 0 {
			j["priority"] = w.rng.Intn(21) - 10
		}
		jobs = append(jobs, j)
	}
	body := map[string]any{"queue_name": w.queue(o), "jobs": jobs}
	if w.rng.Intn(2) == 0 {
		body["default_max_retries"] = w.rng.Intn(3)
	}
	res := w.h.do("POST", "/api/v1/jobs/bulk", o.key, body).expect(200)
	for _, s := range res.json["succeeded"].([]any) {
		m := s.(map[string]any)
		if m["created"] == true {
			o.jobs = append(o.jobs, m["job_id"].(string))
		}
	}
}

func (w *statsWorkload) claim(o *statsOrg) {
	worker := []string{"w-a", "w-b", "w-c"}[w.rng.Intn(3)]
	if len(o.workers) > 0 && w.rng.Intn(2) == 0 {
		worker = o.workers[w.rng.Intn(len(o.workers))]
	}
	body := map[string]any{"queue_name": w.queue(o), "worker_id": worker, "limit": 1 + w.rng.Intn(4)}
	if w.rng.Intn(5) > 0 {
		body["lease_duration_secs"] = []int{30, 600, 1800, 3600, 3600}[w.rng.Intn(5)]
	}
	res := w.h.do("POST", "/api/v1/jobs/claim", o.key, body).expect(200)
	for _, j := range res.json["jobs"].([]any) {
		m := j.(map[string]any)
		o.leases = append(o.leases, statsLease{job: m["id"].(string), worker: worker, lease: m["lease_id"].(string)})
	}
}

func (w *statsWorkload) complete(o *statsOrg) {
	l, ok := w.takeLease(o)
	if !ok {
		return
	}
	// A lapsed or lost lease is refused with 400 (Spooled's answer).
	w.accept(w.h.do("POST", "/api/v1/jobs/"+l.job+"/complete", o.key,
		map[string]any{"worker_id": l.worker, "lease_id": l.lease, "result": map[string]any{"ok": true}}), "complete", 200, 400)
}

func (w *statsWorkload) fail(o *statsOrg) {
	l, ok := w.takeLease(o)
	if !ok {
		return
	}
	w.accept(w.h.do("POST", "/api/v1/jobs/"+l.job+"/fail", o.key,
		map[string]any{"worker_id": l.worker, "lease_id": l.lease, "error": "boom"}), "fail", 200, 404)
}

func (w *statsWorkload) heartbeat(o *statsOrg) {
	if len(o.leases) == 0 {
		return
	}
	l := o.leases[w.rng.Intn(len(o.leases))]
	w.accept(w.h.do("POST", "/api/v1/jobs/"+l.job+"/heartbeat", o.key,
		map[string]any{"worker_id": l.worker, "lease_id": l.lease, "lease_duration_secs": 120}), "heartbeat", 200, 404)
}

func (w *statsWorkload) cancel(o *statsOrg) {
	if id, ok := w.job(o); ok {
		w.accept(w.h.do("DELETE", "/api/v1/jobs/"+id, o.key, nil), "cancel", 204, 409, 404)
	}
}

func (w *statsWorkload) setPriority(o *statsOrg) {
	if id, ok := w.job(o); ok {
		w.accept(w.h.do("PUT", "/api/v1/jobs/"+id+"/priority", o.key, map[string]any{"priority": w.rng.Intn(201) - 100}),
			"set priority", 200, 409, 404)
	}
}

func (w *statsWorkload) retryJob(o *statsOrg) {
	if id, ok := w.job(o); ok {
		w.accept(w.h.do("POST", "/api/v1/jobs/"+id+"/retry", o.key, nil), "retry", 200, 409, 404)
	}
}

func (w *statsWorkload) retryDeadLetters(o *statsOrg) {
	var body any = map[string]any{}
	switch w.rng.Intn(4) {
	case 1:
		body = map[string]any{"queue_name": w.queue(o)}
	case 2:
		var ids []string
		for range 5 {
			if id, ok := w.job(o); ok {
				ids = append(ids, id)
			}
		}
		body = map[string]any{"job_ids": ids}
	case 3:
		body = map[string]any{"limit": 1 + w.rng.Intn(3)}
	}
	w.h.do("POST", "/api/v1/jobs/dlq/retry", o.key, body).expect(200)
}

func (w *statsWorkload) purge(o *statsOrg) {
	body := map[string]any{"confirm": true}
	if w.rng.Intn(2) == 0 {
		body = map[string]any{"queue_name": w.queue(o)}
	}
	w.h.do("POST", "/api/v1/jobs/dlq/purge", o.key, body).expect(200)
}

// expireLeases lets leases lapse and runs the reaper (every organization).
func (w *statsWorkload) expireLeases(*statsOrg) {
	w.advance(31*time.Second + time.Duration(w.rng.Int63n(int64(10*time.Minute))))
	if _, err := w.h.cmd.ExpireLeases(context.Background(), 1000); err != nil {
		w.t.Fatalf("expire leases: %v", err)
	}
}

func (w *statsWorkload) pause(o *statsOrg) {
	w.h.do("POST", "/api/v1/queues/"+w.queue(o)+"/pause", o.key, map[string]any{"reason": "workload"}).expect(200)
}

func (w *statsWorkload) resume(o *statsOrg) {
	w.accept(w.h.do("POST", "/api/v1/queues/"+w.queue(o)+"/resume", o.key, nil), "resume", 200, 404)
}

func (w *statsWorkload) configure(o *statsOrg) {
	body := map[string]any{"max_retries": w.rng.Intn(4), "default_timeout": 30 + w.rng.Intn(600)}
	switch w.rng.Intn(3) {
	case 1:
		body["max_concurrent_jobs"] = 3
	case 2:
		body["max_concurrent_jobs"] = nil
	}
	w.h.do("PUT", "/api/v1/queues/"+w.queue(o), o.key, body).expect(200)
}

func (w *statsWorkload) registerWorker(o *statsOrg) {
	res := w.h.do("POST", "/api/v1/workers/register", o.key, map[string]any{
		"queue_name": w.queue(o), "queue_names": []string{w.queue(o)}, "hostname": "host-" + o.slug,
	}).expect(201)
	o.workers = append(o.workers, res.json["id"].(string))
}

func (w *statsWorkload) deregisterWorker(o *statsOrg) {
	if len(o.workers) == 0 {
		return
	}
	i := w.rng.Intn(len(o.workers))
	w.h.do("DELETE", "/api/v1/workers/"+o.workers[i], o.key, nil).expect(204)
	o.workers = slices.Delete(o.workers, i, i+1)
}

// workerLeavesHoldingJobs registers a worker, lets it claim (from the
// first queue of a random order that hands it jobs) and deregisters it: its
// leased jobs go back to their queues (job.released).
func (w *statsWorkload) workerLeavesHoldingJobs(o *statsOrg) {
	q := w.queue(o)
	w.enqueue(o)
	res := w.h.do("POST", "/api/v1/workers/register", o.key,
		map[string]any{"queue_name": q, "queue_names": o.queues, "hostname": "short-lived"}).expect(201)
	id := res.json["id"].(string)
	for _, i := range w.rng.Perm(len(o.queues)) {
		res = w.h.do("POST", "/api/v1/jobs/claim", o.key,
			map[string]any{"queue_name": o.queues[i], "worker_id": id, "limit": 2}).expect(200)
		jobs := res.json["jobs"].([]any)
		for _, j := range jobs {
			m := j.(map[string]any)
			// The worker's lease stays known, so a late complete is tried.
			o.leases = append(o.leases, statsLease{job: m["id"].(string), worker: id, lease: m["lease_id"].(string)})
		}
		if len(jobs) > 0 {
			break
		}
	}
	w.h.do("POST", "/api/v1/workers/"+id+"/deregister", o.key, nil).expect(204)
}

// logView is an organization's log folded by brute force: each job stream
// through projections.FoldJob, queue and worker streams by hand.
type logView struct {
	now     time.Time
	states  map[string]projections.JobState // by job id; Job is nil once purged
	jobEvs  []projections.JobEvent          // every job event, in log order
	paused  map[string]bool                 // by queue
	workers map[string]*viewWorker          // by worker id
}

type viewWorker struct {
	status string
	queues []string
}

// foldLog reads every event of one organization and folds it.
func (w *statsWorkload) foldLog(orgID string) *logView {
	t := w.t
	t.Helper()
	rows, err := w.h.pool.Query(context.Background(), `
		SELECT stream_type, stream_id, stream_seq, event_type, queue_name, data, occurred_at
		FROM job_events WHERE organization_id = $1 ORDER BY position`, orgID)
	if err != nil {
		t.Fatalf("read log: %v", err)
	}
	defer rows.Close()
	v := &logView{now: *w.clk.Now(), states: map[string]projections.JobState{}, paused: map[string]bool{},
		workers: map[string]*viewWorker{}}
	streams := map[string][]projections.JobEvent{}
	for rows.Next() {
		var streamType string
		var e projections.JobEvent
		if err := rows.Scan(&streamType, &e.StreamID, &e.Seq, &e.Type, &e.QueueName, &e.Data, &e.OccurredAt); err != nil {
			t.Fatal(err)
		}
		e.OrganizationID = orgID
		switch streamType {
		case "job":
			v.jobEvs = append(v.jobEvs, e)
			streams[e.StreamID] = append(streams[e.StreamID], e)
		case "queue":
			switch e.Type {
			case "queue.paused":
				v.paused[*e.QueueName] = true
			case "queue.resumed", "queue.deleted":
				v.paused[*e.QueueName] = false
			}
		case "worker":
			var d struct {
				QueueNames []string `json:"queue_names"`
				NewStatus  string   `json:"new_status"`
			}
			if err := json.Unmarshal(e.Data, &d); err != nil {
				t.Fatal(err)
			}
			switch e.Type {
			case "worker.registered":
				v.workers[e.StreamID] = &viewWorker{status: "healthy", queues: d.QueueNames}
			case "worker.status_changed":
				v.workers[e.StreamID].status = d.NewStatus
			case "worker.deregistered":
				v.workers[e.StreamID].status = "offline"
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for id, evs := range streams {
		sort.Slice(evs, func(i, j int) bool { return evs[i].Seq < evs[j].Seq })
		st, err := projections.FoldJob(evs)
		if err != nil {
			t.Fatalf("fold job %s: %v", id, err)
		}
		v.states[id] = st
		// The run time's start is the claim of the attempt the completion
		// ends: the log must say so, or run times mean nothing.
		var claimedAt time.Time
		for _, e := range evs {
			switch e.Type {
			case "job.claimed":
				claimedAt = e.OccurredAt
			case "job.completed":
				var d struct {
					StartedAt *time.Time `json:"started_at"`
				}
				if err := json.Unmarshal(e.Data, &d); err != nil {
					t.Fatal(err)
				}
				if d.StartedAt == nil || !d.StartedAt.Equal(claimedAt) {
					t.Fatalf("job %s completed with started_at %v; its claim was at %v", id, d.StartedAt, claimedAt)
				}
			}
		}
	}
	return v
}

// counts is the number of jobs per status, of one queue or ("") all.
func (v *logView) counts(queue string) map[string]int64 {
	out := map[string]int64{}
	for _, s := range v.states {
		if s.Job != nil && (queue == "" || s.Job.QueueName == queue) {
			out[s.Job.Status]++
		}
	}
	return out
}

type viewWindow struct{ created, completed, failed, deadlettered, runMS, runs, waitMS, waits int64 }

// window sums the activity of the events at or after since.
func (v *logView) window(t *testing.T, queue string, since time.Time) viewWindow {
	var out viewWindow
	for _, e := range v.jobEvs {
		if e.OccurredAt.Before(since) || (queue != "" && *e.QueueName != queue) {
			continue
		}
		switch e.Type {
		case "job.enqueued":
			out.created++
		case "job.claimed":
			var d struct {
				DueAt *time.Time `json:"due_at"`
			}
			if err := json.Unmarshal(e.Data, &d); err != nil {
				t.Fatal(err)
			}
			if d.DueAt != nil {
				out.waitMS += max(e.OccurredAt.Sub(*d.DueAt).Milliseconds(), 0)
				out.waits++
			}
		case "job.completed":
			out.completed++
			var d struct {
				StartedAt *time.Time `json:"started_at"`
			}
			if err := json.Unmarshal(e.Data, &d); err != nil {
				t.Fatal(err)
			}
			if d.StartedAt != nil {
				out.runMS += max(e.OccurredAt.Sub(*d.StartedAt).Milliseconds(), 0)
				out.runs++
			}
		case "job.failed":
			out.failed++
		case "job.deadlettered":
			out.deadlettered++
		}
	}
	return out
}

// avg is an integral average in ms, rounded half up; nil when nothing was
// measured.
func avg(sum, n int64) any {
	if n == 0 {
		return nil
	}
	return int64(math.Round(float64(sum) / float64(n)))
}

func (v *logView) activeWorkers(queue string) int64 {
	var n int64
	for _, wk := range v.workers {
		if wk.status == "healthy" && slices.Contains(wk.queues, queue) {
			n++
		}
	}
	return n
}

func (v *logView) jobStats(queue string) map[string]any {
	c := v.counts(queue)
	total := int64(0)
	for _, n := range c {
		total += n
	}
	return map[string]any{"pending": c["pending"], "scheduled": c["scheduled"], "processing": c["processing"],
		"completed": c["completed"], "failed": c["failed"], "deadletter": c["deadletter"],
		"cancelled": c["cancelled"], "total": total}
}

func (v *logView) dayStart() time.Time  { return v.now.UTC().Truncate(time.Hour).Add(-23 * time.Hour) }
func (v *logView) hourStart() time.Time { return v.now.UTC().Truncate(time.Hour) }

func (v *logView) queueStats(t *testing.T, queue string) map[string]any {
	c := v.counts(queue)
	day := v.window(t, queue, v.dayStart())
	var maxAge any
	var oldest *time.Time
	for _, s := range v.states {
		if s.Pending != nil && s.Job.QueueName == queue && (oldest == nil || s.Job.CreatedAt.Before(*oldest)) {
			oldest = &s.Job.CreatedAt
		}
	}
	if oldest != nil {
		maxAge = int64(max(v.now.Sub(*oldest), 0) / time.Second)
	}
	return map[string]any{"queue_name": queue, "pending_jobs": c["pending"], "scheduled_jobs": c["scheduled"],
		"processing_jobs": c["processing"], "completed_jobs": c["completed"], "deadletter_jobs": c["deadletter"],
		"completed_jobs_24h": day.completed, "failed_jobs_24h": day.failed, "deadlettered_jobs_24h": day.deadlettered,
		"avg_processing_time_ms": avg(day.runMS, day.runs), "max_job_age_seconds": maxAge,
		"active_workers": v.activeWorkers(queue)}
}

func (v *logView) dashboard(t *testing.T) (jobs map[string]any, queues []any, workers, recent map[string]any) {
	c := v.counts("")
	total := int64(0)
	for _, n := range c {
		total += n
	}
	day, hour := v.window(t, "", v.dayStart()), v.window(t, "", v.hourStart())
	jobs = map[string]any{"total": total, "pending": c["pending"] + c["scheduled"], "processing": c["processing"],
		"completed_24h": day.completed, "failed_24h": day.failed, "deadletter": c["deadletter"],
		"avg_wait_time_ms": avg(day.waitMS, day.waits), "avg_processing_time_ms": avg(day.runMS, day.runs)}

	type live struct {
		name                string
		pending, processing int64
	}
	byQueue := map[string]*live{}
	for _, s := range v.states {
		if s.Pending == nil && s.Processing == nil {
			continue
		}
		q := byQueue[s.Job.QueueName]
		if q == nil {
			q = &live{name: s.Job.QueueName}
			byQueue[q.name] = q
		}
		if s.Pending != nil {
			q.pending++
		} else {
			q.processing++
		}
	}
	var ls []*live
	for _, q := range byQueue {
		ls = append(ls, q)
	}
	sort.Slice(ls, func(i, j int) bool {
		if a, b := ls[i].pending+ls[i].processing, ls[j].pending+ls[j].processing; a != b {
			return a > b
		}
		return ls[i].name < ls[j].name
	})
	queues = []any{}
	for i, q := range ls {
		if i == 20 {
			break
		}
		queues = append(queues, map[string]any{"name": q.name, "pending": q.pending, "processing": q.processing,
			"paused": v.paused[q.name]})
	}

	var alive, healthy int64
	for _, wk := range v.workers {
		if wk.status != "offline" {
			alive++
		}
		if wk.status == "healthy" {
			healthy++
		}
	}
	workers = map[string]any{"total": alive, "healthy": healthy, "unhealthy": alive - healthy}
	recent = map[string]any{"jobs_created_1h": hour.created, "jobs_completed_1h": hour.completed,
		"jobs_failed_1h": hour.failed}
	return jobs, queues, workers, recent
}

// same fails unless got equals want as JSON.
func (w *statsWorkload) same(what string, got, want any) {
	w.t.Helper()
	if wv := jsonValue(w.t, want); !reflect.DeepEqual(got, wv) {
		gb, _ := json.Marshal(got)
		wb, _ := json.Marshal(wv)
		w.t.Fatalf("%s:\n got  %s\n want %s", what, gb, wb)
	}
}

// note remembers the largest value a figure reached in any check.
func (w *statsWorkload) note(m map[string]any, keys ...string) {
	for _, k := range keys {
		if f, ok := m[k].(float64); ok {
			w.seen[k] = max(w.seen[k], int64(f))
		}
	}
}

// check compares every stats answer of every organization with the fold of
// that organization's log.
func (w *statsWorkload) check(when string) {
	w.t.Helper()
	w.h.catchUp()
	all := append(slices.Clone(w.orgs), w.quiet)
	queues := []string{"emails", "reports", "billing.v2", "only.globex"}
	for _, o := range all {
		v := w.foldLog(o.id)
		at := fmt.Sprintf("%s (%s, clock %s)", when, o.slug, v.now.Format(time.RFC3339Nano))

		got := w.h.do("GET", "/api/v1/jobs/stats", o.key, nil).expect(200).json
		w.same("GET /jobs/stats "+at, got, v.jobStats(""))
		w.note(got, "pending", "scheduled", "processing", "completed", "deadletter", "cancelled")
		for _, q := range queues {
			got = w.h.do("GET", "/api/v1/jobs/stats?queue_name="+q, o.key, nil).expect(200).json
			w.same("GET /jobs/stats?queue_name="+q+" "+at, got, v.jobStats(q))
			got = w.h.do("GET", "/api/v1/jobs/stats?queue="+q, o.key, nil).expect(200).json
			w.same("GET /jobs/stats?queue="+q+" "+at, got, v.jobStats(q))

			got = w.h.do("GET", "/api/v1/queues/"+q+"/stats", o.key, nil).expect(200).json
			w.same("GET /queues/"+q+"/stats "+at, got, v.queueStats(w.t, q))
			w.note(got, "completed_jobs_24h", "failed_jobs_24h", "deadlettered_jobs_24h", "avg_processing_time_ms",
				"max_job_age_seconds", "active_workers")
		}

		dash := w.h.do("GET", "/api/v1/dashboard", o.key, nil).expect(200).json
		expectKeys(w.t, "dashboard", dash, []string{"system", "jobs", "queues", "workers", "recent_activity"})
		sys, _ := dash["system"].(map[string]any)
		expectKeys(w.t, "dashboard system", sys, []string{"version", "uptime_seconds", "started_at",
			"database_status", "cache_status", "environment"})
		if sys["database_status"] != "healthy" {
			w.t.Fatalf("dashboard system %v", sys)
		}
		jobs, qs, workers, recent := v.dashboard(w.t)
		w.same("dashboard jobs "+at, dash["jobs"], jobs)
		w.same("dashboard queues "+at, dash["queues"], qs)
		w.same("dashboard workers "+at, dash["workers"], workers)
		w.same("dashboard recent_activity "+at, dash["recent_activity"], recent)
		dj := dash["jobs"].(map[string]any)
		w.note(dj, "avg_wait_time_ms")
		w.seen["completed_24h"] = max(w.seen["completed_24h"], int64(dj["completed_24h"].(float64)))
		w.seen["failed_24h"] = max(w.seen["failed_24h"], int64(dj["failed_24h"].(float64)))
		w.note(dash["recent_activity"].(map[string]any), "jobs_created_1h", "jobs_completed_1h")
		w.seen["workers"] = max(w.seen["workers"], int64(dash["workers"].(map[string]any)["total"].(float64)))
		for _, q := range qs {
			if q.(map[string]any)["paused"] == true {
				w.seen["paused_queues"]++
			}
		}
		for _, e := range v.jobEvs {
			if e.OccurredAt.Before(v.dayStart()) {
				w.seen["events_before_window"]++
				break
			}
		}

		w.checkStatuses(o, v, at)
	}
}

// checkStatuses asks GET /jobs/status for a sample of the organization's
// jobs, some of another organization's and some unknown ids: only the
// organization's own jobs still in the read model answer, as the fold says.
func (w *statsWorkload) checkStatuses(o *statsOrg, v *logView, at string) {
	w.t.Helper()
	var ids []string
	for _, i := range w.rng.Perm(len(o.jobs)) {
		if len(ids) == 80 {
			break
		}
		ids = append(ids, o.jobs[i])
	}
	for _, other := range w.orgs {
		if other != o {
			for i := 0; i < len(other.jobs) && i < 10; i++ {
				ids = append(ids, other.jobs[w.rng.Intn(len(other.jobs))])
			}
		}
	}
	ids = append(ids, uuid.NewString(), "not-a-uuid")
	if len(ids) > 100 {
		ids = ids[:100]
	}
	res := w.h.do("GET", "/api/v1/jobs/status?ids="+strings.Join(ids, ","), o.key, nil).expect(200)
	if res.list == nil {
		w.t.Fatalf("GET /jobs/status %s: %s", at, res.raw)
	}
	got := map[string]any{}
	for _, it := range res.list {
		m := it.(map[string]any)
		id := m["id"].(string)
		if _, dup := got[id]; dup {
			w.t.Fatalf("GET /jobs/status %s lists %s twice", at, id)
		}
		got[id] = m
	}
	want := map[string]any{}
	for _, id := range ids {
		s, ok := v.states[id]
		if !ok || s.Job == nil {
			continue
		}
		var completed any
		if s.Job.CompletedAt != nil {
			completed = tsLayout(*s.Job.CompletedAt)
		}
		want[id] = map[string]any{"id": id, "status": s.Job.Status, "queue_name": s.Job.QueueName,
			"retry_count": s.Job.RetryCount, "created_at": tsLayout(s.Job.CreatedAt), "completed_at": completed}
	}
	w.same("GET /jobs/status "+at, got, want)
	w.seen["status_entries"] = max(w.seen["status_entries"], int64(len(want)))
}

func tsLayout(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z07:00") }

// TestDashboardQueues: the dashboard lists at most 20 queues, those with
// waiting (scheduled included) or leased jobs, busiest first and then by
// name, each with its own organization's pause state; queues with only
// finished jobs, and other organizations' queues, are not listed.
func TestDashboardQueues(t *testing.T) {
	t.Parallel()
	clk := clock.NewPinned(time.Now())
	h := newHarnessClock(t, clk)
	_, key := h.org("acme")
	_, other := h.org("globex")

	type row struct {
		name                string
		pending, processing int
		paused              bool
	}
	var rows []row
	for i := range 23 {
		r := row{name: fmt.Sprintf("q%02d", i), pending: i%4 + 1}
		jobs := make([]any, r.pending)
		for k := range jobs {
			jobs[k] = map[string]any{"payload": k}
		}
		if i == 7 {
			jobs = append(jobs, map[string]any{"payload": "later", "scheduled_at": clk.Now().Add(time.Hour).Format(time.RFC3339Nano)})
			r.pending++
		}
		h.do("POST", "/api/v1/jobs/bulk", key, map[string]any{"queue_name": r.name, "jobs": jobs}).expect(200)
		if i%3 == 0 {
			h.claimOne(key, r.name, "w")
			r.pending, r.processing = r.pending-1, 1
		}
		if i == 5 || i == 18 {
			h.do("POST", "/api/v1/queues/"+r.name+"/pause", key, nil).expect(200)
			r.paused = true
		}
		rows = append(rows, r)
	}
	h.completed(key, "finished")
	h.do("POST", "/api/v1/queues/idle/pause", key, nil).expect(200)
	// Another organization: a busier queue of a listed name, its own pause
	// of a listed name, a queue of its own.
	h.do("POST", "/api/v1/jobs/bulk", other, map[string]any{"queue_name": "q01",
		"jobs": []any{map[string]any{"payload": 1}, map[string]any{"payload": 2}, map[string]any{"payload": 3}}}).expect(200)
	h.do("POST", "/api/v1/queues/q02/pause", other, nil).expect(200)
	h.enqueue(other, "theirs", nil)

	sort.Slice(rows, func(i, j int) bool {
		if a, b := rows[i].pending+rows[i].processing, rows[j].pending+rows[j].processing; a != b {
			return a > b
		}
		return rows[i].name < rows[j].name
	})
	want := []any{}
	for _, r := range rows[:20] {
		want = append(want, map[string]any{"name": r.name, "pending": r.pending, "processing": r.processing, "paused": r.paused})
	}
	got := h.do("GET", "/api/v1/dashboard", key, nil).expect(200).json["queues"]
	if wv := jsonValue(t, want); !reflect.DeepEqual(got, wv) {
		gb, _ := json.Marshal(got)
		wb, _ := json.Marshal(wv)
		t.Fatalf("dashboard queues:\n got  %s\n want %s", gb, wb)
	}
	theirs := h.do("GET", "/api/v1/dashboard", other, nil).expect(200).json["queues"]
	wantTheirs := []any{map[string]any{"name": "q01", "pending": 3, "processing": 0, "paused": false},
		map[string]any{"name": "theirs", "pending": 1, "processing": 0, "paused": false}}
	if wv := jsonValue(t, wantTheirs); !reflect.DeepEqual(theirs, wv) {
		t.Fatalf("the other organization's dashboard queues: %v, want %v", theirs, wv)
	}
}
