package metrics

import (
	"sync"
	"sync/atomic"
)

// MaxQueueLabels is how many queue names get series of their own in the
// counters and histograms labelled by queue; later names share
// OtherQueues.
const MaxQueueLabels = 1000

// OtherQueues is the queue label of every queue name past the first
// MaxQueueLabels. Parentheses cannot appear in a queue name, so it never
// stands for a real queue.
const OtherQueues = "(other)"

// queueLabels bounds the queue label. Queue names are the tenants' choice
// (any enqueue names one, with no configuration row or quota), and a
// counter or histogram series lives as long as the process: without a
// bound, jobs sent to a million distinct names would hold millions of
// series in memory and in every scrape. The first MaxQueueLabels names
// seen keep their own series; the rest are counted together.
type queueLabels struct {
	seen sync.Map // queue name -> struct{}
	mu   sync.Mutex
	n    atomic.Int32
}

// label is the label value for queue.
func (l *queueLabels) label(queue string) string {
	if _, ok := l.seen.Load(queue); ok {
		return queue
	}
	if l.n.Load() >= MaxQueueLabels {
		return OtherQueues
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.seen.Load(queue); ok {
		return queue
	}
	if l.n.Load() >= MaxQueueLabels {
		return OtherQueues
	}
	l.seen.Store(queue, struct{}{})
	l.n.Add(1)
	return queue
}
