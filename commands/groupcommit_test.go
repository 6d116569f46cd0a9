package commands_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/events"
	"github.com/spooled-go/spooled/internal/testdb"
)

// TestGroupCommit: concurrent single enqueues and completes coalesced into
// shared statements each get their own, correct answer; idempotency keys
// still make one job; stale completes are still refused and recorded; far
// fewer statements ran than requests; after Close requests are refused,
// never lost in a queue.
func TestGroupCommit(t *testing.T) {
	ctx := context.Background()
	pool := testdb.NewWith(t, testdb.Options{MaxConns: 20})
	seen := &groupCommits{statements: map[string]int{}, requests: map[string]int{}}
	svc := commands.New(pool, nil, nil, commands.Defaults{MaxRetries: 3, TimeoutSecs: 300, LeaseSecs: 30,
		MaxPayload: 1 << 20, KeyPrefix: "sk_test_", Registration: "open"}, commands.WithGroupCommit(2),
		commands.WithObserver(seen))
	org, err := svc.CreateOrganization(ctx, commands.NewOrganization{Name: "Group", Slug: "group-commit"})
	if err != nil {
		t.Fatal(err)
	}
	a := commands.Actor{OrgID: org.Organization.ID, Name: events.ActorAPIKey(org.Key.Key.ID)}

	const n = 64
	ids := make([]uuid.UUID, n)
	created := make([]bool, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			job := commands.NewJob{QueueName: "gc", Payload: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}
			if i%2 == 0 {
				key := "shared-key"
				job.IdempotencyKey = &key
			}
			r, err := svc.Enqueue(ctx, a, []commands.NewJob{job})
			if err != nil {
				errs <- err
				return
			}
			ids[i], created[i] = r[0].ID, r[0].Created
		}(i)
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var keyed uuid.UUID
	keyedCreated := 0
	distinct := map[uuid.UUID]bool{}
	for i := 0; i < n; i++ {
		distinct[ids[i]] = true
		if i%2 == 0 {
			if keyed == uuid.Nil {
				keyed = ids[i]
			}
			if ids[i] != keyed {
				t.Fatalf("idempotent enqueue %d got %s, others %s", i, ids[i], keyed)
			}
			if created[i] {
				keyedCreated++
			}
		} else if !created[i] {
			t.Fatalf("enqueue %d not created", i)
		}
	}
	if keyedCreated != 1 || len(distinct) != n/2+1 {
		t.Fatalf("%d keyed creates, %d distinct jobs", keyedCreated, len(distinct))
	}
	var jobs, statements int
	if err := pool.QueryRow(ctx, "SELECT count(*), count(DISTINCT tx_id) FROM job_events WHERE event_type = 'job.enqueued' AND organization_id = $1", a.OrgID).Scan(&jobs, &statements); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d single enqueues made %d jobs in %d transactions", n, jobs, statements)
	if jobs != n/2+1 {
		t.Fatalf("%d enqueued events, want %d", jobs, n/2+1)
	}
	if statements >= n/2 {
		t.Fatalf("%d single enqueues took %d transactions: nothing was coalesced", n, statements)
	}
	// The observer heard every flush and every request it gathered (one
	// tenant and one key: a statement per flush; a statement whose keyed
	// jobs all existed already appends no event, so it may have heard more
	// statements than the log shows).
	if st, req := seen.get("enqueue"); req != n || st < statements || st >= n/2 {
		t.Fatalf("observer: %d enqueue statements serving %d requests, want %d requests in %d to %d statements", st, req, n, statements, n/2-1)
	}

	// Completes: each worker completes its own jobs at once; a stale
	// complete (wrong worker) is refused and recorded.
	claimed, err := svc.Claim(ctx, a.OrgID, commands.ClaimRequest{QueueName: "gc", WorkerID: "w", Limit: 40})
	if err != nil || len(claimed) != n/2+1 {
		t.Fatalf("claim: %d %v", len(claimed), err)
	}
	results := make([]error, len(claimed))
	for i, j := range claimed {
		wg.Add(1)
		go func(i int, id uuid.UUID, lease *uuid.UUID) {
			defer wg.Done()
			worker := "w"
			if i == 0 {
				worker = "intruder"
			}
			results[i] = svc.Complete(ctx, a.OrgID, commands.LeaseRef{JobID: id.String(), WorkerID: worker, LeaseID: lease}, json.RawMessage(`{"ok":true}`))
		}(i, j.ID, j.LeaseID)
	}
	wg.Wait()
	var le *commands.LeaseError
	if !errors.As(results[0], &le) || !le.JobFound {
		t.Fatalf("intruder's complete: %v", results[0])
	}
	for i := 1; i < len(results); i++ {
		if results[i] != nil {
			t.Fatalf("complete %d: %v", i, results[i])
		}
	}
	var done int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM jobs WHERE organization_id = $1 AND status = 'completed'", a.OrgID).Scan(&done); err != nil {
		t.Fatal(err)
	}
	if done != len(claimed)-1 {
		t.Fatalf("%d completed, want %d", done, len(claimed)-1)
	}
	if st, req := seen.get("complete"); req != len(claimed) || st < 1 || st > len(claimed) {
		t.Fatalf("observer: %d complete statements serving %d requests, want %d requests", st, req, len(claimed))
	}

	if err := svc.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Enqueue(ctx, a, []commands.NewJob{{QueueName: "gc", Payload: json.RawMessage(`{}`)}}); err == nil {
		t.Fatal("enqueue after Close accepted")
	}
}

