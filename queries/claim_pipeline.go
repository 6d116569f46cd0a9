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

// ClaimPipelined runs ClaimPlanPin, ClaimLocks and then JobClaimBatch in
// one round trip.
// pgx sends both statements before a single Sync, so Postgres runs them as
// one implicit transaction: the locks are held until the claim commits,
// and the claim statement (its own snapshot, taken after the locks) sees
// every concurrent claim of the same queue or worker. (Hand-written: it
// pipelines two generated statements, which sqlc cannot express.)
func (q *Queries) ClaimPipelined(ctx context.Context, db Batcher, locks ClaimLocksParams, arg JobClaimBatchParams) ([]JobClaimBatchRow, error) {
	b := &pgx.Batch{}
	b.Queue(claimPlanPin)
	b.Queue(claimLocks, locks.OrganizationID, locks.QueueName, locks.WorkerID)
	b.Queue(jobClaimBatch, arg.Now, arg.OrganizationID, arg.QueueName, arg.MaxJobs, arg.WorkerID, arg.LeaseSecs, arg.Actor)
	br := db.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("pin the claim plan: %w", err)
	}
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("lock queue and worker: %w", err)
	}
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	// Columns come in JobClaimBatchRow's field order (RETURNING j.*).
	return pgx.CollectRows(rows, pgx.RowToStructByPos[JobClaimBatchRow])
}

// ClaimMultiPipelined runs ClaimPlanPin, ClaimLocksMulti and then
// JobClaimMulti in one round trip and one implicit transaction, as
// ClaimPipelined does for a single request.
func (q *Queries) ClaimMultiPipelined(ctx context.Context, db Batcher, locks ClaimLocksMultiParams, arg JobClaimMultiParams) ([]JobClaimMultiRow, error) {
	b := &pgx.Batch{}
	b.Queue(claimPlanPin)
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
	return pgx.CollectRows(rows, pgx.RowToStructByPos[JobClaimMultiRow])
}
