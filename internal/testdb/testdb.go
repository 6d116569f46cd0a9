// Package testdb gives each test its own freshly migrated schema in the real
// test database, so tests run in parallel without seeing each other's rows.
package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spooled-go/spooled/internal/pgdb"

	"github.com/spooled-go/spooled/internal/migrate"
)

// URL is the test database: TEST_DATABASE_URL, else the local "test"
// database.
func URL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// Options tune New.
type Options struct {
	MaxConns int32
	// Tracer, when set, sees every statement the pool's connections run
	// (tests that count statements).
	Tracer pgx.QueryTracer
}

// New creates a schema, applies the migrations to it, and returns a pool
// whose connections use it. The schema is dropped when the test ends.
func New(t testing.TB) *pgxpool.Pool { return NewWith(t, Options{}) }

// NewWith is New with options.
func NewWith(t testing.TB, o Options) *pgxpool.Pool {
	t.Helper()
	pool, _ := NewWithURL(t, o)
	return pool
}

// NewWithURL is NewWith that also returns a connection URL for the same
// schema, for servers the test starts in another process.
func NewWithURL(t testing.TB, o Options) (*pgxpool.Pool, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	buf := make([]byte, 6)
	_, _ = rand.Read(buf)
	schema := "t_" + hex.EncodeToString(buf)

	admin, err := pgx.Connect(ctx, URL())
	if err != nil {
		t.Fatalf("testdb: connect %s: %v (is Postgres running? .ci/run starts it)", URL(), err)
	}
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("testdb: create schema: %v", err)
	}
	_ = admin.Close(ctx)

	cfg, err := pgxpool.ParseConfig(URL())
	if err != nil {
		t.Fatalf("testdb: parse url: %v", err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	cfg.MaxConns = 16
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	cfg.AfterConnect = pgdb.RegisterUUID // as the server's pool does
	cfg.ConnConfig.Tracer = o.Tracer
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("testdb: pool: %v", err)
	}
	t.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, URL())
		if err != nil {
			t.Logf("testdb: cleanup connect: %v", err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Logf("testdb: drop schema %s: %v", schema, err)
		}
	})
	if _, err := migrate.Up(ctx, pool, nil); err != nil {
		t.Fatalf("testdb: migrate: %v", err)
	}
	u, err := url.Parse(URL())
	if err != nil {
		t.Fatalf("testdb: parse url: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return pool, u.String()
}
