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
	b := &pgx.Batch{}
	b.Queue(planPin)
	b.Queue(claimLocksMulti, locks.OrganizationID, locks.QueueName, locks.WorkerIds)
	b.Queue(jobClaimMulti, arg.Now, arg.WorkerIds, arg.Limits, arg.LeaseSecs, arg.Actors, arg.OrganizationID, arg.QueueName)
	br := db.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("pin the claim plan: %w", err)
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
	expect := 0
	for _, n := range arg.Limits {
		expect += int(n)
	}
	return collectRows[JobClaimMultiRow](rows, min(expect, maxExpectedRows))
}
