// Package pgdb owns the connection pool and the one way the project runs a
// transaction.
package pgdb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Open connects a pool and checks that the database answers. name becomes
// the connections' application_name unless the URL sets one, so that
// pg_stat_activity and the server's logs tell the server's pools (and its
// command-line tools) apart from each other and from other clients.
func Open(ctx context.Context, url string, maxConns int32, name string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	if _, set := cfg.ConnConfig.RuntimeParams["application_name"]; !set && name != "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = name
	}
	cfg.AfterConnect = RegisterUUID
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("ping database: %w", err)
	}
	return pool, nil
}

// Beginner is what WithTx needs: a pool or a connection.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// WithTx runs fn in a transaction and commits it when fn returns nil. The
// rollback runs on a context that cannot be cancelled, so a caller that gives
// up mid-way never leaves a transaction open on the connection.
func WithTx(ctx context.Context, db Beginner, fn func(tx pgx.Tx) error) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}

// IsUniqueViolation reports whether err is a unique-constraint violation,
// optionally of the named constraint.
func IsUniqueViolation(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		return false
	}
	return constraint == "" || pgErr.ConstraintName == constraint
}

// RetryOnLockTimeout runs run (attempt counts from 1) until it does not fail
// with a lock timeout (SQLSTATE 55P03), at most attempts times, pausing a
// few milliseconds between tries. It serves transactions that bound their
// lock waits (lock_timeout) because they could close a lock cycle with a
// writer: they give up and try again rather than have deadlock detection
// abort the writer. The last error is returned as is.
func RetryOnLockTimeout(ctx context.Context, attempts int, run func(attempt int) error) error {
	for attempt := 1; ; attempt++ {
		err := run(attempt)
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "55P03" || attempt >= attempts {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(1+attempt%5) * time.Millisecond):
		}
	}
}