// groupCommits records what the service reports of its group commits.
type groupCommits struct {
	mu                   sync.Mutex
	statements, requests map[string]int
}

func (g *groupCommits) GroupCommitted(kind string, requests int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.statements[kind]++
	g.requests[kind] += requests
}

func (g *groupCommits) get(kind string) (statements, requests int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.statements[kind], g.requests[kind]
}

func (*groupCommits) JobsEnqueued(string, int)           {}
func (*groupCommits) JobClaimed(string, time.Duration)   {}
func (*groupCommits) JobCompleted(string, time.Duration) {}
func (*groupCommits) JobFailed(string)                   {}
func (*groupCommits) JobsDeadLettered(string, int)       {}
func (*groupCommits) ClaimProbed(string, bool)           {}
func (*groupCommits) ClaimStatementRan(string, bool)     {}
func (*groupCommits) ClaimCovered(string)                {}

// TestGroupCommitAcrossTenants: single enqueues of several organizations
// gathered by one flush go into one statement and one transaction, each job
// under its own organization and actor, idempotency keys scoped per
// organization; and when that statement fails, each organization's requests
// are tried on their own, so only the failing tenant's are refused.
func TestGroupCommitAcrossTenants(t *testing.T) {
	ctx := context.Background()
	pool, svc, actors := tenantsSharingGroupCommit(t, 3)
	job := func(i int, key string) commands.NewJob {
		j := commands.NewJob{QueueName: "shared-name", Payload: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}
		if key != "" {
			j.IdempotencyKey = &key
		}
		return j
	}
	// Tenants 0 and 1 use the same key (two jobs: keys are per
	// organization); tenant 2 sends one key twice (one job).
	reqActors := []commands.Actor{actors[0], actors[1], actors[2], actors[0], actors[1], actors[2]}
	jobs := []commands.NewJob{job(0, "k"), job(1, "k"), job(2, "k2"), job(3, ""), job(4, ""), job(5, "k2")}
	res, errs := svc.FlushEnqueues(ctx, reqActors, jobs)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if res[0].ID == res[1].ID || !res[0].Created || !res[1].Created {
		t.Fatalf("one key in two tenants: %+v and %+v, want two created jobs", res[0], res[1])
	}
	if res[2].ID != res[5].ID || res[2].Created == res[5].Created {
		t.Fatalf("one key twice in a tenant: %+v and %+v, want one job created once", res[2], res[5])
	}
	var txs int
	if err := pool.QueryRow(ctx, `SELECT count(DISTINCT tx_id) FROM job_events WHERE event_type = 'job.enqueued'`).Scan(&txs); err != nil {
		t.Fatal(err)
	}
	if txs != 1 {
		t.Fatalf("one flush of three tenants took %d transactions, want 1", txs)
	}
	for i, r := range res {
		if i == 5 {
			continue // the same job as request 2
		}
		var org, actor, jobOrg string
		err := pool.QueryRow(ctx, `SELECT e.organization_id, e.actor, j.organization_id
			FROM job_events e JOIN jobs j ON j.id::text = e.stream_id
			WHERE e.stream_id = $1 AND e.event_type = 'job.enqueued'`, r.ID.String()).Scan(&org, &actor, &jobOrg)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if org != reqActors[i].OrgID || jobOrg != reqActors[i].OrgID || actor != reqActors[i].Name {
			t.Fatalf("request %d: event of %s by %s, job of %s; want %s by %s", i, org, actor, jobOrg, reqActors[i].OrgID, reqActors[i].Name)
		}
	}

	// A payload Postgres refuses fails the shared statement; the other
	// tenants' jobs are still written, each tenant in its own transaction.
	bad := commands.NewJob{QueueName: "shared-name", Payload: json.RawMessage(`{"unclosed":`)}
	res, errs = svc.FlushEnqueues(ctx, actors, []commands.NewJob{job(10, ""), bad, job(12, "")})
	if errs[0] != nil || errs[2] != nil || !res[0].Created || !res[2].Created {
		t.Fatalf("the healthy tenants' requests: %+v %v, %+v %v", res[0], errs[0], res[2], errs[2])
	}
	if errs[1] == nil {
		t.Fatalf("the bad payload was accepted: %+v", res[1])
	}
	var healthy int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM job_events WHERE event_type = 'job.enqueued'
		AND (data->'payload'->>'i', organization_id) IN (('10', $1), ('12', $2))`,
		actors[0].OrgID, actors[2].OrgID).Scan(&healthy); err != nil {
		t.Fatal(err)
	}
	if healthy != 2 {
		t.Fatalf("after the fallback the log holds %d of the 2 healthy jobs under their organizations", healthy)
	}
	var badJobs int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE organization_id = $1`, actors[1].OrgID).Scan(&badJobs); err != nil {
		t.Fatal(err)
	}
	if badJobs != 2 {
		t.Fatalf("the failing tenant has %d jobs, want its 2 from the first flush", badJobs)
	}
}

