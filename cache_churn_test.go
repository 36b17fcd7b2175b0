package m2mtoken

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// These tests churn the caches with requests that keep changing, as a
// pool whose organizations come from its callers does: MemoryCache kept
// every token for ever, and FileCache two files per request (3,000
// organizations left 6,000 files).

// TestMemoryCacheBounded: 30,000 distinct keys leave at most MaxEntries
// tokens (10,000 by default); expired tokens go first, then those that
// expire soonest; the zero value works.
func TestMemoryCacheBounded(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	live := func(d time.Duration) *Entry {
		return &Entry{AccessToken: "t", TokenType: "Bearer", IssuedAt: now, Expiry: now.Add(d)}
	}
	c := NewMemoryCache()
	most := 0
	for i := range 30000 {
		if err := c.Set(ctx, fmt.Sprintf("m2mtoken-%d", i), live(time.Hour+time.Duration(i)*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		most = max(most, len(c.m))
	}
	t.Logf("30,000 distinct keys: %d entries at most, %d at the end", most, len(c.m))
	if most > defaultMemoryCacheEntries {
		t.Fatalf("%d entries, want at most %d", most, defaultMemoryCacheEntries)
	}
	if e, _ := c.Get(ctx, "m2mtoken-29999"); e == nil {
		t.Fatal("the newest token was dropped")
	}
	if e, _ := c.Get(ctx, "m2mtoken-0"); e != nil {
		t.Fatal("the token that expires soonest was kept")
	}

	// Expired tokens go first; a token that expires later stays.
	var z MemoryCache // the zero value
	z.MaxEntries = 100
	z.Set(ctx, "keep", live(time.Minute))
	for i := range 99 {
		z.Set(ctx, fmt.Sprintf("old-%d", i), &Entry{AccessToken: "t", IssuedAt: now.Add(-2 * time.Hour), Expiry: now.Add(-time.Hour)})
	}
	z.Set(ctx, "new", live(time.Hour))
	if e, _ := z.Get(ctx, "keep"); e == nil || len(z.m) != 2 {
		t.Fatalf("%d entries, keep: %v; want the 99 expired ones dropped", len(z.m), e)
	}

	bad := &MemoryCache{MaxEntries: -1}
	if err := bad.Set(ctx, "k", live(time.Hour)); err == nil || !strings.Contains(err.Error(), "MemoryCache.MaxEntries is negative") {
		t.Fatalf("negative MaxEntries: %v", err)
	}
}

// holdLockEnv names the lock file that the helper process (see
// TestHelperHoldsLock) locks.
const holdLockEnv = "M2MTOKEN_TEST_HOLD_LOCK"

// TestHelperHoldsLock is not a test: run by holdLock as a process of its
// own, it takes the lock named by M2MTOKEN_TEST_HOLD_LOCK as a FileCache
// lease does, says so, and holds it until killed.
func TestHelperHoldsLock(t *testing.T) {
	path := os.Getenv(holdLockEnv)
	if path == "" {
		t.Skip("a helper process of TestFileCacheSweep")
	}
	f, err := tryLock(path)
	if f == nil || err != nil {
		fmt.Println("not locked:", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	select {}
}

// holdLock starts a process that holds the lock at path (as another
// process's lease would), and returns a function that kills it (SIGKILL).
func holdLock(t *testing.T, path string) func() {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHoldsLock$")
	cmd.Env = append(os.Environ(), holdLockEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	kill := func() { once.Do(func() { cmd.Process.Signal(syscall.SIGKILL); cmd.Wait() }) }
	t.Cleanup(kill)
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "locked\n" {
		kill()
		t.Fatalf("the helper process: %q", line)
	}
	return kill
}

// TestFileCacheSweep: 10,000 requests whose tokens expired and 2,000 that
// the endpoint refused (a lock file, no entry) leave nothing once the
// directory is swept; the 100 tokens still valid stay, and so do the
// files of a token whose lock another process holds, until it dies.
func TestFileCacheSweep(t *testing.T) {
	if !haveLocks {
		t.Skip("no file locks on this system")
	}
	ctx := context.Background()
	dir := t.TempDir()
	c := NewFileCache(dir)
	now := time.Now()
	entry := func(expiry time.Time) *Entry {
		return &Entry{AccessToken: "t", TokenType: "Bearer", IssuedAt: expiry.Add(-time.Hour), Expiry: expiry}
	}
	churn := func(key string, e *Entry) {
		l, ok, err := c.Lease(ctx, key, time.Second)
		if !ok || err != nil {
			t.Fatalf("lease %s: %v %v", key, ok, err)
		}
		if e != nil {
			if err := c.Set(ctx, key, e); err != nil {
				t.Fatal(err)
			}
		}
		l.Release(ctx)
	}
	for i := range 10000 {
		churn(fmt.Sprintf("m2mtoken-expired-%d", i), entry(now.Add(-time.Minute)))
	}
	for i := range 2000 {
		churn(fmt.Sprintf("m2mtoken-refused-%d", i), nil)
	}
	for i := range 100 {
		churn(fmt.Sprintf("m2mtoken-live-%d", i), entry(now.Add(time.Hour)))
	}
	churn("m2mtoken-held", entry(now.Add(-time.Minute)))
	kill := holdLock(t, filepath.Join(dir, "m2mtoken-held.lock"))
	// Things that are not the cache's: a link named as an entry, to a
	// file with an entry's name outside the directory; another program's
	// file.
	outside := filepath.Join(t.TempDir(), "m2mtoken-victim.json")
	os.WriteFile(outside, []byte("not the cache's"), 0o600)
	os.Symlink(outside, filepath.Join(dir, "m2mtoken-link.json"))
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o600)
	before := countFiles(t, dir)

	removed := c.sweep(time.Now())
	after := countFiles(t, dir)
	t.Logf("%d files before the sweep (first sweep at the first Lease); %d removed; %d after", before, removed, after)
	if after != 2*100+2+2 {
		t.Fatalf("%d files left, want 204: the live tokens' 200, the held token's 2, the link and notes.txt", after)
	}
	for _, name := range []string{"m2mtoken-live-7.json", "m2mtoken-live-7.lock", "m2mtoken-held.json", "m2mtoken-held.lock", "m2mtoken-link.json", "notes.txt"} {
		if _, err := os.Lstat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if b, err := os.ReadFile(outside); err != nil || string(b) != "not the cache's" {
		t.Fatalf("the link's target: %q %v", b, err)
	}
	// The holder dies: its files go at the next sweep.
	kill()
	c.sweep(time.Now())
	if _, err := os.Lstat(filepath.Join(dir, "m2mtoken-held.json")); err == nil {
		t.Fatal("a dead holder's expired entry was kept")
	}
	// A live token is read and kept even when its file's time says it
	// expired (written by an earlier release, or touched).
	old := time.Now().Add(-time.Hour)
	os.Chtimes(filepath.Join(dir, "m2mtoken-live-7.json"), old, old)
	c.sweep(time.Now())
	if e, err := c.Get(ctx, "m2mtoken-live-7"); e == nil || err != nil {
		t.Fatalf("a live token whose file is old was removed: %v", err)
	}
}

func countFiles(t *testing.T, dir string) int {
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestFileCacheSweepKeepsLeasesExclusive: a sweep removes a lock file
// while holding its lock, while others take and release it. A taker that
// opened the file before its removal locks a file that is gone; it must
// not count as holding the lease beside the one who locked the new file.
func TestFileCacheSweepKeepsLeasesExclusive(t *testing.T) {
	if !haveLocks {
		t.Skip("no file locks on this system")
	}
	dir := t.TempDir()
	c := NewFileCache(dir)
	c.makeDir()
	lock := filepath.Join(dir, "m2mtoken-k.lock")
	var holders, most, taken atomic.Int64
	stop := untilStopped(4, func() {
		f, err := tryLock(lock)
		if err != nil || f == nil {
			return
		}
		n := holders.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		taken.Add(1)
		time.Sleep(50 * time.Microsecond) // a holder's work: long enough for the others to try
		holders.Add(-1)
		unlock(f)
	})
	swept := 0
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		if c.sweepKey("m2mtoken-k", time.Now(), true) > 0 {
			swept++
		}
	}
	stop()
	t.Logf("%d leases taken while the lock file was removed %d times; at most %d holders at once", taken.Load(), swept, most.Load())
	if most.Load() > 1 {
		t.Fatalf("%d holders of one lease at once", most.Load())
	}
	if swept == 0 || taken.Load() == 0 {
		t.Fatalf("nothing raced: %d removals, %d leases", swept, taken.Load())
	}
}
