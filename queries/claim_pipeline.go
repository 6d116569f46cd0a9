package queries

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Batcher sends a pipelined batch: *pgxpool.Pool, *pgx.Conn and pgx.Tx are.
type Batcher interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// ClaimMultiPipelined runs PlanPin, ClaimLocksMulti and then
// JobClaimMulti in one round trip. pgx sends the three statements before a
// single Sync, so Postgres runs them as one implicit transaction: the pin
// holds for the claim, the locks are held until it commits, and the claim
// statement (its own snapshot, taken after the locks) sees every concurrent
// claim of the same queue or workers. (Hand-written: it pipelines
// generated statements, which sqlc cannot express.)
func (q *Queries) ClaimMultiPipelined(ctx context.Context, db Batcher, locks ClaimLocksMultiParams, arg JobClaimMultiParams) ([]JobClaimMultiRow, error) {
	expect := 0
	for _, n := range arg.Limits {
		expect += int(n)
	}
	return claimPipelined(ctx, db, locks, expect,
		jobClaimMulti, arg.Now, arg.WorkerIds, arg.Limits, arg.LeaseSecs, arg.Actors, arg.OrganizationID, arg.QueueName)
}

// ClaimOnePipelined is ClaimMultiPipelined for a single request: it runs
// JobClaimOne, whose rows are JobClaimMultiRow's (Req is 1). locks names
// the request's worker.
func (q *Queries) ClaimOnePipelined(ctx context.Context, db Batcher, locks ClaimLocksMultiParams, arg JobClaimOneParams) ([]JobClaimMultiRow, error) {
	return claimPipelined(ctx, db, locks, int(arg.Lim),
		jobClaimOne, arg.Now, arg.OrganizationID, arg.QueueName, arg.Lim, arg.WorkerID, arg.LeaseSecs, arg.Actor)
}

// The two claim statements return the same columns: a conversion between
// their row types compiles only while both have the same fields in the
// same order, so JobClaimOne's rows can be read as JobClaimMultiRow.
var _ = JobClaimMultiRow(JobClaimOneRow{})

// claimPipelined pipelines PlanPin, ClaimCapGate, ClaimLocksMulti and the
// claim statement sql with its arguments, and reads the claimed rows
// (expect of them at most).
func claimPipelined(ctx context.Context, db Batcher, locks ClaimLocksMultiParams, expect int, sql string, args ...any) ([]JobClaimMultiRow, error) {
	b := &pgx.Batch{}
	b.Queue(planPin)
	b.Queue(claimCapGate, locks.OrganizationID, locks.QueueName)
	b.Queue(claimLocksMulti, locks.OrganizationID, locks.QueueName, locks.WorkerIds)
	b.Queue(sql, args...)
	br := db.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("pin the claim plan: %w", err)
	}
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("take the queue's cap lock: %w", err)
	}
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("lock queue and workers: %w", err)
	}
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	// Columns come in JobClaimMultiRow's field order (RETURNING j.*, req,
	// claim_actor).
	return collectRows(rows, rowsFor[JobClaimMultiRow](expect))
}
