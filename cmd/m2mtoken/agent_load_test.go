//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// loadPath is one way to the upstream that the load test drives.
type loadPath struct {
	name   string
	url    string
	client *http.Client
	header http.Header

	mu     sync.Mutex
	lats   []time.Duration
	failed atomic.Int64
	first  atomic.Pointer[string]
}

func newLoadPath(name, url string, conns int, dial func(context.Context, string, string) (net.Conn, error), header http.Header) *loadPath {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = conns, conns
	if dial != nil {
		tr.DialContext = dial
	}
	return &loadPath{name: name, url: url, client: &http.Client{Transport: tr, Timeout: 30 * time.Second}, header: header}
}

// drive sends rate requests a second for d from conns connections, on a
// fixed schedule (an open loop: a slow answer does not delay the next
// request's start, up to conns in flight).
func (p *loadPath) drive(rate int, d time.Duration, conns int) (sent int) {
	jobs := make(chan struct{}, conns)
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, int(float64(rate)*d.Seconds())/conns+16)
			for range jobs {
				req, _ := http.NewRequest("GET", p.url, nil)
				for k, v := range p.header {
					req.Header[k] = v
				}
				t0 := time.Now()
				resp, err := p.client.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("%s", resp.Status)
					}
				}
				local = append(local, time.Since(t0))
				if err != nil {
					p.failed.Add(1)
					msg := err.Error()
					p.first.CompareAndSwap(nil, &msg)
				}
			}
			p.mu.Lock()
			p.lats = append(p.lats, local...)
			p.mu.Unlock()
		}()
	}
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * interval)
		if at.Sub(start) >= d {
			break
		}
		time.Sleep(time.Until(at))
		jobs <- struct{}{}
		sent++
	}
	close(jobs)
	wg.Wait()
	return sent
}

func (p *loadPath) percentiles() (p50, p99, maxd time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	slices.Sort(p.lats)
	n := len(p.lats)
	if n == 0 {
		return 0, 0, 0
	}
	return p.lats[n/2], p.lats[n*99/100], p.lats[n-1]
}

