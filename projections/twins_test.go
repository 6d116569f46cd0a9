package projections_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/spooled-go/spooled/internal/testdb"
)

// TestRebuildTwinsMatchLiveTables: a projection swap renames each
// *_rebuild twin into its live table's place, so each twin must carry the
// same indexes (names aside), storage settings, per-column statistics
// targets and column collations as its live table, or the swap quietly
// drops an index the server's queries rely on, makes the hot-table ANALYZE
// dearer or gives key columns back their locale comparisons.
func TestRebuildTwinsMatchLiveTables(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	ctx := context.Background()
	for _, live := range []string{"jobs", "pending_jobs", "processing_jobs"} {
		twin := live + "_rebuild"
		shape := func(table string) (indexes, options, targets []string) {
			rows, err := pool.Query(ctx, `SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
				WHERE i.indrelid = $1::regclass`, table)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var def string
				if err := rows.Scan(&def); err != nil {
					t.Fatal(err)
				}
				// "CREATE [UNIQUE] INDEX name ON schema.table USING ..." ->
				// "[UNIQUE] USING ...": the definition without its names.
				unique := strings.HasPrefix(def, "CREATE UNIQUE")
				_, def, _ = strings.Cut(def, " USING ")
				if unique {
					def = "UNIQUE " + def
				}
				indexes = append(indexes, def)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if err := pool.QueryRow(ctx, `SELECT coalesce(reloptions, '{}') FROM pg_class WHERE oid = $1::regclass`,
				table).Scan(&options); err != nil {
				t.Fatal(err)
			}
			// attstattarget -1 is the default target.
			if err := pool.QueryRow(ctx, `SELECT coalesce(array_agg(a.attname || '=' || a.attstattarget || ' ' ||
				       coalesce(c.collname, '-') ORDER BY a.attname), '{}')
				FROM pg_attribute a LEFT JOIN pg_collation c ON c.oid = a.attcollation
				WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped`,
				table).Scan(&targets); err != nil {
				t.Fatal(err)
			}
			slices.Sort(indexes)
			slices.Sort(options)
			return indexes, options, targets
		}
		li, lo, lt := shape(live)
		ti, to, tt := shape(twin)
		if !slices.Equal(li, ti) {
			t.Errorf("%s indexes:\n  %s\n%s indexes:\n  %s", live, strings.Join(li, "\n  "), twin, strings.Join(ti, "\n  "))
		}
		if !slices.Equal(lo, to) {
			t.Errorf("%s storage %v, %s storage %v", live, lo, twin, to)
		}
		if !slices.Equal(lt, tt) {
			t.Errorf("%s statistics targets and collations %v, %s %v", live, lt, twin, tt)
		}
	}
}

// TestKeyColumnsCompareBytewise: the text keys that lead the indexes a job
// writes and reads have the C collation (sql/0019), in the log's every
// partition too, so that no index comparison of them takes the locale
// path whatever the database's collation.
func TestKeyColumnsCompareBytewise(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	ctx := context.Background()
	keys := map[string][]string{
		"organizations":           {"id", "slug"},
		"api_keys":                {"organization_id", "key_hash"},
		"workers":                 {"id", "organization_id"},
		"queue_config":            {"organization_id", "queue_name"},
		"queue_stats":             {"organization_id", "queue_name"},
		"queue_stats_hourly":      {"organization_id", "queue_name"},
		"job_events":              {"organization_id", "stream_id"},
		"jobs":                    {"organization_id", "queue_name", "idempotency_key"},
		"pending_jobs":            {"organization_id", "queue_name"},
		"processing_jobs":         {"organization_id", "queue_name", "worker_id"},
		"jobs_rebuild":            {"organization_id", "queue_name", "idempotency_key"},
		"pending_jobs_rebuild":    {"organization_id", "queue_name"},
		"processing_jobs_rebuild": {"organization_id", "queue_name", "worker_id"},
	}
	rows, err := pool.Query(ctx, `SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'job_events'::regclass`)
	if err != nil {
		t.Fatal(err)
	}
	partitions, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(partitions) == 0 {
		t.Fatal("job_events has no partitions")
	}
	for _, p := range partitions {
		keys[p] = keys["job_events"]
	}
	for table, cols := range keys {
		for _, col := range cols {
			var coll string
			if err := pool.QueryRow(ctx, `SELECT coalesce(c.collname, '-')
				FROM pg_attribute a LEFT JOIN pg_collation c ON c.oid = a.attcollation
				WHERE a.attrelid = $1::regclass AND a.attname = $2 AND NOT a.attisdropped`, table, col).Scan(&coll); err != nil {
				t.Fatalf("%s.%s: %v", table, col, err)
			}
			if coll != "C" {
				t.Errorf("%s.%s has collation %s, want C", table, col, coll)
			}
		}
	}
}
