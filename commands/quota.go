package commands

import (
	"sync"
	"time"
)

// quotaMemoTTL is how long a read of an organization's plan usage stands in
// for the database. Within it, only other instances' creates go unseen.
const quotaMemoTTL = time.Second

// quotaMemo remembers each organization's plan usage (active jobs, jobs
// created today) as last read from the database plus what this server has
// enqueued (or retried out of the dead-letter queue) since. It never subtracts (a job finishing elsewhere is not
// seen), so on one instance it can only overstate the usage: a create it
// finds within the limits is within them, and one it finds over them is
// decided by a fresh count. A tenant far below its quota thus pays no
// count per create, where the count of active jobs reads up to the plan's
// max_active_jobs index entries. Across instances, a quota can be passed
// by what the others accepted within quotaMemoTTL.
type quotaMemo struct {
	mu    sync.Mutex
	byOrg map[string]quotaUsage
}

type quotaUsage struct {
	active, today int64
	day           time.Time // the UTC day today counts
	readAt        time.Time
}

func newQuotaMemo() *quotaMemo { return &quotaMemo{byOrg: map[string]quotaUsage{}} }

// get returns the organization's usage if it was read within the TTL on
// the same day.
func (m *quotaMemo) get(org string, now, day time.Time) (quotaUsage, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.byOrg[org]
	if !ok || !u.day.Equal(day) || now.Sub(u.readAt) >= quotaMemoTTL || now.Before(u.readAt) {
		return quotaUsage{}, false
	}
	return u, true
}

// put records usage just read from the database.
func (m *quotaMemo) put(org string, u quotaUsage) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.byOrg[org] = u
}

// add counts jobs this server has just made active and created today for
// the organization: a create adds to both, a retry out of the dead-letter
// queue to active alone.
func (m *quotaMemo) add(org string, active, today int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if u, ok := m.byOrg[org]; ok {
		u.active += active
		u.today += today
		m.byOrg[org] = u
	}
}
