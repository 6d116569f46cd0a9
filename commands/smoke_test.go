package commands_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/events"
	"github.com/spooled-go/spooled/internal/testdb"
)

func TestLifecycleSmoke(t *testing.T) {
	ctx := context.Background()
	pool := testdb.New(t)
	svc := commands.New(pool, nil, nil, commands.Defaults{MaxRetries: 3, TimeoutSecs: 300, LeaseSecs: 30, MaxPayload: 1 << 20, KeyPrefix: "sk_test_", Registration: "open"})
	org, err := svc.CreateOrganization(ctx, commands.NewOrganization{Name: "Acme", Slug: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	actor := commands.Actor{OrgID: org.Organization.ID, Name: events.ActorAPIKey(org.Key.Key.ID)}
	key := "k1"
	res, err := svc.Enqueue(ctx, actor, []commands.NewJob{{QueueName: "emails", Payload: json.RawMessage(`{"a":1}`), IdempotencyKey: &key, Tags: json.RawMessage(`{"x":1}`)}})
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := svc.Claim(ctx, actor.OrgID, commands.ClaimRequest{QueueName: "emails", WorkerID: "w1", Limit: 5})
	if err != nil || len(jobs) != 1 || jobs[0].ID != res[0].ID {
		t.Fatalf("claim: %v %v", jobs, err)
	}
	if err := svc.Complete(ctx, actor.OrgID, commands.LeaseRef{JobID: jobs[0].ID.String(), WorkerID: "w1", LeaseID: jobs[0].LeaseID}, json.RawMessage(`{"ok":true}`)); err != nil {
		t.Fatal(err)
	}
	if err := svc.Complete(ctx, actor.OrgID, commands.LeaseRef{JobID: jobs[0].ID.String(), WorkerID: "w1"}, nil); err == nil {
		t.Fatal("second complete accepted")
	}
	h, err := events.JobHistory(ctx, pool, actor.OrgID, res[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range h {
		types = append(types, e.Type)
	}
	want := []string{"job.enqueued", "job.claimed", "job.completed", "job.attempt_rejected"}
	if len(types) != len(want) {
		t.Fatalf("history %v", types)
	}
	for i := range want {
		if types[i] != want[i] {
			t.Fatalf("history %v", types)
		}
	}
	t.Logf("%s", h[0].Data)
}
