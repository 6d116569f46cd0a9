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
