package projections_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/internal/clock"
	"github.com/spooled-go/spooled/internal/testdb"
	"github.com/spooled-go/spooled/projections"
)

// corruptible is a small live system with one job in each hot table and one
// that has left them.
type corruptible struct {
	pool                         *pgxpool.Pool
	pending, processing, settled uuid.UUID
}

func newCorruptible(t *testing.T) corruptible {
	t.Helper()
	ctx := context.Background()
	pool := testdb.New(t)
	clk := clock.NewPinned(time.Now())
	svc := newService(pool, clk)
	a := newOrg(t, svc, "acme")
	var ids []uuid.UUID
	for i := range 3 {
		p := 10 - i // claimed in enqueue order
		res, err := svc.Enqueue(ctx, a, []commands.NewJob{{QueueName: "q", Payload: json.RawMessage(`{}`), Priority: &p}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res[0].ID)
	}
	jobs, err := svc.Claim(ctx, a.OrgID, commands.ClaimRequest{QueueName: "q", WorkerID: "w", Limit: 2})
	if err != nil || len(jobs) != 2 {
		t.Fatalf("claim: %v %v", jobs, err)
	}
	if err := svc.Complete(ctx, a.OrgID, commands.LeaseRef{JobID: ids[0].String(), WorkerID: "w"}, json.RawMessage(`{"ok":1}`)); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, pool, "before corruption")
	return corruptible{pool: pool, settled: ids[0], processing: ids[1], pending: ids[2]}
}

// TestVerifyFindsCorruptedRows proves Verify can fail: each live row changed
// behind the log's back is reported, by id, table and side, and nothing else.
func TestVerifyFindsCorruptedRows(t *testing.T) {
	t.Parallel()
	type want struct{ jobs, pending, processing [2][]string } // [live, rebuilt]
	cases := []struct {
		name    string
		corrupt func(c corruptible) (string, []any)
		want    func(c corruptible) want
	}{
		{
			name: "jobs column changed",
			corrupt: func(c corruptible) (string, []any) {
				return `UPDATE jobs SET priority = priority + 1 WHERE id = $1`, []any{c.pending}
			},
			want: func(c corruptible) want {
				id := c.pending.String()
				return want{jobs: [2][]string{{id}, {id}}}
			},
		},
		{
			name: "pending row missing",
			corrupt: func(c corruptible) (string, []any) {
				return `DELETE FROM pending_jobs WHERE job_id = $1`, []any{c.pending}
			},
			want: func(c corruptible) want { return want{pending: [2][]string{nil, {c.pending.String()}}} },
		},
		{
			name: "pending row the log does not explain",
			corrupt: func(c corruptible) (string, []any) {
				return `INSERT INTO pending_jobs (job_id, organization_id, queue_name, priority, run_at, created_at)
					SELECT id, organization_id, queue_name, priority, created_at, created_at FROM jobs WHERE id = $1`,
					[]any{c.settled}
			},
			want: func(c corruptible) want { return want{pending: [2][]string{{c.settled.String()}, nil}} },
		},
		{
			name: "lease extended without an event",
			corrupt: func(c corruptible) (string, []any) {
				return `UPDATE processing_jobs SET lease_expires_at = lease_expires_at + interval '1 microsecond'
					WHERE job_id = $1`, []any{c.processing}
			},
			want: func(c corruptible) want {
				id := c.processing.String()
				return want{processing: [2][]string{{id}, {id}}}
			},
		},
		{
			name: "JSON null where the log says SQL NULL",
			corrupt: func(c corruptible) (string, []any) {
				return `UPDATE jobs SET tags = 'null'::jsonb WHERE id = $1`, []any{c.settled}
			},
			want: func(c corruptible) want {
				id := c.settled.String()
				return want{jobs: [2][]string{{id}, {id}}}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newCorruptible(t)
			sql, args := tc.corrupt(c)
			if tag, err := c.pool.Exec(context.Background(), sql, args...); err != nil || tag.RowsAffected() != 1 {
				t.Fatalf("corrupt: %v %v", tag, err)
			}
			r := verify(t, c.pool)
			if r.Clean() {
				t.Fatalf("verify missed the corruption: %s", r)
			}
			w := tc.want(c)
			for _, d := range []struct {
				table string
				got   projections.TableDiff
				want  [2][]string
			}{{"jobs", r.Jobs, w.jobs}, {"pending_jobs", r.Pending, w.pending}, {"processing_jobs", r.Processing, w.processing}} {
				if !slices.Equal(strs(d.got.Live), d.want[0]) || !slices.Equal(strs(d.got.Rebuilt), d.want[1]) || d.got.Truncated {
					t.Errorf("%s: live %v rebuilt %v, want live %v rebuilt %v", d.table, d.got.Live, d.got.Rebuilt, d.want[0], d.want[1])
				}
			}
			for _, id := range slices.Concat(w.jobs[0], w.pending[0], w.pending[1], w.processing[0]) {
				if !strings.Contains(r.String(), id) {
					t.Errorf("report does not name %s:\n%s", id, r)
				}
			}
		})
	}
}

