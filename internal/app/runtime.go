package app

import (
	"runtime/debug"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// DefaultGCPercent is the Go collector's target (GOGC) the server runs
// with when the environment does not set GOGC. A job server's live heap is
// small (tens of MB: pages of the log, the requests in flight) and it
// allocates fast (request bodies, statement arguments, rows), so at Go's
// default of 100 it collects several times a second under load: the
// collector took a fifth of the server process's CPU in the batch
// end-to-end benchmark. At 400 it collects a fifth as often, for a heap up
// to five times the live one; the memory limit below keeps that from
// outgrowing a container.
const DefaultGCPercent = 400

// Runtime is what TuneRuntime left in force.
type Runtime struct {
	// GOGC is the collector's target (-1: off).
	GOGC int
	// MemoryLimit is the soft memory limit in bytes (math.MaxInt64: none).
	MemoryLimit int64
	// MemoryLimitErr says why no limit could be read from the process's
	// cgroup (not running in one, say); MemoryLimit is then what it was.
	MemoryLimitErr error
}

// TuneRuntime applies the server's runtime defaults to the process (for
// its own binary, and for the benchmark, which runs the server in-process
// as the binary would):
//
//   - GOGC of DefaultGCPercent unless getenv("GOGC") is set, in which case
//     the runtime has already applied it (and Runtime reports what it
//     made of it);
//   - unless GOMEMLIMIT is set, a soft memory limit of 90% of the memory
//     limit of the process's cgroup (a container's), when it has one
//     (AUTOMEMLIMIT=off or a ratio in (0, 1] overrides; see
//     github.com/KimMachineGun/automemlimit, which reads the process's
//     own environment).
//
// A program that embeds the app without calling it keeps its own
// settings.
func TuneRuntime(getenv func(string) string) Runtime {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(DefaultGCPercent)
	}
	var r Runtime
	r.GOGC = debug.SetGCPercent(-1) // reads the target in force
	debug.SetGCPercent(r.GOGC)
	r.MemoryLimit, r.MemoryLimitErr = memlimit.Set()
	return r
}
