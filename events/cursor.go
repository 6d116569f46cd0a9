package events

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
)

// Cursor is a position in the log: readers page by (TxID, Position), never
// by position alone, so a transaction that commits late is never skipped.
type Cursor struct {
	TxID     int64
	Position int64
}

// ErrBadCursor is a cursor that is malformed, tampered with, or minted for
// another organization.
var ErrBadCursor = errors.New("invalid cursor")

const cursorVersion = 1

// Encode makes the cursor opaque to clients: it is bound to the
// organization and signed with key, so it cannot be forged or used across
// tenants.
func (c Cursor) Encode(orgID string, key []byte) string {
	buf := make([]byte, 17, 17+16)
	buf[0] = cursorVersion
	binary.BigEndian.PutUint64(buf[1:], uint64(c.TxID))
	binary.BigEndian.PutUint64(buf[9:], uint64(c.Position))
	buf = append(buf, cursorMAC(orgID, key, buf)...)
	return base64.RawURLEncoding.EncodeToString(buf)
}

// DecodeCursor reads a cursor Encode made for orgID; "" is the start of the
// log.
func DecodeCursor(s, orgID string, key []byte) (Cursor, error) {
	if s == "" {
		return Cursor{}, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(raw) != 33 || raw[0] != cursorVersion {
		return Cursor{}, ErrBadCursor
	}
	if !hmac.Equal(raw[17:], cursorMAC(orgID, key, raw[:17])) {
		return Cursor{}, ErrBadCursor
	}
	return Cursor{
		TxID:     int64(binary.BigEndian.Uint64(raw[1:9])),
		Position: int64(binary.BigEndian.Uint64(raw[9:17])),
	}, nil
}

func cursorMAC(orgID string, key, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("spooled-log-cursor\x00"))
	m.Write([]byte(orgID))
	m.Write([]byte{0})
	m.Write(body)
	return m.Sum(nil)[:16]
}

// KnownTypes are every event type the server writes, for validating
// filters.
var KnownTypes = map[string]bool{
	JobEnqueued: true, JobClaimed: true, JobCompleted: true, JobFailed: true, JobRetryScheduled: true,
	JobDeadLettered: true, JobCancelled: true, JobLeaseExpired: true, JobLeaseRenewed: true,
	JobAttemptRejected: true, JobPriorityChanged: true, JobRetried: true, JobPurged: true, JobReleased: true,
	JobReplayed:         true,
	OrganizationCreated: true, OrganizationPlanChanged: true, APIKeyCreated: true, APIKeyUpdated: true, APIKeyRevoked: true,
	WorkerRegistered: true, WorkerStatusChanged: true, WorkerDeregistered: true,
	QueueConfigured: true, QueuePaused: true, QueueResumed: true, QueueDeleted: true,
}
