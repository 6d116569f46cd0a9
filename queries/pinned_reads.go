package queries

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// EventsAfterCursorPinnedInto is EventsAfterCursor with its plan pinned
// (pinnedRows), for the projector's pages of the log, appending the page
// to dst, whose array a reader of page after page reuses: a page of
// thousands of events grown row by row from a fresh slice was a tenth of
// everything the server allocated under the batch end-to-end benchmark.
func (q *Queries) EventsAfterCursorPinnedInto(ctx context.Context, tx Batcher, arg EventsAfterCursorParams, dst []EventsAfterCursorRow) ([]EventsAfterCursorRow, error) {
	return pinnedRows(ctx, tx, dst, eventsAfterCursor,
		arg.AllData, arg.DataTypes, arg.AfterTxID, arg.AfterPosition, arg.MaxRows)
}

// EventsJobStreamsAfterPinned is EventsJobStreamsAfter with its plan
// pinned (pinnedRows), for a rebuild's pages of the log in stream order:
// past the newest stream ANALYZE saw, an unpinned page read every event
// after the cursor and sorted them.
func (q *Queries) EventsJobStreamsAfterPinned(ctx context.Context, tx Batcher, arg EventsJobStreamsAfterParams) ([]EventsJobStreamsAfterRow, error) {
	return pinnedRows(ctx, tx, rowsFor[EventsJobStreamsAfterRow](int(arg.MaxRows)), eventsJobStreamsAfter, arg.AfterStream, arg.AfterSeq, arg.MaxRows)
}

// pinnedRows runs PlanSave, PlanPin, the query and PlanRestore in one round
// trip, in tx: the query walks its index in order whatever the statistics
// say, and the statements that follow in tx plan as the session would.
// The rows are appended to dst.
func pinnedRows[T any](ctx context.Context, tx Batcher, dst []T, query string, args ...any) ([]T, error) {
	return rowsBetween(ctx, tx, []string{planSave, planPin}, dst, query, args, []string{planRestore})
}

// EventLogPageOrdered is EventLogPage with sorting priced out, so the page
// walks the organization's log in cursor order whatever the statistics
// say. Not for pages with a stream filter: a stream's few events are best
// found through its own index and sorted, where a walk in cursor order
// reads the organization's whole log after the cursor.
func (q *Queries) EventLogPageOrdered(ctx context.Context, db Batcher, arg EventLogPageParams) ([]EventLogPageRow, error) {
	return noSortRows(ctx, db, rowsFor[EventLogPageRow](int(arg.MaxRows)), eventLogPage, arg.OrganizationID, arg.AfterTxID, arg.AfterPosition,
		arg.EventType, arg.QueueName, arg.StreamID, arg.Actor, arg.OccurredFrom, arg.OccurredTo, arg.MaxRows)
}

// EventLogEndOrdered is EventLogEnd with sorting priced out, so it takes
// the organization's newest event with one backwards probe of its index
// whatever the statistics say (a tenant they have not seen had every event
// read and sorted for the one row). Like EventLogEnd, it returns
// pgx.ErrNoRows when the organization's log is empty.
func (q *Queries) EventLogEndOrdered(ctx context.Context, db Batcher, organizationID string) (EventLogEndRow, error) {
	rows, err := noSortRows(ctx, db, rowsFor[EventLogEndRow](1), eventLogEnd, organizationID)
	if err != nil {
		return EventLogEndRow{}, err
	}
	if len(rows) == 0 {
		return EventLogEndRow{}, pgx.ErrNoRows
	}
	return rows[0], nil
}

// JobListOrdered is JobList with sorting priced out, so a page walks the
// organization's jobs by creation time and stops after the offset and the
// page, however few jobs the statistics know of the organization (a new
// tenant's first million jobs, say, before ANALYZE sees them).
func (q *Queries) JobListOrdered(ctx context.Context, db Batcher, arg JobListParams) ([]JobListRow, error) {
	return noSortRows(ctx, db, rowsFor[JobListRow](int(arg.MaxRows)), jobList, arg.OrganizationID, arg.QueueName, arg.Status, arg.Tag,
		arg.SkipRows, arg.MaxRows)
}

// noSortRows runs PlanNoSort and the query in one round trip, as one
// implicit transaction on a connection of db, appending the rows to dst.
func noSortRows[T any](ctx context.Context, db Batcher, dst []T, query string, args ...any) ([]T, error) {
	return rowsBetween(ctx, db, []string{planNoSort}, dst, query, args, nil)
}

// rowsBetween sends the statements before (planner settings), the query
// and the statements after in one round trip, and appends the query's
// rows to dst as Ts, whose fields are its columns in order (as sqlc
// generates its row types).
// (Hand-written: it pipelines generated statements, which sqlc cannot
// express.)
func rowsBetween[T any](ctx context.Context, db Batcher, before []string, dst []T, query string, args []any, after []string) ([]T, error) {
	b := &pgx.Batch{}
	for _, sql := range before {
		b.Queue(sql)
	}
	b.Queue(query, args...)
	for _, sql := range after {
		b.Queue(sql)
	}
	br := db.SendBatch(ctx, b)
	defer br.Close()
	for range before {
		if _, err := br.Exec(); err != nil {
			return nil, fmt.Errorf("set the planner up: %w", err)
		}
	}
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	items, err := collectRows(rows, dst)
	if err != nil {
		return nil, err
	}
	for range after {
		if _, err := br.Exec(); err != nil {
			return nil, fmt.Errorf("restore the planner settings: %w", err)
		}
	}
	return items, br.Close()
}
