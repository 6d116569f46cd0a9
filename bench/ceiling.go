package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

type pgFacts struct {
	Version           string
	SharedBuffers     string
	SynchronousCommit string
	Fsync             string
	MaxConnections    string
}

func postgresFacts(ctx context.Context, dbURL string) (pgFacts, error) {
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return pgFacts{}, err
	}
	defer pool.Close()
	var f pgFacts
	err = pool.QueryRow(ctx, `SELECT version(), current_setting('shared_buffers'), current_setting('synchronous_commit'),
		current_setting('fsync'), current_setting('max_connections')`).
		Scan(&f.Version, &f.SharedBuffers, &f.SynchronousCommit, &f.Fsync, &f.MaxConnections)
	return f, err
}

// runCeiling measures what this Postgres commits: clients connections each
// running autocommit single-row INSERTs into a tiny table.
func runCeiling(ctx context.Context, dbURL, schema string, clients int, warm, dur time.Duration) (loopResult, error) {
	if err := freshSchema(ctx, dbURL, schema); err != nil {
		return loopResult{}, err
	}
	defer dropSchema(dbURL, schema)
	surl, err := schemaURL(dbURL, schema)
	if err != nil {
		return loopResult{}, err
	}
	cfg, err := pgxpool.ParseConfig(surl)
	if err != nil {
		return loopResult{}, err
	}
	cfg.MaxConns, cfg.MinConns = int32(clients), int32(clients)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return loopResult{}, err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE commit_ceiling (id bigserial PRIMARY KEY, v integer NOT NULL)`); err != nil {
		return loopResult{}, fmt.Errorf("create table: %w", err)
	}
	r := closedLoop(ctx, clients, warm, dur, func(ctx context.Context, g, i int) (int, error) {
		_, err := pool.Exec(ctx, `INSERT INTO commit_ceiling (v) VALUES ($1)`, i)
		return 1, err
	})
	return r, nil
}
