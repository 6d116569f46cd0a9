package projections

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// LogNotifier is told which organizations' logs advanced (the wake-up hub:
// locally and through NATS).
type LogNotifier interface {
	LogAdvanced(orgID string)
}

// Fanout is the realtime fan-out: an asynchronous projection with no
// tables of its own that, once a batch is committed past its checkpoint,
// wakes every follower of the organizations in it. Followers then read the
// log themselves from their own cursors, so a lost wake-up costs latency,
// never an event.
type Fanout struct {
	notify LogNotifier
}

// NewFanout returns the fan-out projection.
func NewFanout(n LogNotifier) *Fanout { return &Fanout{notify: n} }

// FanoutName is the fan-out's checkpoint name.
const FanoutName = "realtime_fanout"

// Name implements Projection.
func (*Fanout) Name() string { return FanoutName }

// Apply implements Projection: nothing to write.
func (*Fanout) Apply(context.Context, pgx.Tx, []LogEvent) error { return nil }

// DataTypes implements DataReader: the fan-out reads no event's data.
func (*Fanout) DataTypes() []string { return nil }

// Reset implements Projection.
func (*Fanout) Reset(context.Context, pgx.Tx) error { return nil }

// AfterCommit implements AfterCommitter: one wake-up per organization.
func (f *Fanout) AfterCommit(batch []LogEvent) {
	seen := map[string]bool{}
	for _, e := range batch {
		if !seen[e.OrganizationID] {
			seen[e.OrganizationID] = true
			f.notify.LogAdvanced(e.OrganizationID)
		}
	}
}
