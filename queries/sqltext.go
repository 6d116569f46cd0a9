package queries

// SQL text of queries whose plans tests check with EXPLAIN, so a test
// explains exactly the statement the server runs. (Hand-written: sqlc
// leaves files it did not generate alone.)
var (
	JobHistorySQL            = jobHistory
	JobEventsUntilSQL        = jobEventsUntil
	PlanPinSQL               = planPin
	JobClaimMultiSQL         = jobClaimMulti
	JobCompleteBatchSQL      = jobCompleteBatch
	JobExpireLeasesSQL       = jobExpireLeases
	QueueClaimProbeSQL       = queueClaimProbe
	StatsOldestWaitingSQL    = statsOldestWaiting
	EventsAfterCursorSQL     = eventsAfterCursor
	EventLogPageSQL          = eventLogPage
	PlanNoSortSQL            = planNoSort
	JobListSQL               = jobList
	EventLogEndSQL           = eventLogEnd
	EventsJobStreamsAfterSQL = eventsJobStreamsAfter
)
