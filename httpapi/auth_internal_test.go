package httpapi

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/internal/clock"
	"github.com/spooled-go/spooled/internal/testdb"
	"github.com/spooled-go/spooled/queries"
)

// lookupHook is the real pool, calling onLookup each time a key lookup
// reaches it.
type lookupHook struct {
	queries.DBTX
	onLookup func()
}

func (h *lookupHook) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if strings.Contains(sql, "-- name: APIKeyByHash ") {
		h.onLookup()
	}
	return h.DBTX.QueryRow(ctx, sql, args...)
}

// newKeyFixture makes a database and an organization with its first key.
func newKeyFixture(t *testing.T) (queries.DBTX, commands.CreatedOrganization) {
	t.Helper()
	pool := testdb.New(t)
	svc := commands.New(pool, clock.Database{}, nil, commands.Defaults{
		MaxRetries: 3, TimeoutSecs: 300, LeaseSecs: 30, MaxPayload: 1 << 20, KeyPrefix: "sk_test_", Registration: "open",
	})
	org, err := svc.CreateOrganization(context.Background(), commands.NewOrganization{Name: "Acme", Slug: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	return pool, org
}

// TestConcurrentKeyMissesShareOneLoad: requests that find a key missing
// from the cache at the same moment (its entry just expired, or the
// server just started) share one read of the key and one last_used
// update, and all of them get the key's principal.
func TestConcurrentKeyMissesShareOneLoad(t *testing.T) {
	ctx := context.Background()
	pool, org := newKeyFixture(t)
	var lookups atomic.Int64
	auth := newKeyAuthenticator(&lookupHook{DBTX: pool, onLookup: func() { lookups.Add(1) }}, time.Minute)

	const callers = 50
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			p, err := auth.authenticate(ctx, org.Key.Raw)
			if err == nil && p.OrgID != org.Organization.ID {
				err = errors.New("principal of another organization: " + p.OrgID)
			}
			errs <- err
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := lookups.Load(); n != 1 {
		t.Fatalf("%d concurrent callers read the key %d times, want once", callers, n)
	}
}

// TestForgetDuringLoadIsNotUndone: a load that began before a revoke on
// this server must not cache the key as it read it; the next request
// reads the key again.
func TestForgetDuringLoadIsNotUndone(t *testing.T) {
	ctx := context.Background()
	pool, org := newKeyFixture(t)
	var auth *keyAuthenticator
	var once sync.Once
	auth = newKeyAuthenticator(&lookupHook{DBTX: pool, onLookup: func() {
		once.Do(func() { auth.forgetKeyID(org.Key.Key.ID) })
	}}, time.Minute)
	if _, err := auth.authenticate(ctx, org.Key.Raw); err != nil {
		t.Fatal(err)
	}
	auth.mu.RLock()
	cached := len(auth.byKey)
	auth.mu.RUnlock()
	if cached != 0 {
		t.Fatalf("a key forgotten while it was read was cached anyway")
	}
}