// TestGroupCommitCompletesAcrossTenants: single completes of several
// organizations gathered by one flush share one statement; a request that
// names another tenant's job is refused as no such job, whether it comes
// before or after the owner's own complete, and the owner's complete still
// succeeds.
func TestGroupCommitCompletesAcrossTenants(t *testing.T) {
	ctx := context.Background()
	pool, svc, actors := tenantsSharingGroupCommit(t, 2)
	var orgs []string
	var leased [][]commands.CompleteItem
	for _, a := range actors {
		if _, err := svc.Enqueue(ctx, a, []commands.NewJob{{QueueName: "q", Payload: json.RawMessage(`{"a":1}`)},
			{QueueName: "q", Payload: json.RawMessage(`{"b":2}`)}}); err != nil {
			t.Fatal(err)
		}
		jobs, err := svc.Claim(ctx, a.OrgID, commands.ClaimRequest{QueueName: "q", WorkerID: "w", Limit: 2})
		if err != nil || len(jobs) != 2 {
			t.Fatalf("claim: %d jobs, %v", len(jobs), err)
		}
		var items []commands.CompleteItem
		for _, j := range jobs {
			items = append(items, commands.CompleteItem{Ref: commands.LeaseRef{JobID: j.ID.String(), WorkerID: "w", LeaseID: j.LeaseID},
				Result: json.RawMessage(`{"ok":true}`)})
		}
		orgs = append(orgs, a.OrgID)
		leased = append(leased, items)
	}
	// Tenant 1 names tenant 0's first job (with its worker and lease, the
	// id spelled in capitals) ahead of tenant 0's own complete, and its
	// second after it.
	shouted := leased[0][0]
	shouted.Ref.JobID = strings.ToUpper(shouted.Ref.JobID)
	errs := svc.FlushCompletes(ctx,
		[]string{orgs[1], orgs[0], orgs[1], orgs[0], orgs[1], orgs[1]},
		[]commands.CompleteItem{shouted, leased[0][0], leased[1][0], leased[0][1], leased[0][1], leased[1][1]})
	for _, i := range []int{1, 2, 3, 5} {
		if errs[i] != nil {
			t.Fatalf("request %d, a tenant's own job: %v", i, errs[i])
		}
	}
	for _, i := range []int{0, 4} {
		var le *commands.LeaseError
		if !errors.As(errs[i], &le) || le.JobFound {
			t.Fatalf("request %d, another tenant's job: %v, want no such job", i, errs[i])
		}
	}
	var done, txs int
	if err := pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT tx_id) FROM job_events WHERE event_type = 'job.completed'`).Scan(&done, &txs); err != nil {
		t.Fatal(err)
	}
	if done != 4 {
		t.Fatalf("%d jobs completed, want 4", done)
	}
	// Tenant 0's first job is named twice in the window, so its own
	// complete waits for a second statement; the other three share the
	// first with it.
	if txs != 2 {
		t.Fatalf("the completes took %d transactions, want 2", txs)
	}
	var foreign int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM job_events WHERE event_type = 'job.completed'
		AND organization_id <> (SELECT organization_id FROM jobs WHERE id::text = stream_id)`).Scan(&foreign); err != nil {
		t.Fatal(err)
	}
	if foreign != 0 {
		t.Fatalf("%d completions logged under another organization", foreign)
	}
}