// TestAgentLoad drives the agent's proxy and, beside it in the same run,
// a bare httputil.ReverseProxy to the same protected upstream, and the
// upstream directly, while 2-second tokens rotate from a token endpoint
// that takes 250 ms; then the token endpoint over the Unix socket. It
// fails on any failed request through the agent, or on far more token
// requests than lifetimes. By default it is a short smoke run; with
// M2MTOKEN_SOAK=1 it is the README's load: 1,000 requests a second on
// each path for 10 s (run it without -race for the figures).
func TestAgentLoad(t *testing.T) {
	rate, dur, conns, tokDur := 100, 2*time.Second, 16, time.Second
	if os.Getenv("M2MTOKEN_SOAK") == "1" {
		rate, dur, conns, tokDur = 1000, 10*time.Second, 64, 5*time.Second
	}
	const ttl, latency = 2 * time.Second, 250 * time.Millisecond

	s := issuer(t)
	s.SetTokenLifetime(ttl)
	s.SetLatency(latency)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	upstream := httptest.NewServer(s.Protect(aud, nil, ok))
	defer upstream.Close()

	// The anchor: a bare reverse proxy in its own process, like the agent.
	bare := filepath.Join(t.TempDir(), "bareproxy")
	if out, err := exec.Command("go", "build", "-o", bare, "./testdata/bareproxy").CombinedOutput(); err != nil {
		t.Fatalf("building the bare proxy: %v\n%s", err, out)
	}
	bp := exec.Command(bare, upstream.URL)
	bpOut, _ := bp.StdoutPipe()
	if err := bp.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { bp.Process.Kill(); bp.Wait() }()
	sc := bufio.NewScanner(bpOut)
	if !sc.Scan() {
		t.Fatal("the bare proxy printed no address")
	}
	bareAddr := strings.TrimSpace(sc.Text())
	// Requests through the bare proxy and straight to the upstream carry
	// a token signed for the whole run, checked as the agent's are.
	long, err := s.Sign(map[string]any{"iss": s.Issuer(), "aud": aud, "sub": "cli@clients", "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()})
	if err != nil {
		t.Fatal(err)
	}
	auth := http.Header{"Authorization": {"Bearer " + long}}

	sock := filepath.Join(t.TempDir(), "a.sock")
	p := launchBinary(t, nil, tokenEnv(s, t.TempDir()), "--listen", "unix:"+sock, "--proxy", "default=127.0.0.1:0="+upstream.URL)
	p.waitLog("ready: every source holds a token")
	prx := p.addr("proxy")

	paths := []*loadPath{
		newLoadPath("agent proxy", "http://"+prx+"/api/load", conns, nil, nil),
		newLoadPath("bare ReverseProxy", "http://"+bareAddr+"/api/load", conns, nil, auth),
		newLoadPath("direct to upstream", upstream.URL+"/api/load", conns, nil, auth),
	}
	// The paths take turns, a quarter of a second each in a rotating
	// order, so that the other work on a shared machine weighs on each
	// alike.
	const turn = 250 * time.Millisecond
	issuedBefore := s.TokensIssued("cli")
	agentCPU0, cpuOK := cpuTime(p.pid)
	bareCPU0, _ := cpuTime(bp.Process.Pid)
	sent := make([]int, len(paths))
	start := time.Now()
	for r := range int(dur / turn) {
		for k := range paths {
			i := (r + k) % len(paths)
			sent[i] += paths[i].drive(rate, turn, conns)
		}
	}
	elapsed := time.Since(start)
	issued := s.TokensIssued("cli") - issuedBefore
	agentCPU1, _ := cpuTime(p.pid)
	bareCPU1, _ := cpuTime(bp.Process.Pid)

	dialUnix := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}
	tokPath := newLoadPath("token endpoint (unix)", "http://localhost/v1/token/default", 16, dialUnix, nil)
	tokSent := tokPath.drive(rate, tokDur, 16)

	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
	var report strings.Builder
	fmt.Fprintf(&report, "\n%d req/s on each path for %v, taking turns of 250 ms (%.1f s in all), %d connections each; %v tokens from an endpoint taking %v\n",
		rate, dur, elapsed.Seconds(), conns, ttl, latency)
	fmt.Fprintf(&report, "  %-24s %8s %7s %10s %10s %10s\n", "path", "requests", "failed", "p50", "p99", "max")
	var agentP50, agentP99, bareP50, bareP99, directP50 time.Duration
	for i, lp := range paths {
		p50, p99, mx := lp.percentiles()
		fmt.Fprintf(&report, "  %-24s %8d %7d %10s %10s %10s\n", lp.name, sent[i], lp.failed.Load(), ms(p50), ms(p99), ms(mx))
		switch i {
		case 0:
			agentP50, agentP99 = p50, p99
		case 1:
			bareP50, bareP99 = p50, p99
		case 2:
			directP50 = p50
		}
	}
	if bareP50 > 0 && bareP99 > 0 {
		fmt.Fprintf(&report, "  agent proxy / bare ReverseProxy: p50 %.2fx, p99 %.2fx\n", float64(agentP50)/float64(bareP50), float64(agentP99)/float64(bareP99))
	}
	if bareP50 > directP50 {
		fmt.Fprintf(&report, "  added p50 over direct: agent proxy %s, bare ReverseProxy %s (%.2fx)\n",
			ms(agentP50-directP50), ms(bareP50-directP50), float64(agentP50-directP50)/float64(bareP50-directP50))
	}
	if cpuOK {
		// CPU time per request, which other work on the machine does not
		// stretch as it stretches latency.
		a, b := (agentCPU1-agentCPU0)/time.Duration(sent[0]), (bareCPU1-bareCPU0)/time.Duration(sent[1])
		fmt.Fprintf(&report, "  CPU per request (user+system): agent %v, bare ReverseProxy %v (%.2fx)\n",
			a.Round(time.Microsecond), b.Round(time.Microsecond), float64(a)/float64(b))
	}
	fmt.Fprintf(&report, "  token requests during the run: %d over %.1f token lifetimes\n", issued, float64(elapsed)/float64(ttl))
	p50, p99, mx := tokPath.percentiles()
	fmt.Fprintf(&report, "  %-24s %8d %7d %10s %10s %10s  (%d req/s for %v, 16 connections)\n", tokPath.name, tokSent, tokPath.failed.Load(), ms(p50), ms(p99), ms(mx), rate, tokDur)
	t.Log(report.String())

	for _, lp := range append(paths, tokPath) {
		if n := lp.failed.Load(); n > 0 {
			t.Errorf("%s: %d requests failed; the first: %s", lp.name, n, *lp.first.Load())
		}
	}
	if lifetimes := int(elapsed / ttl); issued < 1 || issued > 2*lifetimes+2 {
		t.Errorf("%d token requests over %d lifetimes", issued, lifetimes)
	}
}

// cpuTime is the user and system CPU time of process pid so far, from
// /proc (Linux); false where there is none.
func cpuTime(pid int) (time.Duration, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	// Fields 14 and 15 of the line (utime, stime) are 11 and 12 after the
	// command's closing parenthesis, in clock ticks of 10 ms (USER_HZ).
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(u+st) * 10 * time.Millisecond, true
}
