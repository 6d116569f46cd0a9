package projections_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/internal/testdb"
	"github.com/spooled-go/spooled/projections"
)

// TestRebuildAndSwapUnderLoad rebuilds the job projections while writers
// enqueue, claim, complete and fail, swaps them in, keeps writing, and
// ends with Verify clean: nothing written before, during or after the swap
// is lost, and writers that waited on the swap wrote into the new tables.
func TestRebuildAndSwapUnderLoad(t *testing.T) {
	ctx := context.Background()
	pool := testdb.NewWith(t, testdb.Options{MaxConns: 24})
	svc := commands.New(pool, nil, nil, commands.Defaults{MaxRetries: 1, TimeoutSecs: 300, LeaseSecs: 30,
		MaxPayload: 1 << 20, KeyPrefix: "sk_test_", Registration: "open"})
	org := newOrg(t, svc, "swapper")

	// A log worth rebuilding before the load starts.
	for i := 0; i < 20; i++ {
		jobs := make([]commands.NewJob, 100)
		for k := range jobs {
			jobs[k] = commands.NewJob{QueueName: "swap", Payload: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i*100+k))}
		}
		if _, err := svc.Enqueue(ctx, org, jobs); err != nil {
			t.Fatal(err)
		}
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ops atomic.Int64
	errs := make(chan error, 8)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			worker := fmt.Sprintf("w%d", w)
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := svc.Enqueue(ctx, org, []commands.NewJob{{QueueName: "swap", Payload: json.RawMessage(`{}`)}}); err != nil {
					errs <- err
					return
				}
				jobs, err := svc.Claim(ctx, org.OrgID, commands.ClaimRequest{QueueName: "swap", WorkerID: worker, Limit: 3})
				if err != nil {
					errs <- err
					return
				}
				for i, j := range jobs {
					ref := commands.LeaseRef{JobID: j.ID.String(), WorkerID: worker, LeaseID: j.LeaseID}
					if (n+i)%4 == 0 {
						_, err = svc.Fail(ctx, org.OrgID, ref, "boom", true)
					} else {
						err = svc.Complete(ctx, org.OrgID, ref, nil)
					}
					var le *commands.LeaseError
					if err != nil && !errors.As(err, &le) {
						errs <- err
						return
					}
				}
				ops.Add(1)
			}
		}(w)
	}
	waitOps := func(n int64) {
		deadline := time.Now().Add(30 * time.Second)
		for ops.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("writers made only %d rounds", ops.Load())
			}
			select {
			case err := <-errs:
				t.Fatalf("writer: %v", err)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	waitOps(20)
	var progressCalls atomic.Int64
	st, err := projections.RebuildAndSwap(ctx, pool, func(done, total int64) { progressCalls.Add(1) })
	if err != nil {
		t.Fatalf("rebuild and swap: %v", err)
	}
	t.Logf("rebuilt %d jobs from %d events in %s; %d jobs re-folded during a write pause of %s (lock attempts: %d)",
		st.Rebuild.Jobs, st.Rebuild.Events, st.Rebuild.Duration, st.Delta, st.Pause, st.Attempts)
	if progressCalls.Load() == 0 {
		t.Error("no progress reported")
	}
	if st.Pause <= 0 || st.Pause > 10*time.Second {
		t.Errorf("write pause %s", st.Pause)
	}
	before := ops.Load()
	waitOps(before + 20) // writers carry on in the swapped-in tables
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("writer: %v", err)
	default:
	}

	r, err := projections.Verify(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Clean() {
		t.Fatalf("after swap under load: %s", r)
	}
	t.Log(r)
}
