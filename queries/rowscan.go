package queries

import (
	"errors"

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

// internLister is fieldLister for a row type with text columns whose
// values repeat from row to row (an organization, an event type): its
// scan targets scan those columns through in, so that the rows of one read
// share a string per distinct value.
type internLister interface {
	scanFieldsInterned(dst []any, in *interner) []any
}

// collectRows reads every row into a T, appending them to dst: through
// scanFieldsInterned when *T is an internLister, scanFields when it is a
// fieldLister, and by position (RowToStructByPos) otherwise. A caller that
// reads pages in a loop passes the last page's slice back as dst[:0], so
// that its array is reused; others pass rowsFor(n).
func collectRows[T any](rows pgx.Rows, dst []T) ([]T, error) {
	var zero T
	_, interns := any(&zero).(internLister)
	_, lists := any(&zero).(fieldLister)
	if !interns && !lists {
		items, err := pgx.CollectRows(rows, pgx.RowToStructByPos[T])
		if err != nil {
			return nil, err
		}
		return append(dst, items...), nil
	}
	defer rows.Close()
	var in *interner
	if interns {
		in = newInterner()
	}
	out := dst
	var targets []any
	for rows.Next() {
		out = append(out, zero)
		if interns {
			targets = any(&out[len(out)-1]).(internLister).scanFieldsInterned(targets[:0], in)
		} else {
			targets = any(&out[len(out)-1]).(fieldLister).scanFields(targets[:0])
		}
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

// scanFieldsInterned lists EventsAfterCursorRow's fields in column order,
// with the organization, stream type, event type, queue and actor scanned
// through in: a projector's page of thousands of events holds a handful of
// each, and a string apiece for them was most of what a page allocated.
func (r *EventsAfterCursorRow) scanFieldsInterned(dst []any, in *interner) []any {
	in.org.dst, in.streamType.dst, in.eventType.dst, in.actor.dst = &r.OrganizationID, &r.StreamType, &r.EventType, &r.Actor
	in.queue.dst = &r.QueueName
	return append(dst, &r.Position, &r.TxID, &in.org, &in.streamType, &r.StreamID,
		&r.StreamSeq, &in.eventType, &in.queue, &in.actor, &r.Data, &r.OccurredAt)
}

// interner shares one string among the equal values of the interned
// columns of one read, up to maxInterned distinct values (past them, each
// value gets a string of its own, as without interning). It holds the
// scan targets of the interned columns, pointed at the current row before
// each row is scanned.
type interner struct {
	seen    map[string]string
	seenPtr map[string]*string

	org, streamType, eventType, actor internedText
	queue                             internedNullText
}

func newInterner() *interner {
	in := &interner{seen: map[string]string{}, seenPtr: map[string]*string{}}
	in.org.in, in.streamType.in, in.eventType.in, in.actor.in, in.queue.in = in, in, in, in, in
	return in
}

// maxInterned bounds an interner: a read of many distinct values (a page
// of many tenants' events) keeps only the first ones shared.
const maxInterned = 4096

// internedText scans a NOT NULL text column into *dst through its
// interner (pgx hands a pgtype.BytesScanner the column's bytes without
// copying them).
type internedText struct {
	in  *interner
	dst *string
}

// ScanBytes implements pgtype.BytesScanner.
func (t *internedText) ScanBytes(src []byte) error {
	if src == nil {
		return errors.New("interned text column is NULL")
	}
	if v, ok := t.in.seen[string(src)]; ok { // the conversion in a lookup does not allocate
		*t.dst = v
		return nil
	}
	v := string(src)
	if len(t.in.seen) < maxInterned {
		t.in.seen[v] = v
	}
	*t.dst = v
	return nil
}

// internedNullText is internedText for a nullable column scanned into a
// *string: the rows share the pointer too, so readers must not write
// through it.
type internedNullText struct {
	in  *interner
	dst **string
}

// ScanBytes implements pgtype.BytesScanner (nil src is SQL NULL).
func (t *internedNullText) ScanBytes(src []byte) error {
	if src == nil {
		*t.dst = nil
		return nil
	}
	if p, ok := t.in.seenPtr[string(src)]; ok {
		*t.dst = p
		return nil
	}
	v := string(src)
	p := &v
	if len(t.in.seenPtr) < maxInterned {
		t.in.seenPtr[v] = p
	}
	*t.dst = p
	return nil
}

// maxExpectedRows caps collectRows' up-front allocation, whatever a caller
// expects.
const maxExpectedRows = 1000
