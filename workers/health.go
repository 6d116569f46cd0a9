package workers

import (
	"context"
	"log/slog"
	"time"

	"github.com/spooled-go/spooled/commands"
)

// NewWorkerHealth returns the loop that moves silent workers to degraded
// (two missed heartbeats) and offline (five), taking back an offline
// worker's leases through events.
func NewWorkerHealth(cmd *commands.Service, heartbeat, every time.Duration, log *slog.Logger) *Loop {
	return NewLoop("worker_health", every, log, func(ctx context.Context) error {
		_, err := cmd.SweepWorkerHealth(ctx, heartbeat)
		return err
	})
}
