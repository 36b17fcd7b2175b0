package m2mtoken

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestFileCacheRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	c := NewFileCache(dir)
	ctx := context.Background()
	if e, err := c.Get(ctx, "m2mtoken-abc"); e != nil || err != nil {
		t.Fatalf("empty cache: %v %v", e, err)
	}
	in := &Entry{AccessToken: "tok", TokenType: "Bearer", IssuedAt: startTime(), Expiry: startTime().Add(time.Hour), Extra: map[string]any{"scope": "a b"}}
	if err := c.Set(ctx, "m2mtoken-abc", in); err != nil {
		t.Fatal(err)
	}
	out, err := c.Get(ctx, "m2mtoken-abc")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, out); diff != "" {
		t.Fatalf("(-in +out):\n%s", diff)
	}
	st, _ := os.Stat(dir)
	if st.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v", st.Mode().Perm())
	}
	st, _ = os.Stat(filepath.Join(dir, "m2mtoken-abc.json"))
	if st.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v", st.Mode().Perm())
	}
	files, _ := os.ReadDir(dir)
	for _, f := range files {
		if strings.Contains(f.Name(), ".tmp") {
			t.Errorf("temporary file left: %s", f.Name())
		}
	}
}

func TestFileCacheUnsafeKeysAreHashed(t *testing.T) {
	dir := t.TempDir()
	c := NewFileCache(dir)
	e := &Entry{AccessToken: "t", IssuedAt: startTime(), Expiry: startTime().Add(time.Hour)}
	if err := c.Set(context.Background(), "../../etc/passwd", e); err != nil {
		t.Fatal(err)
	}
	files, _ := os.ReadDir(dir)
	if len(files) != 1 || !strings.HasPrefix(files[0].Name(), "k-") {
		t.Fatalf("files %v", files)
	}
	if got, _ := c.Get(context.Background(), "../../etc/passwd"); got == nil {
		t.Fatal("hashed key not found again")
	}
}

