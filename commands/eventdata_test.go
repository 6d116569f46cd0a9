package commands_test

import (
	"encoding/json"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/events"
)

// TestEnqueuedEventDataLeavesOutUnsetFields: a job.enqueued event carries
// the optional fields its job set, rendered as Postgres renders them, and
// none of those it left unset; either way the data is one JSON object that
// decodes to what the job was created with.
func TestEnqueuedEventDataLeavesOutUnsetFields(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	parent := e.enqueue(e.actor, commands.NewJob{QueueName: "data"})
	at := e.clk.Now().Add(time.Hour).Truncate(time.Microsecond)
	expires := at.Add(time.Hour)
	full := commands.NewJob{
		QueueName: "data", Payload: json.RawMessage(`{"text":"quote \" and \\ and é"}`),
		ScheduledAt: &at, ExpiresAt: &expires, Tags: json.RawMessage(`{"env":"prod","n":[1,2]}`),
		ParentJobID: ptr(parent.String()), CompletionWebhook: ptr(`https://example.com/hook?a="b"`),
		IdempotencyKey: ptr("key \"1\""),
	}
	partial := commands.NewJob{QueueName: "data", Payload: payload(2), Tags: json.RawMessage(`["a"]`)}
	res, err := e.svc.EnqueueBulk(e.ctx, e.actor, []commands.NewJob{{QueueName: "data", Payload: payload(1)}, full, partial})
	if err != nil {
		t.Fatal(err)
	}
	base := []string{"max_retries", "payload", "priority", "status", "timeout_seconds"}
	cases := []struct {
		name string
		id   uuid.UUID
		keys []string
	}{
		{"single, nothing optional", parent, base},
		{"bulk, nothing optional", res[0].ID, base},
		{"bulk, every optional field", res[1].ID, append(slices.Clone(base),
			"completion_webhook", "expires_at", "idempotency_key", "parent_job_id", "scheduled_at", "tags")},
		{"bulk, tags alone", res[2].ID, append(slices.Clone(base), "tags")},
	}
	for _, c := range cases {
		var raw string
		if err := e.pool.QueryRow(e.ctx,
			`SELECT data::text FROM job_events WHERE stream_id = $1 AND event_type = $2`,
			c.id.String(), events.JobEnqueued).Scan(&raw); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal([]byte(raw), &fields); err != nil {
			t.Fatalf("%s: data is not a JSON object: %v\n%s", c.name, err, raw)
		}
		got := slices.Sorted(maps.Keys(fields))
		want := slices.Sorted(slices.Values(c.keys))
		if !slices.Equal(got, want) {
			t.Errorf("%s: keys %v, want %v\n%s", c.name, got, want, raw)
		}
	}

	// The base object is written as text; it must read exactly as
	// json_build_object renders the job's fields (the form the log has
	// always held), whatever the payload holds and whichever optional
	// fields follow it.
	for _, c := range cases {
		var data, rendered string
		if err := e.pool.QueryRow(e.ctx, `
			SELECT e.data::text, json_build_object('status', j.status, 'payload', j.payload, 'priority', j.priority,
			           'max_retries', j.max_retries, 'timeout_seconds', j.timeout_seconds)::text
			FROM job_events e JOIN jobs j ON j.id::text = e.stream_id
			WHERE e.stream_id = $1 AND e.event_type = $2`,
			c.id.String(), events.JobEnqueued).Scan(&data, &rendered); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if len(c.keys) == len(base) && data != rendered {
			t.Errorf("%s: data\n%s\nwant json_build_object's\n%s", c.name, data, rendered)
		}
		if head := rendered[:len(rendered)-1]; len(c.keys) > len(base) && (len(data) <= len(head) || data[:len(head)] != head) {
			t.Errorf("%s: data\n%s\ndoes not begin with json_build_object's\n%s", c.name, data, head)
		}
	}

	var raw string
	if err := e.pool.QueryRow(e.ctx, `SELECT data::text FROM job_events WHERE stream_id = $1 AND event_type = $2`,
		res[1].ID.String(), events.JobEnqueued).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	var d events.Enqueued
	if err := json.Unmarshal([]byte(raw), &d); err != nil {
		t.Fatal(err)
	}
	if d.ScheduledAt == nil || !d.ScheduledAt.Equal(at) || d.ExpiresAt == nil || !d.ExpiresAt.Equal(expires) {
		t.Errorf("times %v, %v; want %v, %v", d.ScheduledAt, d.ExpiresAt, at, expires)
	}
	if d.ParentJobID == nil || *d.ParentJobID != parent || d.CompletionWebhook == nil || *d.CompletionWebhook != *full.CompletionWebhook ||
		d.IdempotencyKey == nil || *d.IdempotencyKey != *full.IdempotencyKey || d.Status != "scheduled" {
		t.Errorf("decoded %+v", d)
	}
	if canonicalJSON(t, d.Tags) != canonicalJSON(t, full.Tags) || canonicalJSON(t, d.Payload) != canonicalJSON(t, full.Payload) {
		t.Errorf("tags %s payload %s; want %s, %s", d.Tags, d.Payload, full.Tags, full.Payload)
	}
}

// canonicalJSON re-encodes raw so that two renderings of one value (key
// order, spacing) compare equal; raw that is not JSON fails the test.
func canonicalJSON(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("not JSON (%v): %s", err, raw)
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}
