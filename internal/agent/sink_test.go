// File sinks: what a sink holds, its mode, no temporary file left.

package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

func TestWriteSink(t *testing.T) {
	p := filepath.Join(t.TempDir(), "token")
	os.WriteFile(p, []byte("old"), 0o644)
	if err := writeSinks([]string{p}, &oauth2.Token{AccessToken: "abc.def"}, -1); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	info, _ := os.Stat(p)
	if string(b) != "abc.def" || info.Mode().Perm() != 0o600 {
		t.Fatalf("%q %v", b, info.Mode())
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
	if err := writeSinks([]string{filepath.Join(t.TempDir(), "gone", "token")}, &oauth2.Token{AccessToken: "x"}, -1); err == nil || !strings.Contains(err.Error(), "sink ") {
		t.Fatalf("error %v", err)
	}
}
