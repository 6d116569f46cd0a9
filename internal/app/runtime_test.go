package app_test

import (
	"runtime/debug"
	"testing"

	"github.com/spooled-go/spooled/internal/app"
)

// TestTuneRuntime: without GOGC the server collects at DefaultGCPercent;
// a GOGC in the environment (already applied by the runtime at start) is
// left as it is and reported.
func TestTuneRuntime(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })

	if got := app.TuneRuntime(func(string) string { return "" }).GOGC; got != app.DefaultGCPercent {
		t.Errorf("without GOGC: reported %d, want %d", got, app.DefaultGCPercent)
	}
	if now := debug.SetGCPercent(100); now != app.DefaultGCPercent {
		t.Errorf("without GOGC: the collector runs at %d, want %d", now, app.DefaultGCPercent)
	}
	for _, c := range []struct {
		gogc    string
		applied int // what the runtime made of it at start
	}{{"50", 50}, {"off", -1}, {"lots", 100}} {
		debug.SetGCPercent(c.applied)
		got := app.TuneRuntime(func(k string) string {
			if k == "GOGC" {
				return c.gogc
			}
			return ""
		}).GOGC
		if got != c.applied {
			t.Errorf("GOGC=%s: reported %d, want %d", c.gogc, got, c.applied)
		}
		if now := debug.SetGCPercent(100); now != c.applied {
			t.Errorf("GOGC=%s: the collector was changed from %d to %d", c.gogc, c.applied, now)
		}
	}
}

// TestTuneRuntimeKeepsAMemoryLimitItIsGiven: with GOMEMLIMIT set, the
// limit in force is left alone (the cgroup is not consulted) and reported.
func TestTuneRuntimeKeepsAMemoryLimitItIsGiven(t *testing.T) {
	prevGC := debug.SetGCPercent(100)
	prevLimit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(prevGC)
		debug.SetMemoryLimit(prevLimit)
	})
	t.Setenv("GOMEMLIMIT", "300MiB")
	debug.SetMemoryLimit(300 << 20) // what the runtime would have read at start
	r := app.TuneRuntime(func(string) string { return "" })
	if r.MemoryLimitErr != nil || r.MemoryLimit != 300<<20 {
		t.Errorf("with GOMEMLIMIT=300MiB: reported %d (%v), want %d", r.MemoryLimit, r.MemoryLimitErr, 300<<20)
	}
	if now := debug.SetMemoryLimit(-1); now != 300<<20 {
		t.Errorf("with GOMEMLIMIT=300MiB: the limit in force is %d", now)
	}
}
