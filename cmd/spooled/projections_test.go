package main_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spooled-go/spooled/commands"
	"github.com/spooled-go/spooled/events"
	"github.com/spooled-go/spooled/internal/testdb"
)

// TestProjectionsCLI: verify passes on a sound database, fails (exit 1,
// naming the job) once a live row is corrupted, and a rebuild (with its
// write pause reported) brings the projections back to the log's truth.
func TestProjectionsCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "spooled")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	pool, dbURL := testdb.NewWithURL(t, testdb.Options{})
	ctx := context.Background()
	svc := commands.New(pool, nil, nil, commands.Defaults{MaxRetries: 3, TimeoutSecs: 300, LeaseSecs: 30,
		MaxPayload: 1 << 20, KeyPrefix: "sk_test_", Registration: "open"})
	org, err := svc.CreateOrganization(ctx, commands.NewOrganization{Name: "Cli", Slug: "cli"})
	if err != nil {
		t.Fatal(err)
	}
	actor := commands.Actor{OrgID: org.Organization.ID, Name: events.ActorAPIKey(org.Key.Key.ID)}
	res, err := svc.Enqueue(ctx, actor, []commands.NewJob{{QueueName: "q", Payload: json.RawMessage(`{}`)}, {QueueName: "q", Payload: json.RawMessage(`{}`)}})
	if err != nil {
		t.Fatal(err)
	}

	run := func(args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return string(out), code
	}
	if out, code := run("projections", "verify"); code != 0 || !strings.Contains(out, "match the log") {
		t.Fatalf("verify on a sound database: exit %d\n%s", code, out)
	}
	victim := res[1].ID.String()
	if _, err := pool.Exec(ctx, "UPDATE jobs SET priority = 42 WHERE id = $1", victim); err != nil {
		t.Fatal(err)
	}
	if out, code := run("projections", "verify"); code == 0 || !strings.Contains(out, victim) {
		t.Fatalf("verify after corruption: exit %d, want non-zero naming %s\n%s", code, victim, out)
	}
	out, code := run("projections", "rebuild")
	if code != 0 || !strings.Contains(out, "writes paused for") || !strings.Contains(out, "queue_stats: rebuilt") {
		t.Fatalf("rebuild: exit %d\n%s", code, out)
	}
	if out, code := run("projections", "verify"); code != 0 {
		t.Fatalf("verify after rebuild: exit %d\n%s", code, out)
	}
	if out, code := run("projections", "rebuild", "nope"); code == 0 || !strings.Contains(out, "unknown projection") {
		t.Fatalf("unknown projection: exit %d\n%s", code, out)
	}
}
