package metrics_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/spooled-go/spooled/internal/metrics"
)

// series returns the value of each series of a counter family by its queue
// label.
func series(t *testing.T, m *metrics.Metrics, family string) map[string]float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "queue" {
					out[l.GetValue()] += s.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// TestQueueLabelsAreBounded: the first MaxQueueLabels queue names get
// series of their own; every later name is counted under OtherQueues, in
// every family labelled by queue, and a name seen before the bound keeps
// its own series after it.
func TestQueueLabelsAreBounded(t *testing.T) {
	t.Parallel()
	m := metrics.New(nil, nil, nil)
	for i := range metrics.MaxQueueLabels {
		m.JobsEnqueued(fmt.Sprintf("q%d", i), 1)
	}
	const later = 250
	for i := range later {
		q := fmt.Sprintf("late%d", i)
		m.JobsEnqueued(q, 2)
		m.JobClaimed(q, time.Millisecond)
		m.ClaimStatementRan(q, true)
	}
	m.JobsEnqueued("q7", 5)
	m.JobClaimed("q7", time.Millisecond)

	enq := series(t, m, "spooled_jobs_enqueued_total")
	if len(enq) != metrics.MaxQueueLabels+1 {
		t.Fatalf("%d enqueued series, want %d names and %q", len(enq), metrics.MaxQueueLabels, metrics.OtherQueues)
	}
	if enq[metrics.OtherQueues] != 2*later || enq["q7"] != 6 || enq["q999"] != 1 {
		t.Fatalf("enqueued: other %v, q7 %v, q999 %v; want %d, 6, 1", enq[metrics.OtherQueues], enq["q7"], enq["q999"], 2*later)
	}
	if _, ok := enq["late0"]; ok {
		t.Fatal("a name past the bound has a series of its own")
	}
	claimed := series(t, m, "spooled_jobs_claimed_total")
	if len(claimed) != 2 || claimed[metrics.OtherQueues] != later || claimed["q7"] != 1 {
		t.Fatalf("claimed series %v, want q7 1 and %q %d", claimed, metrics.OtherQueues, later)
	}
	if stmts := series(t, m, "spooled_claim_statements_total"); len(stmts) != 1 || stmts[metrics.OtherQueues] != later {
		t.Fatalf("claim statement series %v, want %q alone", stmts, metrics.OtherQueues)
	}
}

// BenchmarkJobClaimed is the per-job cost of the claim metrics (a counter
// and a histogram labelled by queue) for a queue already seen.
func BenchmarkJobClaimed(b *testing.B) {
	m := metrics.New(nil, nil, nil)
	m.JobClaimed("emails", time.Millisecond)
	b.ReportAllocs()
	for b.Loop() {
		m.JobClaimed("emails", time.Millisecond)
	}
}
