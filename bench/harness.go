package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ---- latencies -------------------------------------------------------------

// pcts are the percentiles every latency row reports.
type pcts struct {
	N             int
	P50, P95, P99 time.Duration
	Max           time.Duration
}

func percentiles(ds []time.Duration) pcts {
	if len(ds) == 0 {
		return pcts{}
	}
	slices.Sort(ds)
	at := func(q float64) time.Duration {
		i := int(q*float64(len(ds))+0.5) - 1
		return ds[min(max(i, 0), len(ds)-1)]
	}
	return pcts{N: len(ds), P50: at(0.50), P95: at(0.95), P99: at(0.99), Max: ds[len(ds)-1]}
}

// maxSamples bounds every latency slice (a goroutine stops recording, never
// stops working, past it).
const maxSamples = 2_000_000

// ---- closed loops ----------------------------------------------------------

// loopResult is what a timed closed loop measured inside its window.
type loopResult struct {
	Clients  int
	Window   time.Duration
	Ops      int64 // successful operations that finished inside the window
	Units    int64 // jobs (or rows) those operations carried
	Errors   int64 // failed operations (whole run, warm-up included)
	FirstErr string
	Lat      pcts
}

func (r loopResult) rate() float64 { return float64(r.Units) / r.Window.Seconds() }

