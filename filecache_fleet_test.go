//go:build unix

package m2mtoken

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/fleet"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// TestFileCacheFleet: 6 processes (internal/fleet/filechild, built once)
// share a file cache directory and call a protected API through
// src.Client(). The process holding the flock lease is killed with SIGKILL
// in the middle of its fetch, again and again, and replaced; the cache
// file is cut in half once, as a torn copy would leave it. Goals: no
// failed call; a killed holder's lock is taken over at once (the kernel
// drops it); the torn file is replaced; a replacement started while the
// file holds a usable token serves its first call at once.
func TestFileCacheFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes for about 20 s; run without -short")
	}
	const aud, latency = "https://api.files/", time.Second
	iss := m2mtest.NewServer(m2mtest.Client{ID: "files", Secret: testSecret, Audiences: []string{aud}})
	defer iss.Close()
	iss.SetTokenLifetime(4 * time.Second)
	iss.SetLatency(latency)
	api := fleet.NewAPI(t, iss, aud)
	dir := t.TempDir()
	bin := fleet.Build(t, "github.com/m2mtoken/m2mtoken/internal/fleet/filechild")
	f := fleet.New(t, bin, "-token-url", iss.TokenURL(), "-client-id", "files", "-secret", testSecret,
		"-audience", aud, "-api", api.URL, "-dir", dir, "-call-timeout", "20s")
	for i := 0; i < 6; i++ {
		f.Start()
	}
	f.Warm(t) // kills start once the fleet has its first token
	// The fleet's key covers its credential: compute it with the same
	// secret and cache, as the children do.
	probe, err := New(Config{TokenURL: iss.TokenURL(), ClientID: "files", ClientSecret: testSecret, Audience: aud, Cache: NewFileCache(dir)})
	if err != nil {
		t.Fatal(err)
	}
	key := probe.CacheKey()
	probe.Close()
	file := filepath.Join(dir, key+".json")
	usable := func() bool {
		e, err := NewFileCache(dir).Get(context.Background(), key)
		return err == nil && e != nil && time.Until(e.Expiry) > 600*time.Millisecond // the skew is 200 ms
	}

	run := 12 * time.Second
	if fleet.Soak() {
		run = 2 * time.Minute
	}
	start := time.Now()
	kills, torn := 0, false
	var firstUsable, firstOther []time.Duration
	for time.Since(start) < run {
		var holder *fleet.Proc
		select {
		case holder = <-f.Leases:
		case <-time.After(15 * time.Second):
			t.Fatalf("no process took the lease for 15 s\n%s", f.Logs())
		}
		if holder.Killed() {
			continue
		}
		time.Sleep(time.Duration(200+rand.IntN(600)) * time.Millisecond) // mid-fetch
		holder.Kill()
		kills++
		f.Start()
		if !torn && kills == 2 {
			// A torn file: the first half of a good one.
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(file, b[:len(b)/2], 0o600)
			torn = true
		}
		// Once a new token is in the file, one more replacement.
		for end := time.Now().Add(5 * time.Second); !usable() && time.Now().Before(end); {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		if idle := f.Idle(); len(f.Live()) > 6 && len(idle) > 0 {
			idle[rand.IntN(len(idle))].Kill()
		}
		u := usable()
		if d := f.Start().First(t, 30*time.Second); u {
			firstUsable = append(firstUsable, d)
		} else {
			firstOther = append(firstOther, d)
		}
		for len(f.Leases) > 0 {
			<-f.Leases
		}
	}
	time.Sleep(500 * time.Millisecond)
	r := f.Report()
	slices.Sort(firstUsable)
	slices.Sort(firstOther)
	t.Logf("%v, %d processes in all, %d holders killed mid-fetch: %d calls, %d failed; longest call %v; %d calls over 100ms; tokens issued %d over %.1f lifetimes; first call of a replacement with a usable token in the file: %v, without: %v",
		time.Since(start).Round(time.Second), r.Processes, kills, r.Calls, r.Failed, r.MaxCall.Round(time.Millisecond), len(r.Slow),
		iss.TokensIssued("files"), time.Since(start).Seconds()/4, firstUsable, firstOther)
	if r.Failed != 0 {
		t.Errorf("%d of %d calls failed: %v", r.Failed, r.Calls, r.Failures)
	}
	if r.MaxCall > latency+3*time.Second {
		t.Errorf("a call stalled %v (endpoint latency %v)", r.MaxCall, latency)
	}
	if len(firstUsable) > 0 && firstUsable[len(firstUsable)/2] > 500*time.Millisecond {
		t.Errorf("replacements took a median %v for their first call with a usable token in the file", firstUsable[len(firstUsable)/2])
	}
	if e, err := NewFileCache(dir).Get(context.Background(), key); err != nil || e == nil {
		t.Errorf("the cache file was not replaced after it was torn: %v", err)
	}
	if n := api.Unauthenticated.Load() + api.Rejected.Load(); n != 0 {
		t.Errorf("%d API requests without a valid token", n)
	}
}
