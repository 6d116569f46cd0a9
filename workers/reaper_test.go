package workers_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/events"
	"github.com/spooled-go/spooled/internal/clock"
	"github.com/spooled-go/spooled/internal/testdb"
	"github.com/spooled-go/spooled/queries"
	"github.com/spooled-go/spooled/workers"
)

func TestLeaseReaperLoopRequeuesExpiredLeases(t *testing.T) {
	ctx := context.Background()
	pool := testdb.New(t)
	clk := clock.NewPinned(time.Now())
	svc := commands.New(pool, clk, nil, commands.Defaults{MaxRetries: 3, TimeoutSecs: 300, LeaseSecs: 30,
		MaxPayload: 1 << 20, KeyPrefix: "sk_test_", Registration: "open"})
	org, err := svc.CreateOrganization(ctx, commands.NewOrganization{Name: "Reaper", Slug: "reaper"})
	if err != nil {
		t.Fatal(err)
	}
	actor := commands.Actor{OrgID: org.Organization.ID, Name: events.ActorAPIKey(org.Key.Key.ID)}
	zero := 0
	jobs := []commands.NewJob{
		{QueueName: "q", Payload: json.RawMessage(`{}`)},
		{QueueName: "q", Payload: json.RawMessage(`{}`), MaxRetries: &zero},
	}
	if _, err := svc.Enqueue(ctx, actor, jobs); err != nil {
		t.Fatal(err)
	}
	claimed, err := svc.Claim(ctx, actor.OrgID, commands.ClaimRequest{QueueName: "q", WorkerID: "gone", Limit: 2, LeaseSecs: 30})
	if err != nil || len(claimed) != 2 {
		t.Fatalf("claim: %v %v", claimed, err)
	}

	loop := workers.NewLeaseReaper(svc, 10*time.Millisecond, nil)
	loop.Start(ctx)
	clk.Advance(31 * time.Second)

	q := queries.New()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var statuses []string
		for _, j := range claimed {
			got, err := q.JobGet(ctx, pool, queries.JobGetParams{ID: j.ID, OrganizationID: actor.OrgID})
			if err != nil {
				t.Fatal(err)
			}
			statuses = append(statuses, got.Status)
		}
		// Claim order is creation order: the first job has retries left.
		if statuses[0] == "pending" && statuses[1] == "deadletter" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reaper did not requeue within 10s: %v", statuses)
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	stopCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := loop.Stop(stopCtx); err != nil {
		t.Fatalf("stop: %v", err)
	}

	hist, err := events.JobHistory(ctx, pool, actor.OrgID, claimed[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	types := []string{}
	for _, e := range hist {
		types = append(types, e.Type)
		if e.Type == events.JobLeaseExpired && e.Actor != "system:lease_reaper" {
			t.Errorf("lease expiry actor %q", e.Actor)
		}
	}
	want := []string{"job.enqueued", "job.claimed", "job.lease_expired", "job.retry_scheduled"}
	if len(types) != len(want) {
		t.Fatalf("history %v, want %v", types, want)
	}
	for i := range want {
		if types[i] != want[i] {
			t.Fatalf("history %v, want %v", types, want)
		}
	}
	// The requeued job is claimable again by another worker at once.
	again, err := svc.Claim(ctx, actor.OrgID, commands.ClaimRequest{QueueName: "q", WorkerID: "w2"})
	if err != nil || len(again) != 1 || again[0].ID != claimed[0].ID {
		t.Fatalf("reclaim: %v %v", again, err)
	}
}

func TestLoopStopWaitsForItsGoroutine(t *testing.T) {
	runs := make(chan struct{}, 100)
	l := workers.NewLoop("test", time.Millisecond, nil, func(ctx context.Context) error {
		select {
		case runs <- struct{}{}:
		default:
		}
		return nil
	})
	l.Start(context.Background())
	<-runs
	<-runs
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// Stop returned before its deadline, so the loop's goroutine has ended;
	// stopping again is a no-op.
	if err := l.Stop(ctx); err != nil {
		t.Fatal("second stop:", err)
	}
}