// closedLoop runs op on n goroutines back to back for warm+dur; operations
// that start after the warm-up and end inside the window are counted and
// timed. Every loop is bounded by the window and ctx.
func closedLoop(ctx context.Context, n int, warm, dur time.Duration, op func(ctx context.Context, g int, i int) (units int, err error)) loopResult {
	t0 := time.Now()
	from, until := t0.Add(warm), t0.Add(warm+dur)
	ctx, cancel := context.WithDeadline(ctx, until.Add(5*time.Second))
	defer cancel()
	var (
		mu       sync.Mutex
		all      []time.Duration
		ops      atomic.Int64
		units    atomic.Int64
		errs     atomic.Int64
		firstErr atomic.Value
		wg       sync.WaitGroup
	)
	for g := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 4096)
			for i := 0; ctx.Err() == nil; i++ {
				s := time.Now()
				if !s.Before(until) {
					break
				}
				u, err := op(ctx, g, i)
				e := time.Now()
				if err != nil {
					if ctx.Err() != nil {
						break
					}
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				if !s.Before(from) && !e.After(until) {
					ops.Add(1)
					units.Add(int64(u))
					if len(lat) < maxSamples/n {
						lat = append(lat, e.Sub(s))
					}
				}
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	r := loopResult{Clients: n, Window: dur, Ops: ops.Load(), Units: units.Load(), Errors: errs.Load(), Lat: percentiles(all)}
	if v, ok := firstErr.Load().(string); ok {
		r.FirstErr = v
	}
	return r
}

// ---- the REST client -------------------------------------------------------

// api is a Spooled REST client as an SDK worker is one: net/http with
// keep-alive connections, JSON bodies, a bearer key.
type api struct {
	base string
	key  string
	hc   *http.Client
}

func newAPI(base, key string, conns int) *api {
	tr := &http.Transport{
		Proxy:               nil, // traffic stays on 127.0.0.1
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns + 16,
		MaxIdleConnsPerHost: conns + 16,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &api{base: base, key: key, hc: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
}

func (a *api) close() { a.hc.CloseIdleConnections() }

type httpError struct {
	Status int
	Body   string
}

func (e *httpError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Body) }

// post sends body (raw JSON bytes, or a value to encode) and decodes a 2xx
// answer into out (when not nil). The body is always drained so the
// connection goes back to the pool.
func (a *api) post(ctx context.Context, path string, body any, out any, hdr ...string) error {
	var raw []byte
	switch b := body.(type) {
	case []byte:
		raw = b
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			return err
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+path, bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if a.key != "" {
		req.Header.Set("Authorization", "Bearer "+a.key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		_, _ = io.Copy(io.Discard, resp.Body)
		return &httpError{Status: resp.StatusCode, Body: strings.TrimSpace(string(b))}
	}
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	dec := json.NewDecoder(resp.Body)
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}

// ---- machine facts and process accounting --------------------------------

type machine struct {
	NProc    string
	CPU      string
	MemTotal string
	Kernel   string
	Go       string
	Commit   string
}

func machineFacts() machine {
	m := machine{Go: runtime.Version(), NProc: strconv.Itoa(runtime.NumCPU())}
	if out, err := exec.Command("nproc").Output(); err == nil {
		m.NProc = strings.TrimSpace(string(out))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "MemTotal:") {
				f := strings.Fields(l)
				if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
					m.MemTotal = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.Commit = "unknown"
	if out, err := exec.Command("git", "-C", "..", "log", "-1", "--format=%h %s").Output(); err == nil {
		m.Commit = "`" + strings.TrimSpace(string(out)) + "`"
		// The server is built from the working tree: name what differs.
		if st, err := exec.Command("git", "-C", "..", "status", "--porcelain", "--untracked-files=no").Output(); err == nil {
			var files []string
			for _, l := range strings.Split(strings.TrimRight(string(st), "\n"), "\n") {
				if len(l) > 3 {
					files = append(files, "`"+strings.TrimSpace(l[3:])+"`")
				}
			}
			if len(files) > 0 {
				m.Commit += "; the working tree also had uncommitted changes to " + strings.Join(files, ", ")
			}
		}
	}
	return m
}

// clearPeakRSS resets this process's VmHWM (Linux: "5" > clear_refs).
func clearPeakRSS() error { return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// procStatusKB reads one "VmXxx:  N kB" line of /proc/<pid>/status.
func procStatusKB(pid, field string) (int64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field+":") {
			f := strings.Fields(l)
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("%s not in /proc/%s/status", field, pid)
}

// memSampler polls runtime/metrics for the peak of the Go runtime's memory.
type memSampler struct {
	stop     chan struct{}
	done     chan struct{}
	peakTot  atomic.Uint64 // /memory/classes/total:bytes
	peakHeap atomic.Uint64 // /memory/classes/heap/objects:bytes
}

func startMemSampler(every time.Duration) *memSampler {
	s := &memSampler{stop: make(chan struct{}), done: make(chan struct{})}
	samples := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
	read := func() {
		metrics.Read(samples)
		if v := samples[0].Value; v.Kind() == metrics.KindUint64 && v.Uint64() > s.peakTot.Load() {
			s.peakTot.Store(v.Uint64())
		}
		if v := samples[1].Value; v.Kind() == metrics.KindUint64 && v.Uint64() > s.peakHeap.Load() {
			s.peakHeap.Store(v.Uint64())
		}
	}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			read()
			select {
			case <-s.stop:
				read()
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *memSampler) finish() (total, heap uint64) {
	close(s.stop)
	<-s.done
	return s.peakTot.Load(), s.peakHeap.Load()
}

// cpuTimes is CPU seconds used by this process and by Postgres — who
// burned the cores. Postgres is every live process named postgres plus the
// postmaster's reaped children (cutime+cstime), so backends that exit
// between two readings still count.
type cpuTimes struct{ self, postgres float64 }

// procStat is one process's /proc/<pid>/stat, times in seconds.
type procStat struct {
	comm, ppid   string
	user, kernel float64 // utime, stime
	children     float64 // cutime + cstime: reaped children
}

func readProcStat(pid string) (procStat, bool) {
	const clk = 100.0 // USER_HZ on Linux
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return procStat{}, false
	}
	s := string(b)
	l, r := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if l < 0 || r < l {
		return procStat{}, false
	}
	f := strings.Fields(s[r+1:]) // f[0] is field 3 (state)
	if len(f) < 15 {
		return procStat{}, false
	}
	num := func(i int) float64 { v, _ := strconv.ParseFloat(f[i], 64); return v / clk }
	return procStat{comm: s[l+1 : r], ppid: f[1], user: num(11), kernel: num(12), children: num(13) + num(14)}, true
}

func readCPU() cpuTimes {
	var c cpuTimes
	if p, ok := readProcStat("self"); ok {
		c.self = p.user + p.kernel
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		p, ok := readProcStat(e.Name())
		if !ok || !strings.HasPrefix(p.comm, "postgres") {
			continue
		}
		c.postgres += p.user + p.kernel
		if parent, ok := readProcStat(p.ppid); !ok || !strings.HasPrefix(parent.comm, "postgres") {
			c.postgres += p.children // the postmaster: its exited backends
		}
	}
	return c
}

func (c cpuTimes) sub(o cpuTimes) cpuTimes {
	return cpuTimes{self: c.self - o.self, postgres: c.postgres - o.postgres}
}

func (c cpuTimes) add(o cpuTimes) cpuTimes {
	return cpuTimes{self: c.self + o.self, postgres: c.postgres + o.postgres}
}

// ---- formatting ------------------------------------------------------------

func ms(d time.Duration) string {
	if d == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

func num(f float64) string {
	s := strconv.FormatInt(int64(f+0.5), 10)
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func mib(b uint64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

var errBudget = errors.New("time budget exhausted")
