package app

import (
	"runtime/debug"
	"strconv"
)

// DefaultGCPercent is the Go collector's target (GOGC) the server runs
// with when the environment does not set GOGC. A job server's live heap is
// small (tens of MB: pages of the log, the requests in flight) and it
// allocates fast (request bodies, statement arguments, rows), so at Go's
// default of 100 it collects several times a second under load: the
// collector took a fifth of the server process's CPU in the batch
// end-to-end benchmark. At 400 it collects a fifth as often for a heap up
// to five times the live one. In a container, set GOMEMLIMIT below the
// container's memory as well: the collector then runs as often as it
// must to stay under it, whatever GOGC says.
const DefaultGCPercent = 400

// TuneRuntime applies the server's runtime defaults to the process (for
// its own binary, and for the benchmark, which runs the server in-process
// as the binary would): GOGC of DefaultGCPercent unless getenv("GOGC") is
// set, in which case the runtime has already applied it. It returns the
// GOGC in force (-1: off). A program that embeds the app without calling
// it keeps its own settings.
func TuneRuntime(getenv func(string) string) int {
	if v := getenv("GOGC"); v != "" {
		if v == "off" {
			return -1
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return 100 // the runtime ignores a GOGC it cannot parse
		}
		return n
	}
	debug.SetGCPercent(DefaultGCPercent)
	return DefaultGCPercent
}