func TestFileCacheCorruptIsAMissAndReplaced(t *testing.T) {
	for name, content := range map[string]string{
		"garbage": "\x00\x01 not json", "truncated": `{"v":1,"entry":{"access_token":"x"`, "wrong version": `{"v":9,"entry":{}}`,
		"no token":            `{"v":1,"entry":{"access_token":"","issued_at":"2030-01-01T00:00:00Z","expiry":"2030-01-02T00:00:00Z"}}`,
		"expiry before issue": `{"v":1,"entry":{"access_token":"x","issued_at":"2030-01-02T00:00:00Z","expiry":"2030-01-01T00:00:00Z"}}`,
		"null entry":          `{"v":1,"entry":null}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			e := newEndpoint(t)
			logs := &logBuffer{}
			s, _ := testSource(t, e, func(c *Config) { c.Cache = NewFileCache(dir); c.Logger = logs.logger() })
			os.WriteFile(filepath.Join(dir, s.CacheKey()+".json"), []byte(content), 0o600)
			tok, err := s.Token()
			if err != nil || tok.AccessToken != "tok-1" {
				t.Fatalf("%v %v", tok, err)
			}
			if !strings.Contains(logs.String(), "corrupt") {
				t.Errorf("corrupt file not logged:\n%s", logs)
			}
			if got, err := NewFileCache(dir).Get(context.Background(), s.CacheKey()); err != nil || got.AccessToken != "tok-1" {
				t.Errorf("not replaced: %v %v", got, err)
			}
		})
	}
}

func TestFileCacheHoldsNoSecret(t *testing.T) {
	dir := t.TempDir()
	e := newEndpoint(t)
	s, _ := testSource(t, e, func(c *Config) { c.Cache = NewFileCache(dir) })
	s.Token()
	files, _ := os.ReadDir(dir)
	for _, f := range files {
		b, _ := os.ReadFile(filepath.Join(dir, f.Name()))
		if strings.Contains(string(b), testSecret) || strings.Contains(f.Name(), "client-1") {
			t.Fatalf("%s reveals the secret or client", f.Name())
		}
	}
}

// TestFileCacheOneRequestForOverlappingSources: eight sources, each with its
// own FileCache on one directory (as eight overlapping runs would have),
// start together and make one token request between them.
func TestFileCacheOneRequestForOverlappingSources(t *testing.T) {
	dir := t.TempDir()
	e := newEndpoint(t)
	gate := make(chan struct{})
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool { <-gate; return false })
	var srcs []*TokenSource
	for i := 0; i < 8; i++ {
		s, err := New(Config{TokenURL: e.URL + "/oauth/token", ClientID: "client-1", ClientSecret: testSecret, Audience: "a", Cache: NewFileCache(dir)})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		srcs = append(srcs, s)
	}
	var wg sync.WaitGroup
	toks := make([]string, len(srcs))
	for i, s := range srcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := s.Token()
			if err != nil {
				t.Error(err)
				return
			}
			toks[i] = tok.AccessToken
		}()
	}
	eventually(t, "the first request", func() bool { return e.count() == 1 })
	close(gate)
	wg.Wait()
	if e.count() != 1 {
		t.Fatalf("%d token requests, want 1", e.count())
	}
	for _, tk := range toks {
		if tk != "tok-1" {
			t.Fatalf("tokens %v", toks)
		}
	}
}

func TestEntryBinary(t *testing.T) {
	in := &Entry{AccessToken: "tok", TokenType: "Bearer", IssuedAt: startTime(), Expiry: startTime().Add(time.Hour), Extra: map[string]any{"scope": "a b"}}
	b, err := in.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var out Entry
	if err := out.UnmarshalBinary(b); err != nil || !cmp.Equal(&out, in) {
		t.Fatalf("round trip: %v %v", &out, err)
	}
	for name, b := range map[string]string{
		"not JSON":        "{",
		"unknown version": `{"v":2,"entry":{"access_token":"x","issued_at":"2030-01-01T00:00:00Z","expiry":"2030-01-02T00:00:00Z"}}`,
		"no usable token": `{"v":1,"entry":{"access_token":"","issued_at":"2030-01-01T00:00:00Z","expiry":"2030-01-02T00:00:00Z"}}`,
		"over 1 MiB":      strings.Repeat(" ", 1<<20+1),
	} {
		var e Entry
		if err := e.UnmarshalBinary([]byte(b)); err == nil || !strings.Contains(err.Error(), name) || e.AccessToken != "" {
			t.Errorf("%s: err %v, entry %v", name, err, &e)
		}
	}
}

var _ Leaser = (*FileCache)(nil)

// TestFileCacheLease: the flock lease is exclusive, records its status
// for waiters, and is free again once released.
func TestFileCacheLease(t *testing.T) {
	if !haveLocks {
		t.Skip("no file locks on this platform")
	}
	c := NewFileCache(t.TempDir())
	ctx := context.Background()
	l, ok, err := c.Lease(ctx, "k", time.Second)
	if !ok || err != nil {
		t.Fatal(ok, err)
	}
	if _, ok, _ := NewFileCache(c.dir).Lease(ctx, "k", time.Second); ok {
		t.Fatal("a second lease granted while the first is held")
	}
	if held, err := l.Keep(ctx, time.Second, "token request failed: EOF\nsecond line"); !held || err != nil {
		t.Fatal(held, err)
	}
	info, err := c.LeaseInfo(ctx, "k")
	if err != nil || info == nil || info.Status != "token request failed: EOF second line" || info.Age > time.Minute || info.Remaining != 0 {
		t.Fatalf("info %+v %v", info, err)
	}
	l.Release(ctx)
	if info, err := c.LeaseInfo(ctx, "k"); info != nil || err != nil {
		t.Fatalf("after release: %+v %v", info, err)
	}
	if held, _ := l.Keep(ctx, time.Second, ""); held {
		t.Fatal("a released lease kept")
	}
	l2, ok, _ := c.Lease(ctx, "k", time.Second)
	if !ok {
		t.Fatal("lease not free after release")
	}
	l2.Release(ctx)
}

// TestFileCacheRemovesStaleTemps: a writer killed between create and rename
// leaves a temporary file; a later Set removes it. (On Unix at once, as
// TestFileCacheKeepsLiveWritersTemps shows; elsewhere once a minute old.)
func TestFileCacheRemovesStaleTemps(t *testing.T) {
	dir := t.TempDir()
	c := NewFileCache(dir)
	old := filepath.Join(dir, "m2mtoken-k.json.tmp-123")
	os.WriteFile(old, []byte("{"), 0o600)
	os.Chtimes(old, time.Now().Add(-2*time.Minute), time.Now().Add(-2*time.Minute))
	if err := c.Set(context.Background(), "m2mtoken-k", &Entry{AccessToken: "t", IssuedAt: startTime(), Expiry: startTime().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(old); err == nil {
		t.Error("a stale temporary file was left")
	}
}
