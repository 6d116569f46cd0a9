package commands_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

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

	svc.Close()
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
