package m2mtoken

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	"golang.org/x/oauth2"
)

// api is a protected API that accepts tokens for which accept returns true
// and records what it saw.
type api struct {
	*httptest.Server
	mu     sync.Mutex
	auths  []string
	bodies []string
	accept func(auth string) bool
	chall  string // WWW-Authenticate on 401
}

func newAPI(t *testing.T, accept func(string) bool) *api {
	a := &api{accept: accept}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		auth := r.Header.Get("Authorization")
		a.mu.Lock()
		a.auths = append(a.auths, auth)
		a.bodies = append(a.bodies, string(b))
		ok := a.accept(auth)
		a.mu.Unlock()
		if !ok {
			if a.chall != "" {
				w.Header().Set("WWW-Authenticate", a.chall)
			}
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, "bad token")
			return
		}
		io.WriteString(w, "ok "+auth)
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *api) seen() ([]string, []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.auths...), append([]string(nil), a.bodies...)
}

func TestTransportSetsHeaderAndLeavesRequestAlone(t *testing.T) {
	e := newEndpoint(t)
	s, _ := testSource(t, e, nil)
	a := newAPI(t, func(string) bool { return true })
	req, _ := http.NewRequest("GET", a.URL, nil)
	req.Header.Set("X-Custom", "1")
	before := req.Header.Clone()
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok Bearer tok-1" {
		t.Fatalf("API saw %q", body)
	}
	if diff := cmp.Diff(before, req.Header); diff != "" {
		t.Fatalf("request header modified (-before +after):\n%s", diff)
	}
}

func TestTransportReplaysOnce(t *testing.T) {
	for _, tt := range []struct {
		name  string
		chall string
	}{{"no challenge", ""}, {"invalid_token", `Bearer realm="api", error="invalid_token", error_description="revoked"`}} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEndpoint(t)
			s, _ := testSource(t, e, nil)
			a := newAPI(t, func(auth string) bool { return auth != "Bearer tok-1" })
			a.chall = tt.chall
			resp, err := s.Client().Post(a.URL, "text/plain", strings.NewReader("payload"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			auths, bodies := a.seen()
			if resp.StatusCode != 200 || len(auths) != 2 || auths[1] != "Bearer tok-2" {
				t.Fatalf("status %d, API saw %q", resp.StatusCode, auths)
			}
			if diff := cmp.Diff([]string{"payload", "payload"}, bodies); diff != "" {
				t.Fatalf("bodies (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTransportNoReplay(t *testing.T) {
	tests := []struct {
		name      string
		chall     string
		body      func() io.Reader
		wantCalls int
	}{
		{"one-shot body", "", func() io.Reader { return io.MultiReader(strings.NewReader("x")) }, 1},
		{"insufficient scope", `Bearer error="insufficient_scope"`, func() io.Reader { return nil }, 1},
		{"basic challenge", `Basic realm="x"`, func() io.Reader { return nil }, 1},
		{"new token rejected too", "", func() io.Reader { return nil }, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEndpoint(t)
			s, _ := testSource(t, e, nil)
			a := newAPI(t, func(string) bool { return false })
			a.chall = tt.chall
			var body io.Reader = tt.body()
			req, _ := http.NewRequest("POST", a.URL, body)
			if body != nil {
				req.GetBody = nil
			}
			resp, err := s.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			auths, _ := a.seen()
			if resp.StatusCode != 401 || string(got) != "bad token" || len(auths) != tt.wantCalls {
				t.Fatalf("status %d body %q, %d API calls; want 401 after %d", resp.StatusCode, got, len(auths), tt.wantCalls)
			}
		})
	}
}

func TestTransportForcedRefreshIsRateLimited(t *testing.T) {
	e := newEndpoint(t)
	logs := &logBuffer{}
	s, _ := testSource(t, e, func(c *Config) { c.Logger = logs.logger() })
	a := newAPI(t, func(string) bool { return false }) // wrong audience: every token refused
	c := s.Client()
	for i := 0; i < 20; i++ {
		resp, err := c.Get(a.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if e.count() != 2 {
		t.Fatalf("%d token requests for 20 refused API calls, want 2", e.count())
	}
	if !strings.Contains(logs.String(), "invalidation ignored") {
		t.Error("no warning logged")
	}
}

func TestTransportSendsNothingWithoutToken(t *testing.T) {
	e := newEndpoint(t)
	s, _ := testSource(t, e, nil)
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
		w.WriteHeader(401)
		io.WriteString(w, `{"error":"access_denied","error_description":"Unauthorized"}`)
		return true
	})
	a := newAPI(t, func(string) bool { return true })
	body := &closeTracker{Reader: strings.NewReader("x")}
	req, _ := http.NewRequest("POST", a.URL, body)
	_, err := s.Client().Do(req)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "access_denied" {
		t.Fatalf("err = %v", err)
	}
	if auths, _ := a.seen(); len(auths) != 0 {
		t.Fatalf("API received %d requests without a token", len(auths))
	}
	if !body.closed.Load() {
		t.Error("request body not closed on the error path")
	}
}

type closeTracker struct {
	io.Reader
	closed atomic.Bool
}

func (c *closeTracker) Close() error { c.closed.Store(true); return nil }

func TestTransportCancelWhileWaitingForToken(t *testing.T) {
	e := newEndpoint(t)
	s, _ := testSource(t, e, nil)
	gate := make(chan struct{})
	defer close(gate)
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool { <-gate; return false })
	a := newAPI(t, func(string) bool { return true })
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", a.URL, nil)
	done := make(chan error)
	go func() { _, err := s.Client().Do(req); done <- err }()
	eventually(t, "the token request", func() bool { return e.count() == 1 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("request did not return after cancel")
	}
}

func TestTransportOverPlainTokenSource(t *testing.T) {
	a := newAPI(t, func(auth string) bool { return auth == "Bearer static" })
	c := &http.Client{Transport: &Transport{Source: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "static"})}}
	resp, err := c.Get(a.URL)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	resp.Body.Close()
}

func TestTransportConcurrent(t *testing.T) {
	e := newEndpoint(t)
	s, clk := testSource(t, e, nil)
	a := newAPI(t, func(string) bool { return true })
	c := s.Client()
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				resp, err := c.Post(a.URL, "text/plain", bytes.NewReader([]byte("b")))
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	// Move through several refreshes (100 s tokens) while the requests run.
	// Before each step, wait until the source holds a token usable at the
	// new time (or the requests are over), so that the fake clock never
	// outruns a token request in flight: a token that has expired by the
	// time its answer arrives is an error, rightly.
	for i := 0; i < 5; i++ {
		clk.Advance(30 * time.Second)
		eventually(t, "a token usable after the step", func() bool {
			select {
			case <-done:
				return true
			default:
			}
			h := s.cur.Load()
			return h != nil && clk.Now().Before(h.unusableAt)
		})
	}
	<-done
	auths, _ := a.seen()
	for _, au := range auths {
		if !strings.HasPrefix(au, "Bearer tok-") {
			t.Fatalf("request with %q", au)
		}
	}
}

// noopRT answers every request with one shared response, allocating nothing.
type noopRT struct{ resp *http.Response }

func (n noopRT) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Authorization") == "" {
		return nil, errors.New("no Authorization header")
	}
	return n.resp, nil
}

