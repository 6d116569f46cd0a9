package httpapi

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
)

// watchHangUp calls hangUp when the client closes conn while a response
// is being prepared (a waiting claim) or streamed (Server-Sent Events),
// and returns the func that ends the watch and waits for it to end. The
// watch begins after delay: a request that is answered sooner costs
// nothing but a timer, and at a moderate load most waiting claims are.
//
// The HTTP server reads a connection only between requests, so without
// the watch a handler learns that its client left only from a failed
// write: a quiet event stream at its next keepalive, a waiting claim
// never (it may even lease jobs to the departed client, which come back
// only when their leases expire). The watch peeks at the socket
// (MSG_PEEK) and so never takes a byte the server would read next: a
// client that sends anything before its answer (a pipelined request) just
// ends the watch. Read deadlines are the watch's while it runs; the
// server sets its own before it reads the next request.
//
// Connections that are not sockets (TLS, in-memory listeners) are not
// watched, and behave as before.
func watchHangUp(conn net.Conn, delay time.Duration, hangUp func()) (stop func()) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return func() {}
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return func() {}
	}
	w := &hangUpWatch{conn: conn, raw: raw, hangUp: hangUp, done: make(chan struct{})}
	timer := time.AfterFunc(delay, w.run)
	return func() {
		if timer.Stop() {
			return // never began
		}
		w.mu.Lock()
		w.stopping = true
		if w.watching {
			_ = conn.SetReadDeadline(time.Now()) // wakes the wait for readability
		}
		w.mu.Unlock()
		<-w.done
	}
}

// hangUpWatch is one running watch (see watchHangUp).
type hangUpWatch struct {
	conn   net.Conn
	raw    syscall.RawConn
	hangUp func()
	done   chan struct{}

	// mu orders the watch's start against its stop: a stop that comes
	// first keeps it from starting; one that comes later wakes it.
	mu       sync.Mutex
	stopping bool
	watching bool
}

func (w *hangUpWatch) run() {
	defer close(w.done)
	w.mu.Lock()
	// The request's read deadline would otherwise end the watch early.
	if w.stopping || w.conn.SetReadDeadline(time.Time{}) != nil {
		w.mu.Unlock()
		return
	}
	w.watching = true
	w.mu.Unlock()
	gone := false
	err := w.raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := peek(fd, b[:])
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
			return false // nothing yet: wait until the socket is readable
		}
		// 0 bytes is the client's FIN; an error, a reset.
		gone = n == 0 || err != nil
		return true
	})
	w.mu.Lock()
	stopped := w.stopping
	w.mu.Unlock()
	if (gone || err != nil) && !stopped {
		w.hangUp()
	}
}
