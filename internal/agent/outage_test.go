package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/internal/clock"
	"github.com/m2mtoken/m2mtoken/internal/logtest"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// TestOutageLog: ten minutes of an outage, on the fake clock, with a
// request refused every 100 ms and a failed fetch every 16 s, log a line
// when it begins, summaries at 1, 3 and 7 minutes, and one line when it
// ends: never a line per request.
func TestOutageLog(t *testing.T) {
	clk := clock.NewFake(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	lb := logtest.New()
	o := newOutage("default", clk, slog.New(slog.NewJSONHandler(lb, nil)))
	down := errors.New("connection refused")
	for i := range 6000 {
		if i%160 == 0 {
			o.fetchFailed(down, 0)
		}
		o.refusedRequest(down)
		clk.Advance(100 * time.Millisecond)
	}
	o.up()
	o.up() // nothing: the outage has ended
	var got []string
	for _, r := range lb.Records() {
		line := fmt.Sprint(r["level"], " ", r["msg"])
		for _, k := range []string{"for", "after", "requests_refused", "fetches_failed"} {
			switch v, _ := r[k].(float64); k {
			case "for", "after":
				if v > 0 {
					line += fmt.Sprintf(" %s=%v", k, time.Duration(v))
				}
			default:
				line += fmt.Sprintf(" %s=%v", k, v)
			}
		}
		got = append(got, line)
	}
	want := []string{
		"WARN no token for source: its requests are refused until a fetch succeeds requests_refused=0 fetches_failed=0",
		"WARN still no token for source for=1m0s requests_refused=600 fetches_failed=4",
		"WARN still no token for source for=3m0s requests_refused=1800 fetches_failed=12",
		"WARN still no token for source for=7m0s requests_refused=4200 fetches_failed=27",
		"INFO source has a token again after=10m0s requests_refused=6000 fetches_failed=38",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("the log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The next outage is one of its own.
	o.refusedRequest(down)
	if n, _ := lb.Count("no token for source: its requests are refused until a fetch succeeds"); n != 2 {
		t.Fatalf("%d outages begun, want 2", n)
	}
}

// TestOutageLogVolume measures the agent's log while its token endpoint
// is down: callers every 100 ms (through the proxy and the token
// endpoint, in turns) for a minute of real time, with the library's
// default retries and backoff. It counts the lines the agent logs at its
// default level (info), per minute; then the endpoint comes back, and the
// outage's end is logged once, with the number of requests the callers
// saw refused.
func TestOutageLogVolume(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute of real time: the library's backoff runs on the wall clock in the agent")
	}
	const (
		every  = 100 * time.Millisecond
		window = time.Minute
		bound  = 20 // lines a minute; each request logged a line of its own before (600 a minute)
	)
	// The token endpoint's address, with nothing listening on it yet.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	// The API behind the proxy: it takes whatever token the proxy adds.
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(upstream.Close)
	src := Source{Name: "default", Config: m2mtoken.Config{TokenURL: "http://" + addr + "/oauth/token", ClientID: "cli", ClientSecret: secret, Audience: aud}}
	a := launchAgent(t, Config{Sources: []Source{src}, Listeners: []Listener{{"127.0.0.1:0"}},
		Proxies: []Proxy{{Source: "default", Listen: "127.0.0.1:0", Upstream: upstream.URL}}})
	endpoint, proxy := "http://"+a.tcp()+"/v1/token/default", "http://"+a.proxy(0)+"/api/private"
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1000}, Timeout: 2 * window}
	t.Cleanup(c.CloseIdleConnections)

	var refused, served atomic.Int64
	var wg sync.WaitGroup
	call := func(i int) {
		defer wg.Done()
		req, _ := http.NewRequest("GET", proxy, nil)
		if i%2 == 1 {
			req, _ = http.NewRequest("GET", endpoint, nil)
			req.Header.Set(agentHeader, "1")
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Errorf("call %d: %v", i, err)
			return
		}
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusServiceUnavailable:
			refused.Add(1)
		case http.StatusOK:
			served.Add(1)
		default:
			t.Errorf("call %d: %d", i, resp.StatusCode)
		}
	}
	before := len(a.log.Records())
	start := time.Now()
	tick := time.NewTicker(every)
	calls := 0
	for time.Since(start) < window {
		<-tick.C
		wg.Add(1)
		go call(calls)
		calls++
	}
	tick.Stop()
	elapsed := time.Since(start)
	var lines []map[string]any
	for _, r := range a.log.Records()[before:] {
		if r["level"] != "DEBUG" {
			lines = append(lines, r)
		}
	}
	perMinute := float64(len(lines)) / elapsed.Minutes()
	byMsg := map[string]int{}
	for _, r := range lines {
		byMsg[fmt.Sprint(r["level"], " ", r["msg"])]++
	}
	t.Logf("token endpoint down, %d callers over %v (one every %v): %d log lines at info and above, %.1f a minute; by message: %v",
		calls, elapsed.Round(time.Second), every, len(lines), perMinute, byMsg)
	if perMinute > bound {
		t.Errorf("%.1f lines a minute, want at most %d:\n%s", perMinute, bound, a.log)
	}
	if n := byMsg["WARN no token for source: its requests are refused until a fetch succeeds"]; n != 1 {
		t.Errorf("the outage began %d times, want once", n)
	}
	for msg, n := range byMsg {
		if strings.Contains(msg, "token request failed") && n > int(elapsed/(4*time.Second))+1 {
			t.Errorf("%d lines %q: more than one per failed fetch", n, msg)
		}
	}
	for _, r := range lines {
		if r["msg"] == "token request failed" && r["component"] != "m2mtoken" {
			t.Errorf("the agent logs a token request failure of its own: %v", r)
		}
	}

	// The endpoint comes back: the callers still waiting get tokens, and
	// the end is logged once, with the count of requests refused.
	iss, err := m2mtest.Listen(addr, m2mtest.Client{ID: "cli", Secret: secret, Audiences: []string{aud}})
	if err != nil {
		t.Fatalf("the token endpoint's address was taken meanwhile: %v", err)
	}
	t.Cleanup(iss.Close)
	end := a.log.Wait(t, a.done, waitFor, 1, "source has a token again")
	wg.Wait()
	if got := end["requests_refused"]; got != float64(refused.Load()) {
		t.Errorf("the end says %v requests refused; the callers saw %d", got, refused.Load())
	}
	if after, _ := end["after"].(float64); time.Duration(after) < elapsed {
		t.Errorf("the outage lasted %v by its end's line, less than the callers' %v", time.Duration(after), elapsed)
	}
	if n, _ := a.log.Count("source has a token again"); n != 1 || refused.Load() == 0 {
		t.Errorf("the end was logged %d times, after %d refused and %d served", n, refused.Load(), served.Load())
	}
	after, _ := end["after"].(float64)
	t.Logf("the end: %q after %v, %v requests refused, %v fetches failed", end["msg"], time.Duration(after), end["requests_refused"], end["fetches_failed"])
}

