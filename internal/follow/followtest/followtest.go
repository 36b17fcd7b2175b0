// Package followtest changes files the three ways programs change the
// files a process follows, for tests: a Kubernetes volume's ..data swap,
// a rename over the file, a rewrite in place. Tests only.
package followtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/clock"
)

// Ways are the ways of changing a file that Change takes.
var Ways = []string{"kubernetes", "rename", "in place"}

// File is a file a test changes one of the Ways.
type File struct {
	t    testing.TB
	way  string
	dir  string
	name string
	gen  int
	// Path is the path a follower reads.
	Path string
}

// New writes content to a new file named name in a temporary directory,
// laid out for way: for "kubernetes", as the kubelet lays out a Secret or
// projected volume (NAME -> ..data/NAME, ..data -> ..TIMESTAMP).
func New(t testing.TB, way, name, content string) *File {
	t.Helper()
	f := &File{t: t, way: way, dir: t.TempDir(), name: name}
	f.Path = filepath.Join(f.dir, name)
	switch way {
	case "kubernetes":
		f.swap(content)
		if err := os.Symlink(filepath.Join("..data", name), f.Path); err != nil {
			t.Fatal(err)
		}
	case "rename", "in place":
		Write(t, f.Path, content)
	default:
		t.Fatalf("followtest: no way %q", way)
	}
	return f
}

// Change gives the file content, its way.
func (f *File) Change(content string) {
	f.t.Helper()
	switch f.way {
	case "kubernetes":
		f.swap(content)
	case "rename":
		RenameOver(f.t, f.Path, content)
	default:
		RewriteInPlace(f.t, f.Path, content)
	}
}

// swap writes a new timestamped directory, points ..data_tmp at it,
// renames that over ..data and removes the old directory, as the
// kubelet's atomic writer does.
func (f *File) swap(content string) {
	t := f.t
	f.gen++
	ts := filepath.Join(f.dir, fmt.Sprintf("..2026_12_05_10_00_%02d.%09d", f.gen%60, f.gen))
	if err := os.Mkdir(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	Write(t, filepath.Join(ts, f.name), content)
	data := filepath.Join(f.dir, "..data")
	old, _ := os.Readlink(data)
	if err := os.Symlink(filepath.Base(ts), data+"_tmp"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(data+"_tmp", data); err != nil {
		t.Fatal(err)
	}
	if old != "" {
		os.RemoveAll(filepath.Join(f.dir, old))
	}
}

// Write writes content to path (mode 0600), or fails the test.
func Write(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// RenameOver writes content to a new file beside path and renames it
// over path, as Vault Agent renders a template.
func RenameOver(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	Write(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// RewriteInPlace truncates path and writes content into the same file.
func RewriteInPlace(t testing.TB, path, content string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
}

// SettleGate is a clock whose waits of Settle (a follower's wait between
// two reads of a changed file) can be held, for as long as a test needs:
// a reader caught there holds the file's turn, as a file that keeps
// changing or a slow mount would hold it. Other waits go to Clock.
type SettleGate struct {
	clock.Clock
	Settle time.Duration

	mu      sync.Mutex
	gate    chan struct{} // closed by release; nil while not holding
	entered chan struct{}
}

// Hold makes the settle waits that begin from now block until release is
// called (or their context is done); entered receives once for each wait
// held. release may be called more than once.
func (g *SettleGate) Hold() (entered <-chan struct{}, release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	gate, in := make(chan struct{}), make(chan struct{}, 64)
	g.gate, g.entered = gate, in
	var once sync.Once
	return in, func() {
		once.Do(func() {
			g.mu.Lock()
			if g.gate == gate {
				g.gate = nil
			}
			g.mu.Unlock()
			close(gate)
		})
	}
}

// Sleep holds a wait of Settle while Hold's gate is shut, then sleeps on
// Clock.
func (g *SettleGate) Sleep(ctx context.Context, d time.Duration) error {
	g.mu.Lock()
	gate, entered := g.gate, g.entered
	g.mu.Unlock()
	if gate != nil && d == g.Settle {
		select {
		case entered <- struct{}{}:
		default:
		}
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return g.Clock.Sleep(ctx, d)
}

// Returns fails the test if fn, which must not wait for another caller's
// read held at a SettleGate (or for what that read tells), has not
// returned within a generous bound: it would wait for ever otherwise.
func Returns(t testing.TB, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s waits for another caller's read of the file, or for what that read tells", what)
	}
}
