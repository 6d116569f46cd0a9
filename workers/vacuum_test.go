package workers_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/events"
	"github.com/spooled-go/spooled/internal/testdb"
	"github.com/spooled-go/spooled/workers"
)

// TestHotTableVacuumLoop: the loop vacuums the queue tables claims scan.
func TestHotTableVacuumLoop(t *testing.T) {
	ctx := context.Background()
	pool := testdb.New(t)
	svc := commands.New(pool, nil, nil, commands.Defaults{MaxRetries: 3, TimeoutSecs: 300, LeaseSecs: 30,
		MaxPayload: 1 << 20, KeyPrefix: "sk_test_", Registration: "open"})
	org, err := svc.CreateOrganization(ctx, commands.NewOrganization{Name: "Vacuum", Slug: "vacuum"})
	if err != nil {
		t.Fatal(err)
	}
	a := commands.Actor{OrgID: org.Organization.ID, Name: events.ActorAPIKey(org.Key.Key.ID)}
	jobs := make([]commands.NewJob, 50)
	for i := range jobs {
		jobs[i] = commands.NewJob{QueueName: "v", Payload: json.RawMessage(`{}`)}
	}
	if _, err := svc.Enqueue(ctx, a, jobs); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Claim(ctx, a.OrgID, commands.ClaimRequest{QueueName: "v", WorkerID: "w", Limit: 50}); err != nil {
		t.Fatal(err)
	}
	count := func() int64 {
		var n int64
		if err := pool.QueryRow(ctx, `SELECT coalesce(vacuum_count, 0) FROM pg_stat_user_tables
			WHERE relname = 'pending_jobs' AND schemaname = current_schema()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := count()
	loop := workers.NewHotTableVacuum(svc, time.Hour, nil) // runs once at start
	loop.Start(ctx)
	defer func() { _ = loop.Stop(ctx) }()
	deadline := time.Now().Add(15 * time.Second)
	for count() <= before {
		if time.Now().After(deadline) {
			t.Fatal("pending_jobs was not vacuumed within 15s")
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}