// tenantsSharingGroupCommit is a service with one group-commit flusher on a
// database of its own, and actors of n organizations it made.
func tenantsSharingGroupCommit(t *testing.T, n int) (*pgxpool.Pool, *commands.Service, []commands.Actor) {
	t.Helper()
	pool := testdb.New(t)
	svc := commands.New(pool, nil, nil, testDefaults, commands.WithGroupCommit(1))
	t.Cleanup(func() { _ = svc.Close(context.Background()) })
	actors := make([]commands.Actor, n)
	for i := range actors {
		org, err := svc.CreateOrganization(context.Background(),
			commands.NewOrganization{Name: fmt.Sprintf("Tenant %d", i), Slug: fmt.Sprintf("tenant-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		actors[i] = commands.Actor{OrgID: org.Organization.ID, Name: events.ActorAPIKey(org.Key.Key.ID)}
	}
	return pool, svc, actors
}

// TestCloseCancelsStatementsTheDatabaseHolds: when the database does not
// answer a group-committed statement (here it waits for a lock held
// elsewhere), Close gives up waiting for it once its context ends: the
// statement is cancelled, its caller gets an error, nothing is written,
// and Close returns. It used to wait for the database however long it
// took, and with it the server's shutdown.
func TestCloseCancelsStatementsTheDatabaseHolds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testdb.New(t)
	svc := commands.New(pool, nil, nil, testDefaults, commands.WithGroupCommit(1))
	org, err := svc.CreateOrganization(ctx, commands.NewOrganization{Name: "Stuck", Slug: "stuck"})
	if err != nil {
		t.Fatal(err)
	}
	a := commands.Actor{OrgID: org.Organization.ID, Name: "api_key:test"}

	holder, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(ctx)
	if _, err := holder.Exec(ctx, `LOCK TABLE job_events IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	enqueued := make(chan error, 1)
	go func() {
		_, err := svc.Enqueue(ctx, a, []commands.NewJob{{QueueName: "stuck", Payload: json.RawMessage(`{}`)}})
		enqueued <- err
	}()
	waiting := func() bool {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		                           WHERE wait_event_type = 'Lock' AND query LIKE '%JobEnqueueBatch%'`).Scan(&n)
		return err == nil && n == 1
	}
	if !eventually(10*time.Second, waiting) {
		t.Fatal("the enqueue's statement never waited for the lock")
	}

	closed := make(chan error, 1)
	go func() {
		cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		closed <- svc.Close(cctx)
	}()
	select {
	case err := <-closed:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Close with a statement the database holds: %v, want the deadline's error", err)
		}
	case <-time.After(10 * time.Second):
		_ = holder.Rollback(ctx) // lets the statement, and Close, finish
		<-closed
		t.Fatal("Close waited for a statement the database held, past its deadline")
	}
	if err := <-enqueued; err == nil {
		t.Fatal("the cancelled enqueue was answered as created")
	}
	_ = holder.Rollback(ctx)
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE organization_id = $1`, a.OrgID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d jobs written by a cancelled enqueue, want 0", n)
	}
}
