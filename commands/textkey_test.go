package commands_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/queries"
)

// TestTextKeyCollisionsStayApart: the claim index and the job lists'
// indexes lead with 64-bit hashes of the organization and the queue
// (text_key, sql/0020), which two texts can share. Here every text shares
// one key, and every read through those indexes (claims, probes, counts,
// stats, lists) must still see its own jobs alone: a collision may cost a
// skipped index entry, never another tenant's or queue's job.
func TestTextKeyCollisionsStayApart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, err := e.pool.Exec(e.ctx, `CREATE OR REPLACE FUNCTION text_key(t text) RETURNS bigint
		LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT AS $$ SELECT 7::bigint $$`); err != nil {
		t.Fatal(err)
	}
	other := e.newOrg("other")
	enqueue := func(a commands.Actor, queue string, n int) []uuid.UUID {
		var ids []uuid.UUID
		for i := range n {
			ids = append(ids, e.enqueue(a, commands.NewJob{QueueName: queue, Payload: payload(i)}))
		}
		return ids
	}
	mine := enqueue(e.actor, "emails", 3)
	enqueue(e.actor, "reports", 2)
	enqueue(other, "emails", 4)

	var same bool
	if err := e.pool.QueryRow(e.ctx, `SELECT text_key($1) = text_key($2)`, e.actor.OrgID, other.OrgID).Scan(&same); err != nil || !same {
		t.Fatalf("the organizations' keys differ (%v): the collision under test is not in place", err)
	}

	q, org := queries.New(), e.actor.OrgID
	queueActive, err := q.QueueActiveJobs(e.ctx, e.pool, queries.QueueActiveJobsParams{OrganizationID: org, QueueName: "emails"})
	if err != nil || queueActive != 3 {
		t.Errorf("QueueActiveJobs = %d, %v; want 3", queueActive, err)
	}
	orgActive, err := q.OrgActiveJobs(e.ctx, e.pool, org)
	if err != nil || orgActive != 5 {
		t.Errorf("OrgActiveJobs = %d, %v; want 5", orgActive, err)
	}
	live, err := q.StatsLive(e.ctx, e.pool, queries.StatsLiveParams{OrganizationID: org})
	if err != nil || live.Waiting != 5 {
		t.Errorf("StatsLive = %+v, %v; want 5 waiting", live, err)
	}
	busiest, err := q.StatsBusiestQueues(e.ctx, e.pool, org)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range busiest {
		got = append(got, fmt.Sprintf("%s:%d", b.QueueName, b.Pending))
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"emails:3", "reports:2"}) {
		t.Errorf("StatsBusiestQueues = %v, want [emails:3 reports:2]", got)
	}
	probe, err := q.QueueClaimProbe(e.ctx, e.pool, queries.QueueClaimProbeParams{OrganizationID: org, QueueName: "nothing-here"})
	if err != nil || probe.Ready {
		t.Errorf("QueueClaimProbe of an empty queue = %+v, %v; want not ready", probe, err)
	}
	if _, err := q.StatsOldestWaiting(e.ctx, e.pool, queries.StatsOldestWaitingParams{OrganizationID: org, QueueName: "nothing-here"}); !errors.Is(err, pgx.ErrNoRows) {
		t.Errorf("StatsOldestWaiting of an empty queue: %v, want no row", err)
	}

	for _, c := range []struct {
		queue string // "": every queue
		want  int
	}{{"", 5}, {"emails", 3}, {"nothing-here", 0}} {
		p := queries.JobListParams{OrganizationID: org, MaxRows: 100}
		if c.queue != "" {
			p.QueueName = &c.queue
		}
		list, err := q.JobList(e.ctx, e.pool, p)
		if err != nil || len(list) != c.want {
			t.Errorf("JobList of queue %q: %d jobs, %v; want %d", c.queue, len(list), err, c.want)
		}
	}

	claimed, err := e.svc.Claim(e.ctx, org, commands.ClaimRequest{QueueName: "emails", WorkerID: "w1", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var ids []uuid.UUID
	for _, j := range claimed {
		ids = append(ids, j.ID)
	}
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })
	if !slices.Equal(ids, mine) {
		t.Fatalf("claim of emails took %v, want this tenant's emails jobs %v", ids, mine)
	}
}
