package httpapi

import (
	"fmt"
	"log/slog"
	"testing"

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