// BenchmarkTransport compares RoundTrip with oauth2.Transport over the same
// no-op base and the same cached token.
func BenchmarkTransport(b *testing.B) {
	ours, anchor := benchSources(b)
	base := noopRT{resp: &http.Response{StatusCode: 200, Body: http.NoBody}}
	for _, impl := range []struct {
		name string
		rt   http.RoundTripper
	}{{"m2mtoken", &Transport{Source: ours, Base: base}}, {"oauth2", &oauth2.Transport{Source: anchor, Base: base}}} {
		for _, hdrs := range []int{0, 4, 12} {
			req, _ := http.NewRequest("GET", "https://api.example.com/v1/things", nil)
			for i := 0; i < hdrs; i++ {
				req.Header.Set("X-Header-"+string(rune('A'+i)), "value")
			}
			b.Run("headers="+string(rune('0'+hdrs/10))+string(rune('0'+hdrs%10))+"/impl="+impl.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := impl.rt.RoundTrip(req); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func TestTransportNilSourceIsAnError(t *testing.T) {
	body := &closeTracker{Reader: strings.NewReader("x")}
	req, _ := http.NewRequest("POST", "http://127.0.0.1:1/", body)
	_, err := (&Transport{}).RoundTrip(req)
	if err == nil || !strings.Contains(err.Error(), "Source is nil") || !body.closed.Load() {
		t.Fatalf("err %v, body closed %v", err, body.closed.Load())
	}
}

// TestCloseClosesConnections: after Close, no goroutine of the source is
// left, not even the keep-alive connections of Client() and of the token
// requests, while both servers are still up (a closed server would end
// them for us). The root TestMain ignores none of net/http's goroutines.
func TestCloseClosesConnections(t *testing.T) {
	e := newEndpoint(t)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer api.Close()
	before := goleak.IgnoreCurrent()
	s, err := New(Config{TokenURL: e.URL + "/oauth/token", ClientID: "client-1", ClientSecret: testSecret, Audience: "a"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		resp, err := s.Client().Get(api.URL)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	s.Close()
	goleak.VerifyNone(t, before)
}

// TestTransportForwardsCloseIdleConnections: a Transport passes
// CloseIdleConnections to its base, as wrapping transports do.
func TestTransportForwardsCloseIdleConnections(t *testing.T) {
	b := &idleCounter{}
	c := &http.Client{Transport: &Transport{Source: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "x"}), Base: b}}
	c.CloseIdleConnections()
	if b.n != 1 {
		t.Fatalf("base's CloseIdleConnections called %d times, want 1", b.n)
	}
	(&Transport{Base: plainRoundTripper{}}).CloseIdleConnections() // no such method: nothing happens
}

type idleCounter struct{ n int }

func (c *idleCounter) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("unused")
}
func (c *idleCounter) CloseIdleConnections() { c.n++ }

type plainRoundTripper struct{}

func (plainRoundTripper) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("unused")
}
