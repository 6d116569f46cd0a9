package projections_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/events"
	"github.com/spooled-go/spooled/internal/clock"
	"github.com/spooled-go/spooled/internal/testdb"
	"github.com/spooled-go/spooled/projections"
	"github.com/spooled-go/spooled/queries"
)

// TestRetentionCarriesLiveJobsForward writes jobs eight months ago (a
// pinned clock puts their events in that month's partition), some still
// alive, some finished, one purged since; retention of six months drops the
// old partition after carrying every job of the read model forward as a
// job.snapshot, and a rebuild of what remains equals the live projections.
func TestRetentionCarriesLiveJobsForward(t *testing.T) {
	ctx := context.Background()
	pool := testdb.New(t)
	past := time.Now().AddDate(0, -8, 0)
	if _, err := pool.Exec(ctx, "SELECT create_jobs_partition_for_month($1::date)", past); err != nil {
		t.Fatal(err)
	}
	oldPartition := "job_events_" + past.Format("2006_01")
	clk := clock.NewPinned(past)
	svc := commands.New(pool, clk, nil, commands.Defaults{MaxRetries: 0, TimeoutSecs: 300, LeaseSecs: 3600,
		MaxPayload: 1 << 20, KeyPrefix: "sk_test_", Registration: "open", RetentionMonths: 6})
	org, err := svc.CreateOrganization(ctx, commands.NewOrganization{Name: "Old", Slug: "old-timers"})
	if err != nil {
		t.Fatal(err)
	}
	a := commands.Actor{OrgID: org.Organization.ID, Name: events.ActorAPIKey(org.Key.Key.ID)}
	enqueue := func(queue string) string {
		t.Helper()
		r, err := svc.Enqueue(ctx, a, []commands.NewJob{{QueueName: queue, Payload: json.RawMessage(`{"old":true}`)}})
		if err != nil {
			t.Fatal(err)
		}
		return r[0].ID.String()
	}
	claim := func(queue string) commands.LeaseRef {
		t.Helper()
		jobs, err := svc.Claim(ctx, a.OrgID, commands.ClaimRequest{QueueName: queue, WorkerID: "w"})
		if err != nil || len(jobs) != 1 {
			t.Fatalf("claim %s: %v %v", queue, jobs, err)
		}
		return commands.LeaseRef{JobID: jobs[0].ID.String(), WorkerID: "w", LeaseID: jobs[0].LeaseID}
	}

	waiting := enqueue("waiting")          // still pending
	leased := enqueue("leased")            // processing, lease still held
	done := enqueue("done")                // completed back then
	spans := enqueue("spans")              // enqueued then, completed now
	purgedLater := enqueue("purged-later") // dead-lettered then, purged now
	purgedThen := enqueue("purged-then")   // whole life in the old month
	claim("leased")
	if err := svc.Complete(ctx, a.OrgID, claim("done"), nil); err != nil {
		t.Fatal(err)
	}
	spansRef := claim("spans")
	for _, q := range []string{"purged-later", "purged-then"} {
		if _, err := svc.Fail(ctx, a.OrgID, claim(q), "boom", false); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := svc.PurgeDeadLetters(ctx, a, ptr("purged-then"), nil, 0); err != nil || n != 1 {
		t.Fatalf("purge then: %d %v", n, err)
	}

	// Now: the spanning job completes, the other dead letter is purged.
	clk.Set(time.Now())
	spansRef.LeaseID = nil
	if _, err := svc.RenewLease(ctx, a.OrgID, spansRef, 3600); err == nil {
		// The lease ran out long ago; the renewal is refused and recorded.
		t.Fatal("renewal of an ancient lease accepted")
	}
	if _, err := svc.ExpireLeases(ctx, 100); err != nil {
		t.Fatal(err)
	}
	if n, err := svc.PurgeDeadLetters(ctx, a, ptr("purged-later"), nil, 0); err != nil || n != 1 {
		t.Fatalf("purge later: %d %v", n, err)
	}
	_ = purgedLater
	_ = purgedThen

	if r, err := projections.Verify(ctx, pool); err != nil || !r.Clean() {
		t.Fatalf("before retention: %v %v", r, err)
	}
	live := countRows(t, pool, "jobs", "status")

	if err := svc.MaintainPartitions(ctx); err != nil {
		t.Fatalf("maintain partitions: %v", err)
	}
	health, err := queries.New().PartitionHealth(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range health {
		if h.PartitionName == oldPartition {
			t.Fatalf("partition %s still there after retention", oldPartition)
		}
	}
	// Every job of the read model survived and a rebuild agrees.
	if after := countRows(t, pool, "jobs", "status"); sumMap(after) != sumMap(live) {
		t.Fatalf("jobs by status %v after retention, %v before", after, live)
	}
	r, err := projections.Verify(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Clean() {
		t.Fatalf("after retention: %s", r)
	}
	// The carried jobs' histories now start with (or contain) a snapshot.
	for _, id := range []string{waiting, leased, done, spans} {
		var types []string
		rows, err := pool.Query(ctx, "SELECT event_type FROM job_events WHERE stream_id = $1 ORDER BY stream_seq", id)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var typ string
			if err := rows.Scan(&typ); err != nil {
				t.Fatal(err)
			}
			types = append(types, typ)
		}
		rows.Close()
		if len(types) == 0 || types[0] != events.JobSnapshot && !contains(types, events.JobSnapshot) {
			t.Errorf("job %s history after retention: %v, want a job.snapshot", id, types)
		}
	}
	t.Logf("live jobs by status kept across retention: %v", live)
}

func ptr[T any](v T) *T { return &v }

func sumMap(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
