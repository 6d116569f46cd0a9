package sql

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"strings"
	"testing"
)

// TestMigrationsAreImmutable: a migration a database has applied is never
// applied again, so editing it changes nothing for that database and
// everything for a fresh one (an edited 0010 once created a function that
// upgraded databases never got, and 0013 called it). migrations.sum holds
// the SHA-256 of every migration; a new one is added there, an old one is
// never changed: write a new migration instead.
func TestMigrationsAreImmutable(t *testing.T) {
	f, err := os.Open("migrations.sum")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("migrations.sum: malformed line %q", sc.Text())
		}
		want[name] = sum
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	names, err := fs.Glob(Migrations, "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		body, err := Migrations.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(body)
		got := hex.EncodeToString(h[:])
		switch sum, listed := want[name]; {
		case !listed:
			t.Errorf("%s is not in migrations.sum: add the line %q", name, got+"  "+name)
		case sum != got:
			t.Errorf("%s differs from the version in migrations.sum: a migration is never edited once it exists; write a new one", name)
		}
		delete(want, name)
	}
	for name := range want {
		t.Errorf("migrations.sum lists %s, which is gone: a migration is never removed", name)
	}
}
