package commands_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/spooled-go/spooled/commands"
)

// TestEnqueueValidation: every rule breach is refused with its error type
// and nothing is written, not even for the valid jobs of the same call.
func TestEnqueueValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.actor.OrgID
	valid := func() commands.NewJob { return commands.NewJob{QueueName: "q", Payload: payload(1)} }
	with := func(f func(*commands.NewJob)) commands.NewJob {
		j := valid()
		f(&j)
		return j
	}
	queue := func(name string) commands.NewJob { return with(func(j *commands.NewJob) { j.QueueName = name }) }
	huge := json.RawMessage(`"` + strings.Repeat("x", 1<<20) + `"`)

	cases := []struct {
		name  string
		job   commands.NewJob
		field string // "" for PayloadTooLargeError
	}{
		{"space in queue", queue("a b"), "queue_name"},
		{"slash in queue", queue("a/b"), "queue_name"},
		{"unicode in queue", queue("caf\u00e9"), "queue_name"},
		{"emoji queue", queue("\U0001F680"), "queue_name"},
		{"leading dot", queue(".hidden"), "queue_name"},
		{"leading dash", queue("-flag"), "queue_name"},
		{"101 chars", queue(strings.Repeat("a", 101)), "queue_name"},
		{"empty queue", queue(""), "queue_name"},
		{"no payload", with(func(j *commands.NewJob) { j.Payload = nil }), "payload"},
		{"payload over the limit", with(func(j *commands.NewJob) { j.Payload = huge }), ""},
		{"priority 101", with(func(j *commands.NewJob) { j.Priority = ptr(101) }), "priority"},
		{"priority -101", with(func(j *commands.NewJob) { j.Priority = ptr(-101) }), "priority"},
		{"max_retries -1", with(func(j *commands.NewJob) { j.MaxRetries = ptr(-1) }), "max_retries"},
		{"max_retries 101", with(func(j *commands.NewJob) { j.MaxRetries = ptr(101) }), "max_retries"},
		{"timeout 0", with(func(j *commands.NewJob) { j.TimeoutSeconds = ptr(0) }), "timeout_seconds"},
		{"timeout 86401", with(func(j *commands.NewJob) { j.TimeoutSeconds = ptr(86401) }), "timeout_seconds"},
		{"unknown parent", with(func(j *commands.NewJob) { j.ParentJobID = ptr(uuid.NewString()) }), "parent_job_id"},
		{"non-uuid parent", with(func(j *commands.NewJob) { j.ParentJobID = ptr("parent") }), "parent_job_id"},
		{"256-char key", with(func(j *commands.NewJob) { j.IdempotencyKey = ptr(strings.Repeat("k", 256)) }), "idempotency_key"},
		{"bad webhook", with(func(j *commands.NewJob) { j.CompletionWebhook = ptr("ftp://x") }), "completion_webhook"},
	}
	for _, c := range cases {
		for _, call := range []string{"alone", "after a valid job"} {
			batch := []commands.NewJob{c.job}
			if call != "alone" {
				batch = []commands.NewJob{valid(), c.job}
			}
			res, err := e.svc.Enqueue(e.ctx, e.actor, batch)
			if res != nil {
				t.Fatalf("%s (%s): results %+v with error %v", c.name, call, res, err)
			}
			if c.field == "" {
				var big *commands.PayloadTooLargeError
				if !errors.As(err, &big) || big.Limit != 1<<20 || big.Size != len(huge) {
					t.Fatalf("%s (%s): got %v (%T), want *PayloadTooLargeError", c.name, call, err, err)
				}
				continue
			}
			// A job alone is named bare; a job of a batch by its index.
			want := c.field
			if call != "alone" {
				want = "jobs[1]." + c.field
			}
			if ve := asValidationError(t, c.name+" ("+call+")", err); ve.Field != want {
				t.Fatalf("%s (%s): field %q, want %q", c.name, call, ve.Field, want)
			}
		}
	}

	// Limits are inclusive: the edge values are accepted.
	edges := []commands.NewJob{
		queue(strings.Repeat("a", 100)), queue("a.b-c_D9"),
		with(func(j *commands.NewJob) { j.Priority, j.MaxRetries, j.TimeoutSeconds = ptr(100), ptr(100), ptr(86400) }),
		with(func(j *commands.NewJob) { j.Priority, j.MaxRetries, j.TimeoutSeconds = ptr(-100), ptr(0), ptr(1) }),
	}

	// Batch size: 0 and 101 are refused.
	for _, n := range []int{0, commands.MaxBulkJobs + 1} {
		batch := make([]commands.NewJob, n)
		for i := range batch {
			batch[i] = valid()
		}
		_, err := e.svc.Enqueue(e.ctx, e.actor, batch)
		asValidationError(t, "enqueue of many jobs", err)
		_, err = e.svc.EnqueueBulk(e.ctx, e.actor, batch)
		asValidationError(t, "bulk of many jobs", err)
	}
	// A forbidden queue name fails a whole bulk call too.
	_, err := e.svc.EnqueueBulk(e.ctx, e.actor, []commands.NewJob{valid(), queue("a b")})
	asValidationError(t, "bulk with a bad queue", err)

	if f := e.footprint(org); f != (footprint{}) {
		t.Fatalf("refused enqueues wrote %+v", f)
	}
	if n := e.scalar(`SELECT count(*) FROM job_events WHERE organization_id = $1 AND stream_type = 'job'`, org); n != 0 {
		t.Fatalf("refused enqueues appended %d events", n)
	}

	res, err := e.svc.Enqueue(e.ctx, e.actor, edges)
	if err != nil || len(res) != len(edges) {
		t.Fatalf("edge values: %+v %v", res, err)
	}
	j := e.get(org, res[2].ID)
	if j.Priority != 100 || j.MaxRetries != 100 || j.TimeoutSeconds != 86400 {
		t.Fatalf("edge job %+v", j)
	}
	// A parent that exists is accepted.
	if _, err := e.svc.Enqueue(e.ctx, e.actor, []commands.NewJob{with(func(j *commands.NewJob) { j.ParentJobID = ptr(res[0].ID.String()) })}); err != nil {
		t.Fatalf("known parent: %v", err)
	}
	// ... but not another tenant's.
	other := e.newOrg("globex")
	_, err = e.svc.Enqueue(e.ctx, other, []commands.NewJob{with(func(j *commands.NewJob) { j.ParentJobID = ptr(res[0].ID.String()) })})
	asValidationError(t, "another tenant's parent", err)
	// In a bulk call the refusal names the item, counted among all the
	// call's items, also when an earlier one failed alone (its default).
	_, err = e.svc.EnqueueBulk(e.ctx, other, []commands.NewJob{
		with(func(j *commands.NewJob) { j.MaxRetries = ptr(-1) }), valid(),
		with(func(j *commands.NewJob) { j.ParentJobID = ptr(res[0].ID.String()) }),
	})
	if ve := asValidationError(t, "another tenant's parent in a bulk call", err); ve.Field != "jobs[2].parent_job_id" || ve.Code != "not_found" {
		t.Fatalf("another tenant's parent in a bulk call: %+v", ve)
	}
	_, err = e.svc.Enqueue(e.ctx, other, []commands.NewJob{valid(), with(func(j *commands.NewJob) { j.ParentJobID = ptr(res[0].ID.String()) })})
	if ve := asValidationError(t, "another tenant's parent in a batch", err); ve.Field != "jobs[1].parent_job_id" {
		t.Fatalf("another tenant's parent in a batch: %+v", ve)
	}
	if f := e.footprint(other.OrgID); f != (footprint{}) {
		t.Fatalf("refused enqueue wrote %+v", f)
	}
}