// TestVerifyRefusesUnknownEvents: an event the fold does not understand
// stops the rebuild rather than being skipped, and leaves no rebuild rows.
func TestVerifyRefusesUnknownEvents(t *testing.T) {
	t.Parallel()
	c := newCorruptible(t)
	ctx := context.Background()
	if _, err := c.pool.Exec(ctx, `INSERT INTO job_events (organization_id, stream_type, stream_id, stream_seq,
			event_type, queue_name, actor, data, occurred_at)
		SELECT organization_id, 'job', id::text, version + 1, 'job.teleported', queue_name, 'test', '{}', updated_at
		FROM jobs WHERE id = $1`, c.pending); err != nil {
		t.Fatal(err)
	}
	_, err := projections.Verify(ctx, c.pool)
	if err == nil || !strings.Contains(err.Error(), "job.teleported") || !strings.Contains(err.Error(), c.pending.String()) {
		t.Fatalf("verify error %v, want one naming the unknown event and its job", err)
	}
	if _, err := projections.Rebuild(ctx, c.pool); err == nil {
		t.Fatal("rebuild folded an unknown event")
	}
	if n := sum(countRows(t, c.pool, "jobs_rebuild", "true")); n != 0 {
		t.Fatalf("a failed rebuild left %d rows behind", n)
	}
}

// TestRebuildPagesThroughLargeLog crosses the rebuild's 5000-event page in
// the middle of a stream and its 1000-row COPY batches.
func TestRebuildPagesThroughLargeLog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testdb.New(t)
	svc := newService(pool, clock.NewPinned(time.Now()))
	a := newOrg(t, svc, "acme")
	const n = 2600
	for range n / commands.MaxBulkJobs {
		batch := make([]commands.NewJob, commands.MaxBulkJobs)
		for i := range batch {
			batch[i] = commands.NewJob{QueueName: "bulk", Payload: json.RawMessage(`{"i":1}`)}
		}
		if _, err := svc.EnqueueBulk(ctx, a, batch); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Claim(ctx, a.OrgID, commands.ClaimRequest{QueueName: "bulk", WorkerID: "w", Limit: 100}); err != nil {
			t.Fatal(err)
		}
	}
	// Every stream has two events so far; a third on the stream that ends
	// the first page makes the page boundary fall inside it.
	var boundary string
	if err := pool.QueryRow(ctx, `SELECT stream_id FROM job_events WHERE stream_type = 'job'
		ORDER BY stream_id, stream_seq OFFSET 4999 LIMIT 1`).Scan(&boundary); err != nil {
		t.Fatal(err)
	}
	err := svc.Complete(ctx, a.OrgID, commands.LeaseRef{JobID: boundary, WorkerID: "someone-else"}, nil)
	var le *commands.LeaseError
	if !errors.As(err, &le) {
		t.Fatalf("foreign complete: %v", err)
	}
	var split bool
	if err := pool.QueryRow(ctx, `SELECT count(DISTINCT stream_id) = 1 FROM (SELECT stream_id FROM job_events
		WHERE stream_type = 'job' ORDER BY stream_id, stream_seq OFFSET 4999 LIMIT 2) s`).Scan(&split); err != nil || !split {
		t.Fatalf("page boundary does not split a stream: %v", err)
	}

	r := verify(t, pool)
	if !r.Clean() {
		t.Fatal(r)
	}
	if r.Stats.Events != 2*n+1 || r.Stats.Jobs != n || r.Stats.Processing != n || r.Stats.Pending != 0 {
		t.Fatalf("stats %+v", r.Stats)
	}
}

// TestVerifyUnderConcurrentWrites: writers that commit while Verify runs are
// either wholly in its snapshot or wholly out of it, so a verify racing a
// busy queue is still clean.
func TestVerifyUnderConcurrentWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testdb.New(t)
	svc := newService(pool, nil) // the database clock, as in production
	a := newOrg(t, svc, "acme")

	var wg sync.WaitGroup
	done := make(chan struct{})
	for w := range 4 {
		worker := fmt.Sprintf("w%d", w)
		wg.Go(func() {
			for i := range 25 {
				if err := writeSome(ctx, svc, a, worker, i); err != nil {
					t.Errorf("%s: %v", worker, err)
					return
				}
			}
		})
	}
	go func() { wg.Wait(); close(done) }()

	verifies := 0
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		r := verify(t, pool)
		verifies++
		if !r.Clean() {
			t.Fatalf("verify %d while writers ran: %s", verifies, r)
		}
	}
	t.Logf("%d verifies ran alongside the writers", verifies)
	if sum(countRows(t, pool, "jobs", "true")) != 4*25*3 {
		t.Fatal("writers did not enqueue every job")
	}
}

