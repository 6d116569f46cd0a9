package projections

import (
	"testing"
	"time"
)

// TestTimeFieldReadsTopLevelKeysOnly: the stats read one top-level time of
// an event's data; a key of the same name inside the job's result (user
// JSON, written before "started_at" in a completed event) is not it.
func TestTimeFieldReadsTopLevelKeysOnly(t *testing.T) {
	want := time.Date(2026, 11, 30, 18, 15, 10, 123456000, time.UTC)
	for _, c := range []struct {
		name, data string
		want       *time.Time
		err        bool
	}{
		{"top level", `{"result": null, "lease_id": "01a22d89-4148-7b41-a291-2b8ce453e0f8", "worker_id": "w", "started_at": "2026-11-30T18:15:10.123456+00:00"}`, &want, false},
		{"nested first", `{"result": {"started_at": "1999-01-01T00:00:00+00:00", "x": ["started_at"]}, "worker_id": "w\"started_at\": 1", "started_at": "2026-11-30T18:15:10.123456+00:00"}`, &want, false},
		{"only nested", `{"result": {"started_at": "1999-01-01T00:00:00+00:00"}, "worker_id": "w"}`, nil, false},
		{"null", `{"result": null, "started_at": null}`, nil, false},
		{"absent", `{}`, nil, false},
		{"not a string", `{"started_at": 17}`, nil, true},
		{"not a time", `{"started_at": "yesterday"}`, nil, true},
	} {
		got, err := timeField(c.data, "started_at")
		if (err != nil) != c.err {
			t.Errorf("%s: error %v, want error %v", c.name, err, c.err)
			continue
		}
		if (got == nil) != (c.want == nil) || (got != nil && !got.Equal(*c.want)) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}
