package projections_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/events"
	"github.com/spooled-go/spooled/internal/clock"
	"github.com/spooled-go/spooled/internal/testdb"
	"github.com/spooled-go/spooled/projections"
)

// recorder is a projection that keeps what it was given.
type recorder struct {
	name string
	mu   sync.Mutex
	seen []projections.LogEvent
}

func (r *recorder) Name() string                        { return r.name }
func (r *recorder) Reset(context.Context, pgx.Tx) error { return nil }
func (r *recorder) Apply(_ context.Context, _ pgx.Tx, batch []projections.LogEvent) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, batch...)
	return nil
}

// typedRecorder reads the data of job.completed only.
type typedRecorder struct{ recorder }

func (*typedRecorder) DataTypes() []string { return []string{events.JobCompleted} }

// blindRecorder reads no event's data (as the fan-out).
type blindRecorder struct{ recorder }

func (*blindRecorder) DataTypes() []string { return nil }

// TestProjectorReadsOnlyTheDataAProjectionUses: projections that are all
// DataReaders get the data of the event types one of them names and ""
// for the rest (a job.created's payload never leaves the database for
// them); any other projection gets every event's data.
func TestProjectorReadsOnlyTheDataAProjectionUses(t *testing.T) {
	pool := testdb.New(t)
	ctx := context.Background()
	svc := newService(pool, clock.Database{})
	actor := newOrg(t, svc, "readers")
	res, err := svc.Enqueue(ctx, actor, []commands.NewJob{{QueueName: "q", Payload: []byte(`{"secret":"payload"}`)}})
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := svc.Claim(ctx, actor.OrgID, commands.ClaimRequest{QueueName: "q", WorkerID: "w1"})
	if err != nil || len(jobs) != 1 {
		t.Fatalf("claim: %v %d", err, len(jobs))
	}
	if err := svc.Complete(ctx, actor.OrgID, commands.LeaseRef{JobID: res[0].ID.String(), WorkerID: "w1"}, []byte(`{"ok":1}`)); err != nil {
		t.Fatal(err)
	}

	all, typed := &recorder{name: "test_all"}, &typedRecorder{recorder{name: "test_typed"}}
	blind := &blindRecorder{recorder{name: "test_blind"}}
	// Two projectors: projections sharing a read get the data any of them
	// asks for.
	pAll := projections.NewProjector(pool, []projections.Projection{all}, projections.ProjectorOptions{})
	pReaders := projections.NewProjector(pool, []projections.Projection{typed, blind}, projections.ProjectorOptions{})
	byType := func(r *recorder) map[string]string {
		r.mu.Lock()
		defer r.mu.Unlock()
		out := map[string]string{}
		for _, e := range r.seen {
			if e.StreamID == res[0].ID.String() {
				out[e.EventType] = e.Data
			}
		}
		return out
	}
	// The projector reads only what every open transaction can see (other
	// tests' among them): once the job's events are readable, one catch-up
	// of each projector delivers them.
	waitReadable(t, pool, actor.OrgID)
	for _, p := range []*projections.Projector{pAll, pReaders} {
		if _, err := p.CatchUp(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if len(byType(all)) != 3 || len(byType(&typed.recorder)) != 3 || len(byType(&blind.recorder)) != 3 {
		t.Fatalf("one catch-up did not deliver the job's three events to every projection: %q", byType(all))
	}
	a, b := byType(all), byType(&typed.recorder)
	for _, typ := range []string{events.JobEnqueued, events.JobClaimed, events.JobCompleted} {
		if a[typ] == "" {
			t.Errorf("projection without DataTypes: %s came without data", typ)
		}
	}
	if !strings.Contains(a[events.JobEnqueued], "payload") {
		t.Errorf("projection without DataTypes: job.created data %q lacks the payload", a[events.JobEnqueued])
	}
	if _, ok := b[events.JobEnqueued]; !ok || b[events.JobEnqueued] != "" || b[events.JobClaimed] != "" {
		t.Errorf("DataReader of job.completed: got %q", b)
	}
	if c := byType(&blind.recorder); len(c) != 3 || c[events.JobEnqueued] != "" || c[events.JobClaimed] != "" {
		t.Errorf("DataReader of no types, beside one of job.completed: got %q, want job.enqueued and job.claimed without data", c)
	}
	if !strings.Contains(b[events.JobCompleted], `"ok"`) {
		t.Errorf("DataReader of job.completed: job.completed data %q lacks the result", b[events.JobCompleted])
	}
}

// allDataStats is the queue-stats projection without its DataTypes: the
// projector then reads every event's data, payloads included.
type allDataStats struct{ s *projections.QueueStats }

func (a allDataStats) Name() string { return a.s.Name() }
func (a allDataStats) Apply(ctx context.Context, tx pgx.Tx, b []projections.LogEvent) error {
	return a.s.Apply(ctx, tx, b)
}
func (a allDataStats) Reset(ctx context.Context, tx pgx.Tx) error { return a.s.Reset(ctx, tx) }

// BenchmarkQueueStatsCatchUp folds the log of 3,000 finished jobs with
// 1 KiB payloads (9,000 events) into the queue stats, reading the data
// of the three event types the projection decodes (typed) or of every
// event (all).
func BenchmarkQueueStatsCatchUp(b *testing.B) {
	pool := testdb.New(b)
	ctx := context.Background()
	svc := newService(pool, clock.Database{})
	actor := newOrg(b, svc, "bench")
	payload := []byte(`{"blob":"` + strings.Repeat("x", 1024) + `"}`)
	for range 30 {
		batch := make([]commands.NewJob, 100)
		for i := range batch {
			batch[i] = commands.NewJob{QueueName: "q", Payload: payload}
		}
		if _, err := svc.EnqueueBulk(ctx, actor, batch); err != nil {
			b.Fatal(err)
		}
		jobs, err := svc.Claim(ctx, actor.OrgID, commands.ClaimRequest{QueueName: "q", WorkerID: "w", Limit: 100})
		if err != nil {
			b.Fatal(err)
		}
		items := make([]commands.CompleteItem, len(jobs))
		for i, j := range jobs {
			items[i] = commands.CompleteItem{Ref: commands.LeaseRef{JobID: j.ID.String(), WorkerID: "w"}}
		}
		if _, err := svc.CompleteBatch(ctx, actor.OrgID, items); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []struct {
		name string
		proj projections.Projection
	}{{"typed", projections.NewQueueStats()}, {"all", allDataStats{projections.NewQueueStats()}}} {
		b.Run(c.name, func(b *testing.B) {
			p := projections.NewProjector(pool, []projections.Projection{c.proj}, projections.ProjectorOptions{})
			for b.Loop() {
				if err := p.Reset(ctx, c.proj.Name()); err != nil {
					b.Fatal(err)
				}
				n, err := p.CatchUp(ctx)
				if err != nil || n < 9000 {
					b.Fatalf("caught up %d events: %v", n, err)
				}
			}
		})
	}
}

// TestProjectorSharesOneReadAtOneCheckpoint: projections at the same
// checkpoint read each page of the log once between them, and each still
// gets every event and moves its own checkpoint.
func TestProjectorSharesOneReadAtOneCheckpoint(t *testing.T) {
	counter := testdb.NewStatementCounter()
	pool := testdb.NewWith(t, testdb.Options{Tracer: counter})
	ctx := context.Background()
	svc := newService(pool, clock.Database{})
	actor := newOrg(t, svc, "sharers")
	var jobs []commands.NewJob
	for range 5 {
		jobs = append(jobs, commands.NewJob{QueueName: "q", Payload: []byte(`{}`)})
	}
	if _, err := svc.Enqueue(ctx, actor, jobs); err != nil {
		t.Fatal(err)
	}
	one, two := &recorder{name: "test_one"}, &blindRecorder{recorder{name: "test_two"}}
	p := projections.NewProjector(pool, []projections.Projection{one, two}, projections.ProjectorOptions{BatchSize: 2})
	count := func(r *recorder) int {
		r.mu.Lock()
		defer r.mu.Unlock()
		n := 0
		for _, e := range r.seen {
			if e.EventType == events.JobEnqueued {
				n++
			}
		}
		return n
	}
	waitReadable(t, pool, actor.OrgID)
	counter.Take()
	if _, err := p.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	n := counter.Take()
	if count(one) != 5 || count(&two.recorder) != 5 {
		t.Fatalf("one catch-up gave the projections %d and %d of the 5 jobs' events", count(one), count(&two.recorder))
	}
	if n["ProjectorCheckpointLock"] == 0 || n["EventsAfterCursor"]*2 != n["ProjectorCheckpointLock"] {
		t.Errorf("%d log reads for %d checkpoint locks of two projections: want one read per pass", n["EventsAfterCursor"], n["ProjectorCheckpointLock"])
	}
	if got, want := len(two.seen), len(one.seen); got != want {
		t.Errorf("the projections got %d and %d events", want, got)
	}
	// The checkpoint rows are written once, on the first pass, not on every
	// pass of every catch-up.
	if n["ProjectorCheckpointEnsure"] != 2 {
		t.Errorf("%d checkpoint ensures in a catch-up of several passes over two projections, want 2", n["ProjectorCheckpointEnsure"])
	}
	if _, err := p.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if n := counter.Take(); n["ProjectorCheckpointEnsure"] != 0 || n["ProjectorCheckpointLock"] == 0 {
		t.Errorf("a second catch-up ran %v, want checkpoint locks and no ensures", n)
	}
}

// TestProjectorLaggardDoesNotHoldBackTheRest: a projection reset to the
// start of the log reads its own pages, and the others, caught up, get a
// new event at once, before it has caught up.
func TestProjectorLaggardDoesNotHoldBackTheRest(t *testing.T) {
	pool := testdb.New(t)
	ctx := context.Background()
	svc := newService(pool, clock.Database{})
	actor := newOrg(t, svc, "laggards")
	var jobs []commands.NewJob
	for range 100 {
		jobs = append(jobs, commands.NewJob{QueueName: "q", Payload: []byte(`{}`)})
	}
	for range 3 {
		if _, err := svc.Enqueue(ctx, actor, jobs); err != nil {
			t.Fatal(err)
		}
	}
	behind, ahead := &recorder{name: "test_behind"}, &recorder{name: "test_ahead"}
	p := projections.NewProjector(pool, []projections.Projection{behind, ahead}, projections.ProjectorOptions{BatchSize: 1})
	seen := func(r *recorder, stream string) (int, bool) {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, e := range r.seen {
			if e.StreamID == stream {
				return len(r.seen), true
			}
		}
		return len(r.seen), false
	}
	// Both catch up on the 300 jobs, one event a page.
	waitReadable(t, pool, actor.OrgID)
	if _, err := p.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := seen(behind, ""); n < 300 {
		t.Fatalf("one catch-up applied %d events, want the 300 jobs' and more", n)
	}
	if err := p.Reset(ctx, behind.name); err != nil {
		t.Fatal(err)
	}
	behind.mu.Lock()
	before := len(behind.seen)
	behind.mu.Unlock()
	res, err := svc.Enqueue(ctx, actor, jobs[:1])
	if err != nil {
		t.Fatal(err)
	}
	stream := res[0].ID.String()
	// The projector reads an event only once every transaction older than
	// it has ended (other tests' among them): wait for that, then one pass
	// must bring it to the caught-up projection.
	waitReadable(t, pool, actor.OrgID)
	if _, _, err := p.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := seen(ahead, stream); !ok {
		t.Error("the caught-up projection did not get the new job's event in the pass after it became readable")
	}
	if n, ok := seen(behind, stream); ok || n-before != 1 {
		t.Errorf("the reset projection read %d events in one pass (the new one: %v), want 1 (a page)", n-before, ok)
	}
}