// writeSome is one round of a worker's life: enqueue, claim, settle, and a
// stale call the server refuses.
func writeSome(ctx context.Context, svc *commands.Service, a commands.Actor, worker string, i int) error {
	jobs := make([]commands.NewJob, 3)
	for k := range jobs {
		jobs[k] = commands.NewJob{QueueName: "shared", Payload: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}
	}
	if _, err := svc.Enqueue(ctx, a, jobs); err != nil {
		return err
	}
	claimed, err := svc.Claim(ctx, a.OrgID, commands.ClaimRequest{QueueName: "shared", WorkerID: worker, Limit: 2})
	if err != nil {
		return err
	}
	for k, j := range claimed {
		ref := commands.LeaseRef{JobID: j.ID.String(), WorkerID: worker, LeaseID: j.LeaseID}
		if k == 0 {
			if err := svc.Complete(ctx, a.OrgID, ref, json.RawMessage(`{"done":true}`)); err != nil {
				return err
			}
			var le *commands.LeaseError
			if err := svc.Complete(ctx, a.OrgID, ref, nil); !errors.As(err, &le) {
				return fmt.Errorf("second complete: %v", err)
			}
			continue
		}
		if _, err := svc.Fail(ctx, a.OrgID, ref, "boom", true); err != nil {
			return err
		}
	}
	return nil
}

func strs(ids []uuid.UUID) []string {
	var out []string
	for _, id := range ids {
		out = append(out, id.String())
	}
	return out
}

// TestVerifyAndSwapWithCappedQueues: leases of a queue with a concurrency
// cap are marked capped (the cap's lease count reads marked leases alone),
// a mark the log does not carry: it follows the queue's configuration. A
// rebuild marks its leases the same way, so Verify stays clean while caps
// are set and cleared under running claims, and a swap keeps the marks
// right.
func TestVerifyAndSwapWithCappedQueues(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testdb.New(t)
	svc := newService(pool, nil)
	a := newOrg(t, svc, "capper")
	for _, q := range []string{"capq", "free"} {
		jobs := make([]commands.NewJob, 40)
		for k := range jobs {
			jobs[k] = commands.NewJob{QueueName: q, Payload: json.RawMessage(`{}`)}
		}
		if _, err := svc.Enqueue(ctx, a, jobs); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Claim(ctx, a.OrgID, commands.ClaimRequest{QueueName: q, WorkerID: "holder", Limit: 3}); err != nil {
			t.Fatal(err)
		}
	}
	setCap := func(on bool) {
		t.Helper()
		s := commands.QueueSettings{ClearMaxConcurrent: true}
		if on {
			s = commands.QueueSettings{MaxConcurrentJobs: ptrInt(100000)}
		}
		if _, err := svc.ConfigureQueue(ctx, a, "capq", s); err != nil {
			t.Fatal(err)
		}
	}
	setCap(true)
	mustVerify(t, pool, "with a cap set over running leases")
	if n := sum(countRows(t, pool, "processing_jobs", "capped")); n == 0 {
		t.Fatal("no leases in processing_jobs")
	}

	// Caps flip while a worker claims from both queues; every Verify and
	// the swap in the middle see marks that match the configuration.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			for _, q := range []string{"capq", "free"} {
				if _, err := svc.Enqueue(ctx, a, []commands.NewJob{{QueueName: q, Payload: json.RawMessage(`{}`)}}); err != nil {
					t.Error(err)
					return
				}
				if _, err := svc.Claim(ctx, a.OrgID, commands.ClaimRequest{QueueName: q, WorkerID: "w", Limit: 1}); err != nil {
					t.Error(err)
					return
				}
			}
		}
	})
	for i := range 6 {
		setCap(i%2 == 1)
		if r := verify(t, pool); !r.Clean() {
			close(stop)
			wg.Wait()
			t.Fatalf("verify %d with caps flipping: %s", i, r)
		}
		if i == 3 {
			// Leases claimed during the rebuild are folded again in the
			// swap, and marked there.
			st, err := projections.RebuildAndSwap(ctx, pool, nil)
			if err == nil {
				if r := verify(t, pool); !r.Clean() {
					err = fmt.Errorf("verify right after the swap (%d jobs folded again): %s", st.Delta, r)
				}
			}
			if err != nil {
				close(stop)
				wg.Wait()
				t.Fatal(err)
			}
		}
	}
	close(stop)
	wg.Wait()
	mustVerify(t, pool, "after the caps flipped and a swap")
	capped := countRows(t, pool, "processing_jobs", "queue_name || ':' || capped")
	if capped["free:true"] != 0 || capped["capq:false"] != 0 {
		t.Fatalf("leases by queue and mark after the last change (cap set): %v", capped)
	}
}

func ptrInt(v int) *int { return &v }
