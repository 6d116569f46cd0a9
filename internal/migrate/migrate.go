// Package migrate applies the embedded schema migrations, once, in order,
// under an advisory lock so that servers starting together do not race.
package migrate

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spooled-go/spooled/internal/pgdb"
	"github.com/spooled-go/spooled/queries"
	schema "github.com/spooled-go/spooled/sql"
)

// lockKey is the advisory lock every migrating process takes ("spooled" in ASCII).
const lockKey int64 = 0x73706f6f6c6564

// Migration is one numbered file of sql/.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Load reads the embedded migrations in version order.
func Load() ([]Migration, error) {
	entries, err := fs.ReadDir(schema.Migrations, ".")
	if err != nil {
		return nil, fmt.Errorf("read embedded migrations: %w", err)
	}
	var out []Migration
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".sql") {
			continue
		}
		prefix, _, ok := strings.Cut(name, "_")
		if !ok {
			return nil, fmt.Errorf("migration %s: name must be NNNN_description.sql", name)
		}
		v, err := strconv.Atoi(prefix)
		if err != nil {
			return nil, fmt.Errorf("migration %s: version: %w", name, err)
		}
		body, err := fs.ReadFile(schema.Migrations, name)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", name, err)
		}
		out = append(out, Migration{Version: v, Name: name, SQL: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("migrations %s and %s share a version", out[i-1].Name, out[i].Name)
		}
	}
	return out, nil
}

// Up applies every migration not yet recorded, each in its own transaction,
// then makes sure the log has partitions from this month to three ahead. It
// returns the names it applied.
func Up(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) ([]string, error) {
	migrations, err := Load()
	if err != nil {
		return nil, err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("acquire connection for migrations: %w", err)
	}
	defer conn.Release()

	q := queries.New()
	// A session lock (not a transaction lock) spans all the migrations, so a
	// second server waits for the whole set, not just the first file.
	if err := q.MigrationLock(ctx, conn, lockKey); err != nil {
		return nil, fmt.Errorf("take migration lock: %w", err)
	}
	defer func() { _ = q.MigrationUnlock(context.WithoutCancel(ctx), conn, lockKey) }()

	// The ledger file is idempotent and always runs first.
	if len(migrations) == 0 || migrations[0].Version != 0 {
		return nil, fmt.Errorf("migration 0000 (the ledger) is missing")
	}
	if _, err := conn.Exec(ctx, migrations[0].SQL); err != nil {
		return nil, fmt.Errorf("apply %s: %w", migrations[0].Name, err)
	}
	versions, err := q.MigrationVersions(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	applied := map[int]bool{0: true}
	for _, v := range versions {
		applied[int(v)] = true
	}

	var done []string
	for _, m := range migrations {
		if applied[m.Version] {
			continue
		}
		err := pgdb.WithTx(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("apply migration %s: %w", m.Name, err)
			}
			if err := q.MigrationRecord(ctx, tx, queries.MigrationRecordParams{Version: int32(m.Version), Name: m.Name}); err != nil {
				return fmt.Errorf("record migration %s: %w", m.Name, err)
			}
			return nil
		})
		if err != nil {
			return done, err
		}
		if log != nil {
			log.Info("migration applied", "name", m.Name)
		}
		done = append(done, m.Name)
	}
	// Retention is the upkeep loop's to enforce (with the configured
	// period); migrating only creates partitions ahead.
	if err := q.PartitionsMaintain(ctx, conn, 0); err != nil {
		return done, fmt.Errorf("create log partitions ahead: %w", err)
	}
	return done, nil
}
