package follow

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/clock"
	"github.com/m2mtoken/m2mtoken/internal/follow/followtest"
)

// stepClock is a clock whose settle waits run step (a writer's next
// move, between two reads) instead of waiting.
type stepClock struct {
	clock.Real
	mu    sync.Mutex
	steps []func()
	waits int
}

func (c *stepClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	c.waits++
	var step func()
	if len(c.steps) > 0 {
		step, c.steps = c.steps[0], c.steps[1:]
	}
	c.mu.Unlock()
	if step != nil {
		step()
	}
	return nil
}

func (c *stepClock) then(steps ...func()) {
	c.mu.Lock()
	c.steps = append(c.steps, steps...)
	c.mu.Unlock()
}

func expect(t *testing.T, s Snapshot, content string, version uint64, errWant string) {
	t.Helper()
	if string(s.Content) != content || s.Version != version {
		t.Errorf("snapshot %q version %d, want %q version %d (err %v)", s.Content, s.Version, content, version, s.Err)
	}
	switch {
	case errWant == "" && s.Err != nil:
		t.Errorf("error %v", s.Err)
	case errWant != "" && (s.Err == nil || !strings.Contains(s.Err.Error(), errWant)):
		t.Errorf("error %v, want %q", s.Err, errWant)
	}
}

// TestFollowsEveryWayOfChanging: a Kubernetes ..data swap, a rename over
// the file and a rewrite in place are each taken, once; an unchanged file
// is read once per Read, with no wait.
func TestFollowsEveryWayOfChanging(t *testing.T) {
	ctx := context.Background()
	for _, way := range followtest.Ways {
		t.Run(way, func(t *testing.T) {
			file := followtest.New(t, way, "secret", "one")
			clk := &stepClock{}
			f := New(file.Path, Options{Clock: clk})
			expect(t, f.Read(ctx), "one", 1, "")
			waits := clk.waits
			expect(t, f.Read(ctx), "one", 1, "")
			if clk.waits != waits {
				t.Errorf("an unchanged file waited %d times", clk.waits-waits)
			}
			for i, content := range []string{"two", "three, longer", "four"} {
				file.Change(content)
				expect(t, f.Read(ctx), content, uint64(i+2), "")
				expect(t, f.Read(ctx), content, uint64(i+2), "")
			}
			if got := f.Last(); string(got.Content) != "four" {
				t.Errorf("Last: %q", got.Content)
			}
		})
	}
}

// TestNeverHalfWritten: a reader that catches a rewrite in place empty or
// half-written does not take it; the content is taken when two reads
// agree.
func TestNeverHalfWritten(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "secret")
	followtest.Write(t, path, "old-secret")
	clk := &stepClock{}
	f := New(path, Options{Clock: clk})
	expect(t, f.Read(ctx), "old-secret", 1, "")

	// Caught truncated: the writer writes half, then the rest, while the
	// reader waits between its reads.
	followtest.RewriteInPlace(t, path, "")
	clk.then(
		func() { followtest.RewriteInPlace(t, path, "new-se") },
		func() { followtest.RewriteInPlace(t, path, "new-secret") },
	)
	expect(t, f.Read(ctx), "new-secret", 2, "")

	// A writer slower than the reads: after a few tries the old content
	// stays, with an error, and the next Read takes the finished file.
	followtest.RewriteInPlace(t, path, "y")
	var steps []func()
	for i := range maxTries {
		steps = append(steps, func() { followtest.RewriteInPlace(t, path, strings.Repeat("x", i+1)) })
	}
	clk.then(steps...)
	expect(t, f.Read(ctx), "new-secret", 2, "kept changing")
	expect(t, f.Read(ctx), strings.Repeat("x", maxTries), 3, "")

	// A Check refuses a content that does not parse: the last good one
	// stays.
	g := New(path, Options{Clock: clk, Check: func(b []byte) error {
		if !strings.HasSuffix(string(b), "END") {
			return errors.New("cut short")
		}
		return nil
	}})
	followtest.Write(t, path, "key END")
	expect(t, g.Read(ctx), "key END", 1, "")
	followtest.Write(t, path, "key2 E")
	expect(t, g.Read(ctx), "key END", 1, path+": cut short")
	followtest.Write(t, path, "key2 END")
	expect(t, g.Read(ctx), "key2 END", 2, "")
}

// TestKeepsLastGood: a file that vanishes, turns empty, grows too large
// or turns into something else keeps the last good content, with an
// error that names the file; a file that comes back is taken again.
func TestKeepsLastGood(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "secret")
	followtest.Write(t, path, "good")
	clk := &stepClock{}
	f := New(path, Options{Clock: clk, Limit: 64})
	expect(t, f.Read(ctx), "good", 1, "")

	os.Remove(path)
	s := f.Read(ctx)
	expect(t, s, "good", 1, path+": no such file or directory")
	if !errors.Is(s.Err, fs.ErrNotExist) {
		t.Errorf("%v is not ErrNotExist", s.Err)
	}
	waits := clk.waits
	f.Read(ctx)
	if clk.waits != waits {
		t.Error("a failure already reported was waited on again")
	}
	followtest.Write(t, path, "good")
	expect(t, f.Read(ctx), "good", 1, "")

	followtest.Write(t, path, "")
	expect(t, f.Read(ctx), "good", 1, path+" is empty")
	followtest.Write(t, path, strings.Repeat("x", 65))
	expect(t, f.Read(ctx), "good", 1, path+" holds more than 64 bytes, the most such a file may hold")
	os.Remove(path)
	os.Mkdir(path, 0o700)
	expect(t, f.Read(ctx), "good", 1, "is not a regular file")
	os.Remove(path)
	if makeFIFO(path) == nil {
		// A FIFO with no writer: refused, without blocking.
		expect(t, f.Read(ctx), "good", 1, "is not a regular file but a FIFO")
		os.Remove(path)
	}
	os.Symlink("nowhere", path)
	expect(t, f.Read(ctx), "good", 1, "no such file or directory")
	os.Remove(path)
	followtest.Write(t, path, "new")
	expect(t, f.Read(ctx), "new", 2, "")

	// A done context ends the wait and changes nothing.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	followtest.Write(t, path, "newer")
	expect(t, f.Read(cctx), "new", 2, "context canceled")
	expect(t, f.Read(ctx), "newer", 3, "")
}

// TestConcurrentReads: readers and a writer renaming over the file; every
// snapshot holds one whole content that was written, under -race.
func TestConcurrentReads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret")
	followtest.Write(t, path, "v-000")
	f := New(path, Options{Settle: time.Microsecond})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				s := f.Read(context.Background())
				if s.Version > 0 && (len(s.Content) != 5 || !strings.HasPrefix(string(s.Content), "v-")) {
					t.Errorf("snapshot %q", s.Content)
					return
				}
			}
		})
	}
	for i := range 200 {
		followtest.RenameOver(t, path, "v-"+strings.Repeat("0", 3-len(itoa(i)))+itoa(i))
	}
	close(stop)
	wg.Wait()
	if s := f.Read(context.Background()); string(s.Content) != "v-199" {
		t.Errorf("last %q", s.Content)
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}
