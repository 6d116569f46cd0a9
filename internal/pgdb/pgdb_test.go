package pgdb_test

import (
	"context"
	"net/url"
	"testing"

	"github.com/spooled-go/spooled/internal/pgdb"
	"github.com/spooled-go/spooled/internal/testdb"
)

// TestOpenNamesConnections: Open gives its connections the pool's name as
// application_name, as pg_stat_activity shows it, unless the URL names one.
func TestOpenNamesConnections(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	appName := func(u string) string {
		t.Helper()
		pool, err := pgdb.Open(ctx, u, 1, "spooled-jobs")
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		var seen string
		if err := pool.QueryRow(ctx,
			"SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()").Scan(&seen); err != nil {
			t.Fatal(err)
		}
		return seen
	}
	if got := appName(testdb.URL()); got != "spooled-jobs" {
		t.Fatalf("application_name %q, want the pool's name spooled-jobs", got)
	}
	u, err := url.Parse(testdb.URL())
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", "operator-choice")
	u.RawQuery = q.Encode()
	if got := appName(u.String()); got != "operator-choice" {
		t.Fatalf("application_name %q, want the URL's operator-choice", got)
	}
}
