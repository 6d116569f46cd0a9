package projections_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/spooled-go/spooled/internal/testdb"
)

// TestRebuildTwinsMatchLiveTables: a projection swap renames each
// *_rebuild twin into its live table's place, so each twin must carry the
// same indexes (names aside), storage settings and per-column statistics
// targets as its live table, or the swap quietly drops an index the
// server's queries rely on, or makes the hot-table ANALYZE dearer.
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
			if err := pool.QueryRow(ctx, `SELECT coalesce(array_agg(attname || '=' || attstattarget ORDER BY attname), '{}')
				FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped`,
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
			t.Errorf("%s statistics targets %v, %s statistics targets %v", live, lt, twin, tt)
		}
	}
}
