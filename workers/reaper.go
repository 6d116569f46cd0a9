package workers

import (
	"context"
	"log/slog"
	"time"

	"github.com/spooled-go/spooled/commands"
)

// reapBatch bounds one statement of the reaper, so a flood of expired
// leases is swept in short transactions.
const reapBatch = 500

// NewLeaseReaper returns the loop that takes back expired leases: each job
// is retried at once while it has retries left, else dead-lettered, with
// job.lease_expired and the outcome appended to its history.
func NewLeaseReaper(cmd *commands.Service, interval time.Duration, log *slog.Logger) *Loop {
	return NewLoop("lease_reaper", interval, log, func(ctx context.Context) error {
		_, err := ReapExpiredLeases(ctx, cmd)
		return err
	})
}

// ReapExpiredLeases sweeps until no expired lease is left and returns how
// many it released.
func ReapExpiredLeases(ctx context.Context, cmd *commands.Service) (int, error) {
	total := 0
	for {
		expired, err := cmd.ExpireLeases(ctx, reapBatch)
		total += len(expired)
		if err != nil || len(expired) < reapBatch {
			return total, err
		}
	}
}

// NewPartitionUpkeep returns the loop that keeps log partitions created
// ahead (daily in production).
func NewPartitionUpkeep(cmd *commands.Service, interval time.Duration, log *slog.Logger) *Loop {
	return NewLoop("partition_upkeep", interval, log, cmd.MaintainPartitions)
}

// NewHotTableVacuum returns the loop that vacuums the queue tables
// (pending_jobs, processing_jobs) every interval, so claims never walk a
// long run of dead index entries.
func NewHotTableVacuum(cmd *commands.Service, interval time.Duration, log *slog.Logger) *Loop {
	return NewLoop("hot_table_vacuum", interval, log, cmd.VacuumHotTables)
}
