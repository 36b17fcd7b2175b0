package m2mtoken

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/clock"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// fillPool fetches n tokens through p, callers at a time.
func fillPool(t testing.TB, p *Pool, n, callers int, req func(i int) TokenRequest) {
	t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if _, err := p.Token(context.Background(), req(i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func orgRequest(i int) TokenRequest {
	return TokenRequest{Audience: "https://api.example.com/", Scopes: []string{"read:things"}, Organization: "org_" + strconv.Itoa(i)}
}

// TestPoolHeapAndGoroutinesPerToken: a token held costs at most 3 KiB of
// heap, its JWT-sized access token included, and no goroutine.
func TestPoolHeapAndGoroutinesPerToken(t *testing.T) {
	n := 10_000
	if testing.Short() {
		n = 1000
	}
	e := newEndpoint(t)
	e.noRecord.Store(true)
	e.setHandler(func(w http.ResponseWriter, r *http.Request, k int64) bool {
		w.Header().Set("Content-Type", "application/json")
		// As Auth0 answers: the token, its scopes, type and lifetime.
		fmt.Fprintf(w, `{"access_token":%q,"scope":"read:things write:things","expires_in":86400,"token_type":"Bearer"}`, jwtSizedToken[:len(jwtSizedToken)-12]+fmt.Sprintf("%012d", k))
		return true
	})
	// The service's own requests, all at once: no bound on new tokens.
	p, err := NewPool(Config{TokenURL: e.URL + "/oauth/token", ClientID: "c", ClientSecret: "s", NewTokenRate: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	fillPool(t, p, 1, 1, orgRequest) // the client's connection and first allocations
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	goroutines := runtime.NumGoroutine()
	fillPool(t, p, n, 8, orgRequest)
	e.Client().CloseIdleConnections()
	runtime.GC()
	runtime.ReadMemStats(&after)
	perToken := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n-1)
	added := runtime.NumGoroutine() - goroutines
	t.Logf("%d tokens: %.0f B of heap per token (access token %d B), %d goroutines added", n, perToken, len(jwtSizedToken), added)
	if perToken > 3<<10 {
		t.Errorf("%.0f B of heap per token, want at most 3 KiB", perToken)
	}
	// The pool's connections to the token endpoint and their server side
	// are goroutines too: a handful, never one per token.
	if added > 2*defaultMaxConnsPerHost*2 {
		t.Errorf("%d goroutines added for %d tokens", added, n)
	}
	if st := p.Stats(); st.Tokens != n {
		t.Errorf("Stats().Tokens = %d, want %d", st.Tokens, n)
	}

	// What a map of sources costs instead, for the record: each New is a
	// client of its own, with its own connections.
	m := min(n, 1000)
	runtime.GC()
	runtime.ReadMemStats(&before)
	goroutines = runtime.NumGoroutine()
	var list []*TokenSource
	for i := range m {
		r := orgRequest(i)
		s, err := New(Config{TokenURL: e.URL + "/oauth/token", ClientID: "c", ClientSecret: "s", Audience: r.Audience, Scopes: r.Scopes, Organization: r.Organization})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Token(); err != nil {
			t.Fatal(err)
		}
		list = append(list, s)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("for comparison, %d sources from New (a map of sources): %.0f B of heap and %.1f goroutines per token",
		m, float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(m), float64(runtime.NumGoroutine()-goroutines)/float64(m))
	for _, s := range list {
		s.Close()
	}
}

// TestPoolBoundsConnections: 30,000 tokens fetched by 1,000 concurrent
// callers go through a handful of connections, never more than
// MaxConnsPerHost open at once, counted at the server.
func TestPoolBoundsConnections(t *testing.T) {
	n := 30_000
	if testing.Short() {
		n = 3000
	}
	var opened, open, peak atomic.Int64
	e := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"tok-%s","token_type":"Bearer","expires_in":3600}`, r.PostForm.Get("organization"))
	}))
	e.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			opened.Add(1)
			if n := open.Add(1); n > peak.Load() {
				peak.Store(n) // ConnState runs on each connection's goroutine; a lost race only lowers the peak seen by one
			}
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	e.Start()
	defer e.Close()
	p, err := NewPool(Config{TokenURL: e.URL + "/oauth/token", ClientID: "c", ClientSecret: "s", MaxTokens: n, NewTokenRate: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	fillPool(t, p, n, 1000, orgRequest)
	t.Logf("%d tokens, 1,000 callers at once: %d connections open at most, %d opened in all, %d open at the end (MaxConnsPerHost %d)",
		n, peak.Load(), opened.Load(), open.Load(), defaultMaxConnsPerHost)
	// The server learns of a closed connection after the client has
	// dialled its replacement: allow it a few.
	if c := peak.Load(); c > defaultMaxConnsPerHost+4 {
		t.Fatalf("%d connections open at once for %d tokens, want at most %d", c, n, defaultMaxConnsPerHost)
	}
	if c := opened.Load(); c > 4*defaultMaxConnsPerHost {
		t.Fatalf("%d connections opened for %d tokens: connections are not reused", c, n)
	}
	if st := p.Stats(); st.Tokens != n || st.TokenRequests != uint64(n) {
		t.Fatalf("Stats: %d tokens, %d requests; want %d", st.Tokens, st.TokenRequests, n)
	}
}

// TestPoolSteadyState runs 10,000 tokens with 60 s lifetimes against
// m2mtest for a few minutes on a fake clock (token requests are real, on
// loopback), callers asking each token every second, and reports the
// token requests per 10-second window. It is long: it runs only with
// M2MTOKEN_STEADY_STATE=1 (minutes as its value if not 1, default 5):
//
//	M2MTOKEN_STEADY_STATE=5 go test -run TestPoolSteadyState -v -timeout 30m .
//
// M2MTOKEN_STEADY_SPREAD=off runs it without the pool's spread of first
// refreshes, to see what it prevents (the run then fails its targets).
func TestPoolSteadyState(t *testing.T) {
	env := os.Getenv("M2MTOKEN_STEADY_STATE")
	if env == "" {
		t.Skip("set M2MTOKEN_STEADY_STATE=1 (or a number of minutes) to run the steady-state run of 10,000 tokens")
	}
	minutes, _ := strconv.Atoi(env)
	if minutes <= 1 {
		minutes = 5
	}
	const (
		tokens   = 10_000
		lifetime = 60 * time.Second
		window   = 10 * time.Second
	)
	iss := m2mtest.NewServer(m2mtest.Client{ID: "svc", Secret: testSecret, Audiences: []string{"https://api.example.com/"},
		Scopes: []string{"read:things"}, Organizations: orgs(tokens)})
	defer iss.Close()
	iss.SetTokenLifetime(lifetime)
	clk := clock.NewFake(time.Now())
	iss.SetClock(clk.Now)
	p, err := newPool(Config{TokenURL: iss.TokenURL(), ClientID: "svc", ClientSecret: testSecret, NewTokenRate: -1}, clk, true)
	if err != nil {
		t.Fatal(err)
	}
	p.spread = os.Getenv("M2MTOKEN_STEADY_SPREAD") != "off"
	defer p.Close()

	var ru0 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	wall := time.Now()
	fillPool(t, p, tokens, 64, orgRequest) // all fetched together, at one instant
	srcs := make([]*TokenSource, tokens)
	for i := range srcs {
		srcs[i], _ = p.Source(orgRequest(i))
	}
	goroutines := runtime.NumGoroutine()
	var counts []int
	last := iss.Requests()
	steps := minutes * 60
	for step := 1; step <= steps; step++ {
		clk.Advance(time.Second)
		for _, s := range srcs {
			if _, err := s.Token(); err != nil {
				t.Fatal(err)
			}
		}
		for _, s := range srcs {
			s.life.bg.Wait() // refreshes end before the clock moves on
		}
		if step%int(window/time.Second) == 0 {
			n := iss.Requests()
			counts = append(counts, n-last)
			last = n
		}
	}
	var ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * time.Nanosecond
	grown := runtime.NumGoroutine() - goroutines

	// The steady state: after the first lifetime.
	steady := counts[int(lifetime/window):]
	total, peak := 0, 0
	for _, c := range steady {
		total += c
		peak = max(peak, c)
	}
	avg := float64(total) / float64(len(steady))
	perLifetime := float64(total) / (float64(len(steady)) * float64(window) / float64(lifetime)) / tokens
	t.Logf("token requests per 10 s window (issuer: m2mtest, fake clock): %v", counts)
	t.Logf("steady state (after the first lifetime, %d windows): average %.0f, peak %d (%.2fx the average); %.3f token requests per lifetime per token",
		len(steady), avg, peak, float64(peak)/avg, perLifetime)
	t.Logf("%d simulated minutes in %v of wall time, %v of CPU (this process: pool and m2mtest); goroutines %+d", minutes, time.Since(wall).Round(time.Second), cpu.Round(time.Second), grown)
	if float64(peak) > 2*avg {
		t.Errorf("a window holds %d requests, more than twice the average %.0f", peak, avg)
	}
	if perLifetime < 1 || perLifetime > 1.3 {
		t.Errorf("%.3f token requests per lifetime per token, want within [1, 1.3]", perLifetime)
	}
	if grown > 0 {
		t.Errorf("%d goroutines more than after the first fetches", grown)
	}
}

func orgs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "org_" + strconv.Itoa(i)
	}
	return out
}
