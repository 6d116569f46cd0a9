package pgdb_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/spooled-go/spooled/internal/testdb"
)

// TestUUIDRoundTrip: with RegisterUUID (testdb's pools use it, as the
// server's do), uuid.UUID parameters, alone and in arrays, reach Postgres
// as the same ids, and a nil pointer as NULL.
func TestUUIDRoundTrip(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	ctx := context.Background()
	a, b := uuid.Must(uuid.NewV7()), uuid.New()

	var text string
	if err := pool.QueryRow(ctx, "SELECT $1::uuid::text", a).Scan(&text); err != nil || text != a.String() {
		t.Fatalf("single: %q, %v; want %s", text, err, a)
	}
	var texts []string
	if err := pool.QueryRow(ctx, "SELECT array_agg(x::text ORDER BY o) FROM unnest($1::uuid[]) WITH ORDINALITY AS t(x, o)",
		[]uuid.UUID{a, b, uuid.Nil}).Scan(&texts); err != nil {
		t.Fatal(err)
	}
	if want := []string{a.String(), b.String(), uuid.Nil.String()}; len(texts) != 3 || texts[0] != want[0] || texts[1] != want[1] || texts[2] != want[2] {
		t.Fatalf("array: %v, want %v", texts, want)
	}
	var isNull bool
	var none *uuid.UUID
	if err := pool.QueryRow(ctx, "SELECT $1::uuid IS NULL", none).Scan(&isNull); err != nil || !isNull {
		t.Fatalf("nil pointer: null %v, %v", isNull, err)
	}
	some := &b
	if err := pool.QueryRow(ctx, "SELECT $1::uuid::text", some).Scan(&text); err != nil || text != b.String() {
		t.Fatalf("pointer: %q, %v; want %s", text, err, b)
	}
	var back uuid.UUID
	if err := pool.QueryRow(ctx, "SELECT $1::uuid", a).Scan(&back); err != nil || back != a {
		t.Fatalf("scan back: %s, %v", back, err)
	}
}
