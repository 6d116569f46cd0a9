package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/spooled-go/spooled/commands"
)

// TestStoppingIsServiceUnavailable: a request the service refuses because
// it is stopping (a handler that outlived the drain) is a 503 with
// Retry-After, which clients retry elsewhere, not a 500.
func TestStoppingIsServiceUnavailable(t *testing.T) {
	t.Parallel()
	ae := toAPIError(fmt.Errorf("claim: %w", commands.ErrStopping), slog.New(slog.DiscardHandler), "/api/v1/jobs/claim")
	if ae.Status != 503 || ae.Code != "SERVICE_UNAVAILABLE" || ae.Headers["Retry-After"] == "" {
		t.Fatalf("got %d %s %v, want 503 SERVICE_UNAVAILABLE with Retry-After", ae.Status, ae.Code, ae.Headers)
	}
}

// TestStreamCounterWait: shutdown's wait for sockets returns once the last
// one is released, and gives up with ctx while one is open.
func TestStreamCounterWait(t *testing.T) {
	t.Parallel()
	sc := newStreamCounter("WebSockets", maxSocketsPerOrg)
	if err := sc.wait(t.Context()); err != nil {
		t.Fatalf("wait with no socket: %v", err)
	}
	for range 2 {
		if sc.acquire("org") != nil {
			t.Fatal("acquire refused")
		}
	}
	short, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := sc.wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait with two sockets open: %v, want the deadline", err)
	}
	done := make(chan error, 1)
	go func() { done <- sc.wait(t.Context()) }()
	sc.release("org")
	select {
	case err := <-done:
		t.Fatalf("wait returned (%v) with a socket still open", err)
	default:
	}
	sc.release("org")
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("wait did not return once the last socket was released")
	}
	if sc.acquire("org") != nil || sc.wait(short) == nil {
		t.Fatal("a socket acquired after the counter went idle is not waited for")
	}
}
