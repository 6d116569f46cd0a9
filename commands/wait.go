package commands

import (
	"context"
	"time"

	"github.com/spooled-go/spooled/queries"
)

// Waiter lets a claim sleep until a hint says its queue has work. The
// channel carries at most one pending signal, and is closed when the waiter
// shuts down (the claim then returns empty at once, so that it does not hold
// up the server's drain); cancel must be called.
type Waiter interface {
	Wait(orgID, queueName string) (wake <-chan struct{}, cancel func())
	// Witness records, as the claim waiting on wake goes to sleep, whether
	// its last read found the queue without a ready job, and when that read
	// said the next waiting job falls due.
	Witness(wake <-chan struct{}, empty bool, nextDue time.Time)
	// Covered reports whether a claim of the queue may go to sleep at once,
	// without reading the database: another claim waits that read the
	// queue empty and no hint has woken it since, so each job made ready
	// meanwhile has a claim of its own on the way. nextDue is that read's
	// next due time, for the new claim's timer.
	Covered(orgID, queueName string) (nextDue time.Time, ok bool)
	// Unread gives back the signal the claim waiting on wake read and could
	// not act on (its claim failed): cancel then hands it to another
	// waiter, whose claim takes the hinted job.
	Unread(wake <-chan struct{})
}

// Observer hears about transitions after they commit (metrics).
type Observer interface {
	JobsEnqueued(queue string, n int)
	JobClaimed(queue string, waited time.Duration)
	JobCompleted(queue string, ran time.Duration)
	JobFailed(queue string)
	JobsDeadLettered(queue string, n int)
	// ClaimProbed reports a read of whether a queue holds a job a claim
	// could take now (QueueClaimProbe), and its answer.
	ClaimProbed(queue string, ready bool)
	// ClaimStatementRan reports one claim statement (serving one or several
	// coalesced requests) and whether it leased any job: statements that
	// lease nothing are claims that lost a race or found a queue drained.
	ClaimStatementRan(queue string, leased bool)
	// ClaimCovered reports a waiting claim that went to sleep without
	// reading its queue, covered by another that had read it empty.
	ClaimCovered(queue string)
	// GroupCommitted reports one group-commit flush of a kind (enqueue,
	// complete) and how many requests it gathered: one statement and one
	// commit, whichever organizations they come from (one per organization
	// only when that statement failed, and per job named twice for
	// completes).
	GroupCommitted(kind string, requests int)
}

type noObserver struct{}

func (noObserver) JobsEnqueued(string, int)             {}
func (noObserver) JobClaimed(string, time.Duration)     {}
func (noObserver) JobCompleted(string, time.Duration)   {}
func (noObserver) JobFailed(string)                     {}
func (noObserver) JobsDeadLettered(queue string, n int) {}
func (noObserver) ClaimProbed(string, bool)             {}
func (noObserver) ClaimStatementRan(string, bool)       {}
func (noObserver) ClaimCovered(string)                  {}
func (noObserver) GroupCommitted(string, int)           {}

// MaxClaimWait is the longest a claim may wait for work.
const MaxClaimWait = 30 * time.Second

// ClaimWait is Claim that, finding nothing, waits up to wait for work: it
// wakes on a hint for its queue, when the queue's next job falls due, and at
// least every poll interval (the fallback when hints are lost or NATS is
// down). It returns as soon as it wins a job, or empty at the deadline.
func (s *Service) ClaimWait(ctx context.Context, orgID string, r ClaimRequest, wait time.Duration) ([]queries.Job, error) {
	if wait < 0 || wait > MaxClaimWait {
		return nil, invalid("wait_ms", "range", "must be between 0 and %d", MaxClaimWait.Milliseconds())
	}
	if wait == 0 || s.waiter == nil {
		return s.Claim(ctx, orgID, r)
	}
	r, secs, err := s.checkClaim(r)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	// Registered before the first claim, so a hint for a commit that lands
	// after that claim's snapshot is never missed.
	wake, cancel := s.waiter.Wait(orgID, r.QueueName)
	defer cancel()
	// The queue is probed before each claim but one that follows a hint: a
	// hint says jobs were just made ready, and the probe would only delay
	// the claim that takes them. (Probing there too changed nothing: a
	// woken claim that finds nothing has mostly lost the race for a job
	// the probe saw.)
	probe := true
	// woken: the last wake-up was a hint's signal, read off wake.
	woken := false
	// A claim that arrives while another waits here having found the queue
	// empty (Covered; not on a queue whose last claim got its whole limit)
	// goes to sleep without reading: the jobs made ready since each woke a
	// claim of their own, and reading would at best find one of them and
	// race its claim for the row. That race cost a worker back from its
	// job a probe and, half the time, a claim statement that leased
	// nothing, at a moderate load.
	var covered bool
	var probed *queries.QueueClaimProbeRow
	if !s.busy.has(claimKey{orgID, r.QueueName}) {
		var due time.Time
		if due, covered = s.waiter.Covered(orgID, r.QueueName); covered {
			probed = &queries.QueueClaimProbeRow{NextDue: due}
			s.observer.ClaimCovered(r.QueueName)
		}
	}
	for {
		jobs := []queries.Job{}
		if covered {
			covered = false
		} else {
			jobs, probed, err = s.claim(ctx, orgID, r, secs, probe)
			if err != nil && woken {
				// The hinted jobs are still there, and the claims still
				// waiting may be covered ones that will not read the queue
				// before their deadline: one of them must have the signal.
				s.waiter.Unread(wake)
			}
			if err != nil || len(jobs) > 0 {
				return jobs, err
			}
		}
		sleep := time.Until(deadline)
		if sleep <= 0 {
			return jobs, nil
		}
		if s.poll > 0 && s.poll < sleep {
			sleep = s.poll
		}
		if probed == nil {
			// The claim statement ran and found nothing: the probe says when
			// the queue's next job falls due.
			if probed, err = s.probe(ctx, orgID, r.QueueName); err != nil {
				return nil, err
			}
		}
		if due := probed.NextDue; !due.IsZero() { // the zero time: none waits
			if d := due.Sub(s.Now()); d < sleep {
				sleep = max(d, time.Millisecond)
			}
		}
		s.waiter.Witness(wake, !probed.Ready, probed.NextDue)
		timer := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case _, open := <-wake:
			if !open {
				timer.Stop()
				return jobs, nil
			}
			probe, woken = false, true
		case <-timer.C:
			// Awake to read again: its last read no longer speaks for
			// the queue (a job may have fallen due).
			s.waiter.Witness(wake, false, time.Time{})
			probe, woken = true, false
		}
		timer.Stop()
	}
}
