package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	for _, content := range []string{"one", "two, longer"} {
		if err := Write(path, "f.tmp-*", []byte(content), -1); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil || string(b) != content {
			t.Fatalf("read %q, %v; want %q", b, err, content)
		}
		fi, _ := os.Stat(path)
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v", fi.Mode())
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}
	// A directory that does not exist: an error, and nothing written.
	if err := Write(filepath.Join(dir, "no", "f"), "f.tmp-*", []byte("x"), -1); err == nil {
		t.Fatal("no error for a missing directory")
	}
}

// TestWriteExpiring: the file's modification time is the expiry given,
// so that a sweep can tell expired files by a stat.
func TestWriteExpiring(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	expiry := time.Now().Add(24 * time.Hour).Truncate(time.Second)
	if err := WriteExpiring(path, "f.tmp-*", []byte("x"), expiry); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || !fi.ModTime().Equal(expiry) || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mtime %v, mode %v (%v); want %v, 0600", fi.ModTime(), fi.Mode(), err, expiry)
	}
}
