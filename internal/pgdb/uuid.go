package pgdb

import (
	"context"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// RegisterUUID makes the connection encode github.com/google/uuid values
// as 16 raw bytes. Without it pgx takes uuid.UUID's driver.Valuer path:
// format the id as a 36-character string, fail to encode that string as a
// binary uuid (building an error with fmt.Errorf), then parse it back
// through a scan plan, for every id of every array parameter. That was
// 8% of the CPU of the process serving single enqueues (make bench
// -single-only profile). Use it as the pool's AfterConnect.
func RegisterUUID(_ context.Context, conn *pgx.Conn) error {
	m := conn.TypeMap()
	m.TryWrapEncodePlanFuncs = append([]pgtype.TryWrapEncodePlanFunc{tryWrapUUIDEncodePlan}, m.TryWrapEncodePlanFuncs...)
	return nil
}

// tryWrapUUIDEncodePlan hands uuid.UUID values on as pgtype.UUID, which the
// uuid codec writes directly.
func tryWrapUUIDEncodePlan(value any) (pgtype.WrappedEncodePlanNextSetter, any, bool) {
	if u, ok := value.(uuid.UUID); ok {
		return &uuidEncodePlan{}, pgtype.UUID{Bytes: u, Valid: true}, true
	}
	return nil, nil, false
}

type uuidEncodePlan struct{ next pgtype.EncodePlan }

func (p *uuidEncodePlan) SetNext(next pgtype.EncodePlan) { p.next = next }

func (p *uuidEncodePlan) Encode(value any, buf []byte) ([]byte, error) {
	return p.next.Encode(pgtype.UUID{Bytes: value.(uuid.UUID), Valid: true}, buf)
}
