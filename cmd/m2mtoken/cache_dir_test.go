//go:build unix

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// needRoot skips a test that gives files to another user unless it runs
// as root. It skips with CI set too: not being root is not a missing
// program that CI should have installed, and CI's runs as root do run it.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a directory to another user (chown to 65534); run the tests as root to replay these attacks")
	}
}

// nobody plays the other local user.
const nobody = 65534

// TestTokenRefusesAPlantedCache runs the binary as root against a cache
// directory that another user owns, with a token that user planted in it
// and a KEY.lock symlink to a file of root's: 'm2mtoken token' must refuse
// the directory with a message that names it and says why, print no
// planted token, and leave the link's target untouched.
func TestTokenRefusesAPlantedCache(t *testing.T) {
	needRoot(t)
	s := issuer(t)
	dir := filepath.Join(t.TempDir(), "cache")
	env := tokenEnv(s, dir)
	if r := runBin(t, env, "token"); r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	// The other user plants a token in the entry and owns the directory.
	ents, _ := os.ReadDir(dir)
	var entry, lock string
	for _, e := range ents {
		switch {
		case strings.HasSuffix(e.Name(), ".json"):
			entry = filepath.Join(dir, e.Name())
		case strings.HasSuffix(e.Name(), ".lock"):
			lock = filepath.Join(dir, e.Name())
		}
	}
	if entry == "" || lock == "" {
		t.Fatalf("no entry or lock file in %v", ents)
	}
	b, _ := os.ReadFile(entry)
	var m map[string]any
	json.Unmarshal(b, &m)
	m["entry"].(map[string]any)["access_token"] = "ATTACKER-TOKEN"
	b, _ = json.Marshal(m)
	os.WriteFile(entry, b, 0o600)
	for _, p := range []string{dir, entry, lock} {
		os.Chown(p, nobody, nobody)
	}
	r := runBin(t, env, "token")
	if strings.Contains(r.stdout, "ATTACKER") {
		t.Fatalf("root printed the planted token (exit %d)", r.code)
	}
	if r.code == 0 || !strings.Contains(r.stderr, dir) || !strings.Contains(r.stderr, "owned by user 65534") {
		t.Fatalf("exit %d, stderr %q; want the directory refused, named, with its owner", r.code, r.stderr)
	}
	t.Logf("owned by another user: %s", strings.TrimSpace(r.stderr))

	// A directory of root's own, but one that others may write, holding
	// a planted lock symlink.
	dir2 := filepath.Join(t.TempDir(), "cache")
	env2 := tokenEnv(s, dir2)
	if r := runBin(t, env2, "token"); r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("precious"), 0o600)
	lock2 := filepath.Join(dir2, filepath.Base(lock))
	os.Remove(lock2)
	os.Remove(filepath.Join(dir2, filepath.Base(entry)))
	os.Symlink(victim, lock2)
	os.Chmod(dir2, 0o777)
	r = runBin(t, env2, "token")
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Fatalf("the planted lock symlink was followed: the victim holds %q", b)
	}
	if r.code == 0 || !strings.Contains(r.stderr, "may be written by its group or others") {
		t.Fatalf("exit %d, stderr %q; want the directory refused for its mode", r.code, r.stderr)
	}
	t.Logf("world-writable: %s", strings.TrimSpace(r.stderr))
	// In a directory that passes, the link itself is refused.
	os.Chmod(dir2, 0o700)
	r = runBin(t, env2, "token", "--verbose")
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Fatalf("the planted lock symlink was followed: the victim holds %q", b)
	}
	if !strings.Contains(r.stderr, "symbolic link") {
		t.Fatalf("exit %d, stderr %q; want the link named as refused", r.code, r.stderr)
	}
}
