package testdb

import (
	"context"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
)

// StatementCounter is an Options.Tracer that counts the statements a pool
// runs by their sqlc name ("-- name: X" opens every generated statement),
// pipelined ones included. Statements without a name are not counted.
type StatementCounter struct {
	mu sync.Mutex
	n  map[string]int
}

// NewStatementCounter returns a counter at zero.
func NewStatementCounter() *StatementCounter { return &StatementCounter{n: map[string]int{}} }

func (c *StatementCounter) count(sql string) {
	name, ok := strings.CutPrefix(sql, "-- name: ")
	if !ok {
		return
	}
	name, _, _ = strings.Cut(name, " ")
	c.mu.Lock()
	c.n[name]++
	c.mu.Unlock()
}

// Take returns the counts so far and starts again from zero.
func (c *StatementCounter) Take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = map[string]int{}
	return n
}

// TraceQueryStart implements pgx.QueryTracer.
func (c *StatementCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	c.count(d.SQL)
	return ctx
}

// TraceQueryEnd implements pgx.QueryTracer.
func (c *StatementCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TraceBatchStart implements pgx.BatchTracer.
func (c *StatementCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}

// TraceBatchQuery implements pgx.BatchTracer: each statement of a batch.
func (c *StatementCounter) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	c.count(d.SQL)
}

// TraceBatchEnd implements pgx.BatchTracer.
func (c *StatementCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}
