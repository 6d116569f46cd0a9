package projections_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/spooled-go/spooled/events"
	"github.com/spooled-go/spooled/projections"
)

// stream builds the events of one job stream with consecutive sequence
// numbers, one minute apart.
type stream struct {
	id  uuid.UUID
	t0  time.Time
	evs []projections.JobEvent
}

func newStream(t *testing.T) *stream {
	t.Helper()
	return &stream{id: uuid.Must(uuid.NewV7()), t0: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (s *stream) at(i int) time.Time { return s.t0.Add(time.Duration(i) * time.Minute) }

func (s *stream) add(typ, data string) *stream {
	q := "emails"
	n := len(s.evs)
	s.evs = append(s.evs, projections.JobEvent{
		OrganizationID: "org-1", StreamID: s.id.String(), Seq: int32(n + 1), Type: typ,
		QueueName: &q, Data: json.RawMessage(data), OccurredAt: s.at(n),
	})
	return s
}

const enqueuedData = `{"status":"pending","payload":{"to":"a@example.com"},"priority":3,"max_retries":1,
	"timeout_seconds":300,"scheduled_at":null,"expires_at":null,"tags":null,"parent_job_id":null,
	"completion_webhook":null,"idempotency_key":"k1"}`

func claimedData(lease uuid.UUID, exp time.Time) string {
	return `{"worker_id":"w1","lease_id":"` + lease.String() + `","lease_expires_at":"` +
		exp.Format(time.RFC3339Nano) + `","attempt":1}`
}

func mustFold(t *testing.T, evs []projections.JobEvent) projections.JobState {
	t.Helper()
	st, err := projections.FoldJob(evs)
	if err != nil {
		t.Fatalf("fold: %v", err)
	}
	return st
}

func TestFoldEnqueueClaimComplete(t *testing.T) {
	s := newStream(t)
	lease := uuid.New()
	s.add(events.JobEnqueued, enqueuedData)
	st := mustFold(t, s.evs)
	j := st.Job
	if j == nil || j.Status != "pending" || j.Version != 1 || !j.CreatedAt.Equal(s.at(0)) ||
		j.Tags != nil || j.IdempotencyKey == nil || *j.IdempotencyKey != "k1" ||
		*j.DependencyMode != "all" || !*j.DependenciesMet {
		t.Fatalf("enqueued job: %+v", j)
	}
	if st.Pending == nil || !st.Pending.RunAt.Equal(s.at(0)) || st.Pending.Priority != 3 || st.Processing != nil {
		t.Fatalf("enqueued rows: %+v %+v", st.Pending, st.Processing)
	}

	s.add(events.JobClaimed, claimedData(lease, s.at(1).Add(30*time.Second)))
	st = mustFold(t, s.evs)
	if st.Pending != nil || st.Processing == nil || st.Processing.LeaseID != lease ||
		!st.Processing.ClaimedAt.Equal(s.at(1)) || st.Job.Status != "processing" || !st.Job.StartedAt.Equal(s.at(1)) {
		t.Fatalf("claimed: %+v %+v", st.Job, st.Processing)
	}

	s.add(events.JobCompleted, `{"worker_id":"w1","lease_id":"`+lease.String()+`","result":null}`)
	st = mustFold(t, s.evs)
	j = st.Job
	if j.Status != "completed" || j.Result != nil || j.LeaseID != nil || j.LeaseExpiresAt != nil ||
		j.AssignedWorkerID == nil || *j.AssignedWorkerID != "w1" || !j.CompletedAt.Equal(s.at(2)) ||
		j.Version != 3 || !j.UpdatedAt.Equal(s.at(2)) || st.Processing != nil {
		t.Fatalf("completed (JSON null result must fold to SQL NULL): %+v", j)
	}
}

func TestFoldScheduledRunAt(t *testing.T) {
	// A job scheduled ahead waits until then; one scheduled in the past is
	// ready from its creation, not earlier.
	for name, tc := range map[string]struct {
		offset time.Duration
		status string
		want   time.Duration
	}{
		"future": {10 * time.Minute, "scheduled", 10 * time.Minute},
		"past":   {-10 * time.Minute, "pending", 0},
	} {
		t.Run(name, func(t *testing.T) {
			s := newStream(t)
			sched := s.at(0).Add(tc.offset)
			s.add(events.JobEnqueued, strings.Replace(strings.Replace(enqueuedData,
				`"scheduled_at":null`, `"scheduled_at":"`+sched.Format(time.RFC3339Nano)+`"`, 1),
				`"status":"pending"`, `"status":"`+tc.status+`"`, 1))
			st := mustFold(t, s.evs)
			if !st.Pending.RunAt.Equal(s.at(0).Add(tc.want)) || !st.Job.ScheduledAt.Equal(sched) || st.Job.Status != tc.status {
				t.Fatalf("run_at %v scheduled_at %v status %s", st.Pending.RunAt, st.Job.ScheduledAt, st.Job.Status)
			}
		})
	}
}

func TestFoldAttemptRejectedBumpsOnlyVersion(t *testing.T) {
	s := newStream(t)
	s.add(events.JobEnqueued, enqueuedData)
	before := mustFold(t, s.evs)
	s.add(events.JobAttemptRejected, `{"action":"complete","worker_id":"w9","lease_id":null,"reason":"job is pending"}`)
	after := mustFold(t, s.evs)

	if after.Job.Version != 2 {
		t.Fatalf("version %d, want 2", after.Job.Version)
	}
	want := *before.Job
	want.Version = 2
	if got, _ := json.Marshal(after.Job); string(got) != string(mustJSON(t, want)) {
		t.Fatalf("attempt_rejected changed more than the version:\n got %s\nwant %s", got, mustJSON(t, want))
	}
	if !after.Job.UpdatedAt.Equal(s.at(0)) {
		t.Fatalf("updated_at moved to %v", after.Job.UpdatedAt)
	}
	if *after.Pending != *before.Pending {
		t.Fatalf("pending row changed: %+v", after.Pending)
	}
}

func TestFoldFailRetryDeadLetterPurge(t *testing.T) {
	s := newStream(t)
	l1, l2 := uuid.New(), uuid.New()
	s.add(events.JobEnqueued, enqueuedData).
		add(events.JobClaimed, claimedData(l1, s.at(1).Add(time.Minute))).
		add(events.JobFailed, `{"worker_id":"w1","lease_id":"`+l1.String()+`","error":"boom"}`).
		add(events.JobRetryScheduled, `{"retry_count":1,"run_at":"`+s.at(10).Format(time.RFC3339Nano)+`"}`)
	st := mustFold(t, s.evs)
	if st.Job.Status != "pending" || st.Job.RetryCount != 1 || *st.Job.LastError != "boom" ||
		!st.Job.ScheduledAt.Equal(s.at(10)) || !st.Pending.RunAt.Equal(s.at(10)) || st.Processing != nil {
		t.Fatalf("retry scheduled: %+v %+v", st.Job, st.Pending)
	}

	s.add(events.JobClaimed, claimedData(l2, s.at(5).Add(time.Minute))).
		add(events.JobLeaseExpired, `{"worker_id":"w1","lease_id":"`+l2.String()+`"}`).
		add(events.JobDeadLettered, `{"reason":"lease_expired","retry_count":1,"error":"Max retries exceeded after lease expiration"}`)
	st = mustFold(t, s.evs)
	if st.Job.Status != "deadletter" || *st.Job.LastError != "Max retries exceeded after lease expiration" ||
		st.Job.LeaseID != nil || st.Pending != nil || st.Processing != nil || st.Job.Version != 7 {
		t.Fatalf("dead-lettered: %+v", st.Job)
	}

	s.add(events.JobPurged, `{}`)
	st = mustFold(t, s.evs)
	if st.Job != nil || st.Pending != nil || st.Processing != nil {
		t.Fatalf("purged job still has rows: %+v %+v %+v", st.Job, st.Pending, st.Processing)
	}

	s.add(events.JobAttemptRejected, `{"action":"complete","worker_id":"w1","lease_id":null,"reason":"x"}`)
	if _, err := projections.FoldJob(s.evs); err == nil {
		t.Fatal("an event after job.purged was folded")
	}
}

func TestFoldRefusesBadLogs(t *testing.T) {
	lease := uuid.New()
	cases := map[string]func(s *stream){
		"unknown type": func(s *stream) {
			s.add(events.JobEnqueued, enqueuedData).add("job.teleported", `{}`)
		},
		"sequence gap": func(s *stream) {
			s.add(events.JobEnqueued, enqueuedData).add(events.JobCancelled, `{}`)
			s.evs[1].Seq = 3
		},
		"no enqueue first": func(s *stream) { s.add(events.JobCancelled, `{}`) },
		"enqueued twice": func(s *stream) {
			s.add(events.JobEnqueued, enqueuedData).add(events.JobEnqueued, enqueuedData)
		},
		"complete without lease": func(s *stream) {
			s.add(events.JobEnqueued, enqueuedData).
				add(events.JobCompleted, `{"worker_id":"w1","lease_id":"`+lease.String()+`","result":null}`)
		},
		"retry decision without failure": func(s *stream) {
			s.add(events.JobEnqueued, enqueuedData).
				add(events.JobClaimed, claimedData(lease, s.at(1).Add(time.Minute))).
				add(events.JobDeadLettered, `{"reason":"retries_exhausted","retry_count":0}`)
		},
		"malformed data": func(s *stream) {
			s.add(events.JobEnqueued, enqueuedData).add(events.JobPriorityChanged, `{"new_priority":"high"}`)
		},
		"purge of a live job": func(s *stream) {
			s.add(events.JobEnqueued, enqueuedData).add(events.JobPurged, `{}`)
		},
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			s := newStream(t)
			build(s)
			_, err := projections.FoldJob(s.evs)
			if err == nil {
				t.Fatal("folded a log the live path cannot write")
			}
			if !strings.Contains(err.Error(), s.id.String()) {
				t.Fatalf("error does not name the job: %v", err)
			}
		})
	}
}

func TestFoldCancelAndPriority(t *testing.T) {
	s := newStream(t)
	s.add(events.JobEnqueued, enqueuedData).
		add(events.JobPriorityChanged, `{"old_priority":3,"new_priority":-7}`)
	st := mustFold(t, s.evs)
	if st.Job.Priority != -7 || st.Pending.Priority != -7 || !st.Job.UpdatedAt.Equal(s.at(1)) {
		t.Fatalf("priority: %+v %+v", st.Job, st.Pending)
	}
	s.add(events.JobCancelled, `{}`)
	st = mustFold(t, s.evs)
	if st.Job.Status != "cancelled" || st.Pending != nil || st.Job.Version != 3 {
		t.Fatalf("cancelled: %+v %+v", st.Job, st.Pending)
	}
	s.add(events.JobRetried, `{"retry_count":0,"source":"dlq"}`)
	if _, err := projections.FoldJob(s.evs); err == nil {
		t.Fatal("a cancelled job was retried")
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
