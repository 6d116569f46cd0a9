package projections_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/events"
	"github.com/spooled-go/spooled/internal/clock"
	"github.com/spooled-go/spooled/projections"
)

func newService(pool *pgxpool.Pool, c clock.Clock) *commands.Service {
	return commands.New(pool, c, nil, commands.Defaults{
		MaxRetries: 3, TimeoutSecs: 300, LeaseSecs: 30, MaxPayload: 1 << 20,
		KeyPrefix: "sk_test_", Registration: "open",
	})
}

func newOrg(t testing.TB, svc *commands.Service, slug string) commands.Actor {
	t.Helper()
	org, err := svc.CreateOrganization(context.Background(), commands.NewOrganization{Name: "Org " + slug, Slug: slug})
	if err != nil {
		t.Fatalf("create organization %s: %v", slug, err)
	}
	return commands.Actor{OrgID: org.Organization.ID, Name: events.ActorAPIKey(org.Key.Key.ID)}
}

// mustVerify runs Verify and fails the test unless the projections match.
func mustVerify(t *testing.T, pool *pgxpool.Pool, when string) {
	t.Helper()
	r := verify(t, pool)
	if !r.Clean() {
		t.Fatalf("%s: %s", when, r)
	}
}

func verify(t *testing.T, pool *pgxpool.Pool) projections.Report {
	t.Helper()
	r, err := projections.Verify(context.Background(), pool)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return r
}

// countRows counts a table's rows by a grouping expression.
func countRows(t *testing.T, pool *pgxpool.Pool, table, groupBy string) map[string]int {
	t.Helper()
	rows, err := pool.Query(context.Background(),
		fmt.Sprintf("SELECT %s::text, count(*) FROM %s GROUP BY 1", groupBy, table))
	if err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			t.Fatal(err)
		}
		out[k] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
