package queries

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// EventsAfterCursorPinned runs PlanSave, PlanPin, EventsAfterCursor and
// PlanRestore in one round trip, in tx: the read walks the log's index in
// cursor order whatever the statistics say, and the statements that follow
// in tx (a projection's writes) plan as the session would. (Hand-written:
// it pipelines generated statements, which sqlc cannot express.)
func (q *Queries) EventsAfterCursorPinned(ctx context.Context, tx Batcher, arg EventsAfterCursorParams) ([]EventsAfterCursorRow, error) {
	b := &pgx.Batch{}
	b.Queue(planSave)
	b.Queue(planPin)
	b.Queue(eventsAfterCursor, arg.AllData, arg.DataTypes, arg.AfterTxID, arg.AfterPosition, arg.MaxRows)
	b.Queue(planRestore)
	br := tx.SendBatch(ctx, b)
	defer br.Close()
	for range 2 {
		if _, err := br.Exec(); err != nil {
			return nil, fmt.Errorf("pin the log read's plan: %w", err)
		}
	}
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	// Columns come in EventsAfterCursorRow's field order.
	evs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[EventsAfterCursorRow])
	if err != nil {
		return nil, err
	}
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("restore the planner settings: %w", err)
	}
	return evs, br.Close()
}

// EventLogPageOrdered is EventLogPage with sorting priced out, so the page
// walks the organization's log in cursor order whatever the statistics
// say. Not for pages with a stream filter: a stream's few events are best
// found through its own index and sorted, where a walk in cursor order
// reads the organization's whole log after the cursor.
func (q *Queries) EventLogPageOrdered(ctx context.Context, db Batcher, arg EventLogPageParams) ([]EventLogPageRow, error) {
	return noSortRows[EventLogPageRow](ctx, db, eventLogPage, arg.OrganizationID, arg.AfterTxID, arg.AfterPosition,
		arg.EventType, arg.QueueName, arg.StreamID, arg.Actor, arg.OccurredFrom, arg.OccurredTo, arg.MaxRows)
}

// JobListOrdered is JobList with sorting priced out, so a page walks the
// organization's jobs by creation time and stops after the offset and the
// page, however few jobs the statistics know of the organization (a new
// tenant's first million jobs, say, before ANALYZE sees them).
func (q *Queries) JobListOrdered(ctx context.Context, db Batcher, arg JobListParams) ([]JobListRow, error) {
	return noSortRows[JobListRow](ctx, db, jobList, arg.OrganizationID, arg.QueueName, arg.Status, arg.Tag,
		arg.SkipRows, arg.MaxRows)
}

// noSortRows runs PlanNoSort and the query in one round trip, as one
// implicit transaction on a connection of db, and collects the query's
// rows into T, whose fields are its columns in order (as sqlc generates
// its row types).
func noSortRows[T any](ctx context.Context, db Batcher, query string, args ...any) ([]T, error) {
	b := &pgx.Batch{}
	b.Queue(planNoSort)
	b.Queue(query, args...)
	br := db.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("price out sorting: %w", err)
	}
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	items, err := pgx.CollectRows(rows, pgx.RowToStructByPos[T])
	if err != nil {
		return nil, err
	}
	return items, br.Close()
}
