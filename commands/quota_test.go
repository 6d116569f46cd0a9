package commands_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/spooled-go/spooled/commands"
)

// TestPlanQuotaMemo: a create is checked against the usage the service read
// within the last second plus what it has created since, and anything that
// does not fit that is decided by a fresh count. So on one instance the
// limit is exact (a finished job frees its slot at once); creates another
// instance accepted stay unseen until the read is a second old, the
// softness the README documents.
func TestPlanQuotaMemo(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	limited := func(a commands.Actor, active int64) commands.Actor {
		a.Limits = &commands.PlanLimits{Tier: "free", MaxActiveJobs: &active, MaxPayloadSizeBytes: 1 << 20}
		return a
	}
	create := func(svc *commands.Service, a commands.Actor, n int) error {
		jobs := make([]commands.NewJob, n)
		for i := range jobs {
			jobs[i] = commands.NewJob{QueueName: "q", Payload: payload(i)}
		}
		_, err := svc.Enqueue(e.ctx, a, jobs)
		return err
	}
	refusedAt := func(err error, current int64) {
		t.Helper()
		var le *commands.PlanLimitError
		if !errors.As(err, &le) || le.Resource != "active_jobs" || le.Current != current {
			t.Fatalf("got %v, want active_jobs refused at %d", err, current)
		}
	}

	// One instance: exact at the limit.
	a := limited(e.actor, 3)
	for i := range 3 {
		if err := create(e.svc, a, 1); err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
	}
	refusedAt(create(e.svc, a, 1), 3)
	jobs := e.claim("q", "w", 1)
	if err := e.svc.Complete(e.ctx, a.OrgID, commands.LeaseRef{JobID: jobs[0].ID.String(), WorkerID: "w", LeaseID: jobs[0].LeaseID},
		json.RawMessage(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := create(e.svc, a, 1); err != nil {
		t.Fatalf("a finished job's slot: %v", err)
	}
	refusedAt(create(e.svc, a, 1), 3)

	// Two instances on one database: the second's creates are unseen by
	// the first until its read is a second old.
	b := limited(e.newOrg("quota-b"), 5)
	other := commands.New(e.pool, e.clk, nil, testDefaults)
	if err := create(e.svc, b, 1); err != nil { // read: 0
		t.Fatal(err)
	}
	if err := create(other, b, 3); err != nil { // read: 1; 4 active
		t.Fatal(err)
	}
	for i := range 2 { // remembered 1, then 2: 5 and 6 active
		if err := create(e.svc, b, 1); err != nil {
			t.Fatalf("create %d within the second: %v", i, err)
		}
	}
	e.clk.Advance(time.Second)
	refusedAt(create(e.svc, b, 1), 6)
	refusedAt(create(other, b, 1), 6)
}
