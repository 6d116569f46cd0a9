package commands

import "sync"

// maxBusyQueues bounds busyQueues: past it, the set starts over (a claim
// that finds a queue missing from it only probes once more).
const maxBusyQueues = 10_000

// busyQueues remembers the queues whose last claim on this instance got
// its whole limit, and so has likely left more behind. Their next claim
// skips the probe (QueueClaimProbe), which on a queue with a backlog only
// adds a round trip. A claim that got less has drained the queue: the next
// one probes, so that at a moderate load a worker back from its job finds
// the queue empty by the probe rather than by the claim statement, which
// costs several times as much. It only chooses between two correct paths.
type busyQueues struct {
	mu sync.Mutex
	m  map[claimKey]struct{}
}

func (b *busyQueues) has(k claimKey) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.m[k]
	return ok
}

func (b *busyQueues) set(k claimKey, busy bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !busy {
		delete(b.m, k)
		return
	}
	if b.m == nil || len(b.m) >= maxBusyQueues {
		b.m = map[claimKey]struct{}{}
	}
	b.m[k] = struct{}{}
}
