package queries

import (
	"github.com/jackc/pgx/v5"
)

// fieldLister is a row type that names its own scan targets, its fields in
// column order. collectRows scans such rows without pgx.RowToStructByPos,
// which reflects over the struct for every row: in a profile of the
// end-to-end benchmark that reflection and the JSON validation behind
// json.RawMessage fields were most of the Go time of reading claimed jobs
// and the projector's pages of the log. (Hand-written for the row types of
// those hot reads; a test checks each against RowToStructByPos.)
type fieldLister interface {
	scanFields(dst []any) []any
}

// collectRows reads every row into a T, through scanFields when *T is a
// fieldLister and by position (RowToStructByPos) otherwise, appending them
// to dst. A caller that reads pages in a loop passes the last page's slice
// back as dst[:0], so that its array is reused; others pass rowsFor(n).
func collectRows[T any](rows pgx.Rows, dst []T) ([]T, error) {
	var zero T
	if _, ok := any(&zero).(fieldLister); !ok {
		items, err := pgx.CollectRows(rows, pgx.RowToStructByPos[T])
		if err != nil {
			return nil, err
		}
		return append(dst, items...), nil
	}
	defer rows.Close()
	out := dst
	var targets []any
	for rows.Next() {
		out = append(out, zero)
		targets = any(&out[len(out)-1]).(fieldLister).scanFields(targets[:0])
		if err := rows.Scan(targets...); err != nil {
			return nil, err
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// rowsFor is an empty slice with room for expect rows (0: unknown), up to
// maxExpectedRows: made that large at once, rather than grown and copied
// row by row.
func rowsFor[T any](expect int) []T {
	return make([]T, 0, min(expect, maxExpectedRows))
}

// scanFields lists JobClaimMultiRow's fields in the order of JobClaimMulti's
// columns (RETURNING j.*, req, claim_actor). JSON columns scan as bytes:
// the database has already checked them, and a json.RawMessage target would
// be parsed again in full.
func (r *JobClaimMultiRow) scanFields(dst []any) []any {
	return append(dst,
		(*[16]byte)(&r.ID), &r.OrganizationID, &r.QueueName, &r.Status,
		(*[]byte)(&r.Payload), (*[]byte)(&r.Result),
		&r.RetryCount, &r.MaxRetries, &r.LastError,
		&r.CreatedAt, &r.ScheduledAt, &r.StartedAt, &r.CompletedAt, &r.ExpiresAt,
		&r.Priority, (*[]byte)(&r.Tags), &r.TimeoutSeconds, &r.ParentJobID, &r.CompletionWebhook,
		&r.AssignedWorkerID, &r.LeaseID, &r.LeaseExpiresAt, &r.IdempotencyKey, &r.UpdatedAt,
		&r.WorkflowID, &r.DependencyMode, &r.DependenciesMet, &r.Version, &r.DeadStatus,
		&r.Req, &r.ClaimActor)
}

// scanFields lists EventsAfterCursorRow's fields in column order.
func (r *EventsAfterCursorRow) scanFields(dst []any) []any {
	return append(dst, &r.Position, &r.TxID, &r.OrganizationID, &r.StreamType, &r.StreamID,
		&r.StreamSeq, &r.EventType, &r.QueueName, &r.Actor, &r.Data, &r.OccurredAt)
}

// maxExpectedRows caps collectRows' up-front allocation, whatever a caller
// expects.
const maxExpectedRows = 1000