// TestBulkDefaultsOutOfRange: in a bulk call, an item the defaults put out
// of range fails alone, and the rest are created.
func TestBulkDefaultsOutOfRange(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	res, err := e.svc.EnqueueBulk(e.ctx, e.actor, []commands.NewJob{
		{QueueName: "q", Payload: payload(0)},
		{QueueName: "q", Payload: payload(1), MaxRetries: ptr(-1)},
		{QueueName: "q", Payload: payload(2), TimeoutSeconds: ptr(0)},
		{QueueName: "q", Payload: payload(3)},
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, field := range map[int]string{1: "jobs[1].max_retries", 2: "jobs[2].timeout_seconds"} {
		if res[i].Created || res[i].ID != uuid.Nil {
			t.Fatalf("item %d: %+v", i, res[i])
		}
		if ve := asValidationError(t, "bulk item", res[i].Err); ve.Field != field || ve.Code != "range" {
			t.Fatalf("item %d: %+v, want field %s", i, ve, field)
		}
	}
	for _, i := range []int{0, 3} {
		if !res[i].Created || res[i].Err != nil {
			t.Fatalf("item %d: %+v", i, res[i])
		}
	}
	if f := e.footprint(e.actor.OrgID); f.jobs != 2 || f.pending != 2 || f.events != 2 {
		t.Fatalf("footprint %+v, want 2 jobs", f)
	}
}

// TestValidateQueueName: Spooled's rule, byte by byte, with the code each
// refusal carries.
func TestValidateQueueName(t *testing.T) {
	t.Parallel()
	for name, code := range map[string]string{
		"a": "", "emails": "", "a.b-c_D9": "", "Z9": "", "a-": "", "a.": "", "_x": "",
		strings.Repeat("q", 100): "",
		"":                       "length",
		strings.Repeat("q", 101): "length",
		strings.Repeat("é", 51):  "length", // 102 bytes
		strings.Repeat("é", 50):  "invalid_queue_name",
		".hidden":                "invalid_queue_name",
		"-flag":                  "invalid_queue_name",
		"a b":                    "invalid_queue_name",
		"a/b":                    "invalid_queue_name",
		"a\x00b":                 "invalid_queue_name",
		"a\nb":                   "invalid_queue_name",
		"caf\u00e9":              "invalid_queue_name",
		"\U0001F680":             "invalid_queue_name",
		"a:b":                    "invalid_queue_name",
		"a@b":                    "invalid_queue_name",
		"a[b]":                   "invalid_queue_name",
		"a`b":                    "invalid_queue_name",
		"a{b}":                   "invalid_queue_name",
		"a~b":                    "invalid_queue_name",
	} {
		err := commands.ValidateQueueName("queue_name", name)
		if code == "" {
			if err != nil {
				t.Errorf("%q: %v, want accepted", name, err)
			}
			continue
		}
		var ve *commands.ValidationError
		if !errors.As(err, &ve) || ve.Field != "queue_name" || ve.Code != code {
			t.Errorf("%q: %v, want %s", name, err, code)
		}
	}
}
