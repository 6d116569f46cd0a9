package httpapi

import (
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// tcpPair is a connected pair of TCP sockets on loopback: the server's end
// and the client's.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// stopWithin fails the test when stop does not return within 5 s.
func stopWithin(t *testing.T, stop func(), what string) {
	t.Helper()
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not return", what)
	}
}

// TestWatchHangUp: the watch reports a client that closed its end, does
// not report one that sent bytes instead, leaves those bytes for the
// server to read, and ends promptly when stopped, before or after it
// began, without reporting anything.
func TestWatchHangUp(t *testing.T) {
	t.Parallel()
	t.Run("client closes", func(t *testing.T) {
		server, client := tcpPair(t)
		var gone atomic.Bool
		stop := watchHangUp(server, 0, func() { gone.Store(true) })
		defer stop()
		client.Close()
		if !within(5*time.Second, gone.Load) {
			t.Fatal("a closed client was not reported")
		}
	})
	t.Run("client sends bytes", func(t *testing.T) {
		server, client := tcpPair(t)
		var gone atomic.Bool
		stop := watchHangUp(server, 0, func() { gone.Store(true) })
		if _, err := io.WriteString(client, "GET / HTTP/1.1\r\n"); err != nil {
			t.Fatal(err)
		}
		// The bytes end the watch (it cannot tell more without taking
		// them); stop then returns at once.
		stopWithin(t, stop, "stop after the client's bytes")
		if gone.Load() {
			t.Fatal("bytes from the client were taken for a hang-up")
		}
		_ = server.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 16)
		if n, err := io.ReadFull(server, buf); err != nil || string(buf[:n]) != "GET / HTTP/1.1\r\n" {
			t.Fatalf("the server read %q (%v): the watch took bytes off the socket", buf[:n], err)
		}
	})
	t.Run("stopped while watching", func(t *testing.T) {
		server, _ := tcpPair(t)
		var gone atomic.Bool
		stop := watchHangUp(server, 0, func() { gone.Store(true) })
		stopWithin(t, stop, "stop of a watch on a quiet connection")
		if gone.Load() {
			t.Fatal("a stopped watch reported a hang-up")
		}
	})
	t.Run("stopped before it began", func(t *testing.T) {
		server, client := tcpPair(t)
		var gone atomic.Bool
		stop := watchHangUp(server, time.Hour, func() { gone.Store(true) })
		stop()
		client.Close()
		// Nothing watches any more: the server's own read sees the EOF.
		_ = server.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := server.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("server read: %v, want EOF", err)
		}
		if gone.Load() {
			t.Fatal("a watch stopped before it began reported a hang-up")
		}
	})
	t.Run("not a socket", func(t *testing.T) {
		server, client := net.Pipe()
		defer client.Close()
		defer server.Close()
		stop := watchHangUp(server, 0, func() { t.Error("a pipe was watched") })
		stop()
	})
}
