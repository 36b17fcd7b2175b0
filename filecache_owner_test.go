//go:build unix

package m2mtoken

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nobody is the user that plays the other local user in these tests.
const nobody = 65534

// needRoot skips a test that gives files to another user unless it runs
// as root. It skips with CI set too: not being root is not a missing
// program that CI should have installed, and CI's runs as root do run it.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a directory to another user (chown to 65534); run the tests as root to replay these attacks")
	}
}

// TestFileCacheRefusesAForeignDirectory: another local user who owns the
// cache directory, or who may write it through its group or others bits
// (even with the sticky bit, as /tmp), plants an entry for root's run to
// read as its token. Every operation must refuse such a directory with an
// error that names it and says why, and the source must fetch its own
// token instead.
func TestFileCacheRefusesAForeignDirectory(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	planted := &Entry{AccessToken: "ATTACKER-TOKEN", TokenType: "Bearer", IssuedAt: time.Now(), Expiry: time.Now().Add(time.Hour)}
	for name, prepare := range map[string]func(dir string) error{
		"owned by another user": func(dir string) error { return os.Chown(dir, nobody, nobody) },
		"group-writable":        func(dir string) error { return os.Chmod(dir, 0o770) },
		"world-writable":        func(dir string) error { return os.Chmod(dir, 0o777) },
		"sticky and world-writable, like /tmp": func(dir string) error {
			return os.Chmod(dir, 0o777|os.ModeSticky)
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "cache")
			c := NewFileCache(dir)
			if err := c.Set(ctx, "k", planted); err != nil {
				t.Fatal(err)
			}
			if err := prepare(dir); err != nil {
				t.Fatal(err)
			}
			e, err := c.Get(ctx, "k")
			if e != nil || err == nil || !strings.Contains(err.Error(), dir) {
				t.Fatalf("Get: %v, %v; want an error naming %s", e, err, dir)
			}
			t.Logf("Get: %v", err)
			if strings.Contains(name, "sticky") && !strings.Contains(err.Error(), "(mode 1777)") {
				t.Errorf("Get: %v; want the mode with its sticky bit, 1777", err)
			}
			if err := c.Set(ctx, "k", planted); err == nil {
				t.Error("Set: no error")
			}
			if _, ok, err := c.Lease(ctx, "k", time.Second); ok || err == nil {
				t.Errorf("Lease: %v, %v", ok, err)
			}
			if err := c.Check(); err == nil {
				t.Error("Check: no error")
			}
			// A source with this cache fetches its own token.
			e2 := newEndpoint(t)
			s, _ := testSource(t, e2, func(cfg *Config) { cfg.Cache = c })
			tok, err := s.Token()
			if err != nil || tok.AccessToken == planted.AccessToken {
				t.Fatalf("source: %v, %v", tok, err)
			}
		})
	}
}

// TestFileCacheFollowsNoLink: another user plants a KEY.lock symlink in
// the cache directory, so that root's run opening its lock truncates the
// file the link points at, or plants an entry that is a link or that the
// other user owns. No link may be followed and no such entry read.
func TestFileCacheFollowsNoLink(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := NewFileCache(dir)
	if err := os.Symlink(victim, filepath.Join(dir, "k.lock")); err != nil {
		t.Fatal(err)
	}
	l, ok, err := c.Lease(ctx, "k", time.Second)
	if ok {
		l.Release(ctx)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Fatalf("the lock's symlink was followed: the victim holds %q", b)
	}
	if ok || err == nil {
		t.Fatalf("Lease through a symlink: %v, %v", ok, err)
	}
	if _, err := c.LeaseInfo(ctx, "k"); err == nil {
		t.Error("LeaseInfo through a symlink: no error")
	}

	// An entry that is a link to a file the attacker made, or a file of
	// another user's.
	other := NewFileCache(t.TempDir())
	planted := &Entry{AccessToken: "ATTACKER-TOKEN", TokenType: "Bearer", IssuedAt: time.Now(), Expiry: time.Now().Add(time.Hour)}
	if err := other.Set(ctx, "k", planted); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(other.dir, "k.json"), filepath.Join(dir, "k.json")); err != nil {
		t.Fatal(err)
	}
	if e, err := c.Get(ctx, "k"); e != nil || err == nil {
		t.Fatalf("Get through a symlink: %v, %v", e, err)
	}
	os.Remove(filepath.Join(dir, "k.json"))
	if err := c.Set(ctx, "k", planted); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(dir, "k.json"), nobody, nobody); err != nil {
		t.Fatal(err)
	}
	if e, err := c.Get(ctx, "k"); e != nil || err == nil || !strings.Contains(err.Error(), "owned by") {
		t.Fatalf("Get of another user's file: %v, %v", e, err)
	} else {
		t.Logf("Get: %v", err)
	}
}

// TestFileCacheKeepsLiveWritersTemps: a temporary file whose writer still
// holds its lock stays, however old; one whose writer is gone is removed
// by the next Set, however young.
func TestFileCacheKeepsLiveWritersTemps(t *testing.T) {
	dir := t.TempDir()
	c := NewFileCache(dir)
	live := filepath.Join(dir, "m2mtoken-k.json.tmp-123")
	dead := filepath.Join(dir, "m2mtoken-k.json.tmp-456")
	os.WriteFile(dead, []byte("{"), 0o600)
	f, err := os.OpenFile(live, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(live, time.Now().Add(-time.Hour), time.Now().Add(-time.Hour))
	if err := c.Set(context.Background(), "m2mtoken-k", &Entry{AccessToken: "t", IssuedAt: startTime(), Expiry: startTime().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dead); err == nil {
		t.Error("a dead writer's temporary file was left")
	}
	if _, err := os.Stat(live); err != nil {
		t.Error("a live writer's temporary file was removed")
	}
}
