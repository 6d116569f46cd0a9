package testdb_test

import (
	"context"
	"testing"

	"github.com/spooled-go/spooled/internal/testdb"
	"github.com/spooled-go/spooled/queries"
)

func TestMigratedSchemaHasPartitionsAhead(t *testing.T) {
	pool := testdb.New(t)
	rows, err := queries.New().PartitionHealth(context.Background(), pool)
	if err != nil {
		t.Fatal(err)
	}
	ok := 0
	for _, r := range rows {
		if r.Status == "missing" {
			t.Errorf("partition %s missing after migrate", r.PartitionName)
		}
		if r.Status == "ok" {
			ok++
		}
	}
	if ok < 4 {
		t.Fatalf("want at least 4 partitions (this month and three ahead), got %d", ok)
	}
}