// TestOutageOfSourcesSharingAFetch: two sources of one request share the
// library source, and so its fetches: a fetch that gets a token ends the
// outage of both at once, and a failed one counts for both (not for the
// first source alone, the other waiting for its watcher's next look).
func TestOutageOfSourcesSharingAFetch(t *testing.T) {
	s := m2mtest.NewServer(m2mtest.Client{ID: "cli", Secret: secret, Audiences: []string{"https://a/"}})
	defer s.Close()
	conf := filepath.Join(t.TempDir(), "agent.json")
	writeConf(t, conf, []string{fileSrc("one", s.TokenURL(), "cli", "https://a/"), fileSrc("two", s.TokenURL(), "cli", "https://a/")}, nil)
	a := startFile(t, conf, Config{Listeners: []Listener{{"127.0.0.1:0"}}})
	one, two := a.byName["one"], a.byName["two"]
	if one.src != two.src {
		t.Fatal("setup: the two sources of one request do not share a library source")
	}
	tok, err := one.src.Token()
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range []*agentSource{one, two} {
		src.outage.down(errors.New("no token yet"))
	}
	one.src.Invalidate(tok)
	if _, err := one.src.Token(); err != nil {
		t.Fatal(err)
	}
	for _, src := range []*agentSource{one, two} {
		src.outage.mu.Lock()
		since := src.outage.since
		src.outage.mu.Unlock()
		if !since.IsZero() {
			t.Errorf("source %q: its outage goes on after a fetch got a token", src.name)
		}
	}
}
