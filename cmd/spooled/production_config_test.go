package main_test

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/spooled-go/spooled/internal/testdb"
)

// TestServeRefusesWeakSecrets: the real binary refuses to start outside
// development with a weak JWT_SECRET (and in production with a short
// webhook secret): it exits non-zero before listening, and stderr names
// the variable. With a 32-character secret the same environment starts,
// so the refusal is the secret's.
func TestServeRefusesWeakSecrets(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Parallel()
	bin := buildServer(t)
	_, dbURL := testdb.NewWithURL(t, testdb.Options{})
	strong := strings.Repeat("s", 32)

	for _, c := range []struct {
		name, variable string
		env            []string
	}{
		{"production, JWT_SECRET unset (the development default)", "JWT_SECRET", []string{"SPOOLED_ENV=production"}},
		{"production, the development default spelled out", "JWT_SECRET", []string{"SPOOLED_ENV=production", "JWT_SECRET=development-secret-change-in-production"}},
		{"production, 31 characters", "JWT_SECRET", []string{"SPOOLED_ENV=production", "JWT_SECRET=" + strings.Repeat("s", 31)}},
		{"RUST_ENV=production, short", "JWT_SECRET", []string{"RUST_ENV=production", "JWT_SECRET=hunter2"}},
		{"staging, 31 characters", "JWT_SECRET", []string{"SPOOLED_ENV=staging", "JWT_SECRET=" + strings.Repeat("s", 31)}},
		{"production, GITHUB_WEBHOOK_SECRET of 15", "GITHUB_WEBHOOK_SECRET", []string{"SPOOLED_ENV=production", "JWT_SECRET=" + strong, "GITHUB_WEBHOOK_SECRET=" + strings.Repeat("g", 15)}},
		{"production, STRIPE_WEBHOOK_SECRET of 15", "STRIPE_WEBHOOK_SECRET", []string{"SPOOLED_ENV=production", "JWT_SECRET=" + strong, "STRIPE_WEBHOOK_SECRET=" + strings.Repeat("w", 15)}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, bin, "serve")
		cmd.Env = serverEnv(append([]string{"DATABASE_URL=" + dbURL}, c.env...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		timedOut := ctx.Err() != nil
		cancel()
		if timedOut {
			t.Fatalf("%s: still running after 30s (it should refuse to start)\n%s", c.name, stderr.String())
		}
		if err == nil || cmd.ProcessState.ExitCode() == 0 {
			t.Fatalf("%s: exited 0, want a refusal\n%s", c.name, stderr.String())
		}
		if !strings.Contains(stderr.String(), c.variable) {
			t.Fatalf("%s: stderr does not name %s:\n%s", c.name, c.variable, stderr.String())
		}
		if strings.Contains(stderr.String(), "spooled listening") {
			t.Fatalf("%s: it listened before refusing:\n%s", c.name, stderr.String())
		}
		t.Logf("%s: exit %d: %s", c.name, cmd.ProcessState.ExitCode(), strings.TrimSpace(stderr.String()))
	}

	// The control: production with a 32-character secret serves, and stops
	// cleanly on SIGTERM.
	p := startServer(t, bin, "production", "DATABASE_URL="+dbURL, "SPOOLED_ENV=production", "JWT_SECRET="+strong,
		"GITHUB_WEBHOOK_SECRET="+strings.Repeat("g", 16), "STRIPE_WEBHOOK_SECRET="+strings.Repeat("w", 16))
	if !strings.Contains(p.logs(), "environment=production") {
		t.Fatalf("not serving in production:\n%s", p.logs())
	}
	if st, _ := callAPI(p.base, "", "GET", "/health", nil); st != 200 {
		t.Fatalf("GET /health: %d", st)
	}
	p.term(t)
	p.waitExit(t, 30*time.Second)
}
