//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// floodFDs is the open-file limit the flooded agent runs under: small,
// so that a flood of a few hundred connections is what tens of thousands
// are to an agent under the usual limit.
const floodFDs = 256

// rssKB is a process's resident set size, from /proc.
func rssKB(t *testing.T, pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	return 0
}

// TestAgentSlowClientFlood floods the agent, run under an open-file limit
// of 256 (a shell's ulimit -n, so that the flood is sized for CI), with
// more connections than it has descriptors, each sending part of a
// request and then dripping or stalling. Unbounded, they would take every
// descriptor (accept4: too many open files) and stop the Unix socket and
// every listener until the clients left. Each TCP listener must serve a
// bounded number of connections, sized to fit the limit, so that the Unix
// socket keeps answering during the flood, and TCP after it. (That a
// request body that stalls is cut off is TestStalledBodyCutOff's, in
// internal/agent: it needs no process of its own.)
func TestAgentSlowClientFlood(t *testing.T) {
	needProgram(t, "sh")
	s := issuer(t)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) }))
	t.Cleanup(api.Close)
	sock := filepath.Join(t.TempDir(), "agent.sock")
	p := launchBinary(t, []string{"sh", "-c", fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, floodFDs)}, tokenEnv(s, t.TempDir()),
		"--listen", "unix:"+sock, "--listen", "127.0.0.1:0", "--proxy", "default=127.0.0.1:0="+api.URL)
	p.waitLog("ready: every source holds a token")
	tcp, prx := p.addr("token endpoint"), p.addr("proxy")
	pid := p.pid
	rss0 := rssKB(t, pid)

	unixClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
	defer unixClient.CloseIdleConnections()
	health := func() error {
		resp, err := unixClient.Get("http://localhost/healthz")
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	if err := health(); err != nil {
		t.Fatal(err)
	}

	// The flood: three times the agent's descriptors, on the TCP endpoint
	// and the proxy, each holding a request it never finishes.
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for i := range 3 * floodFDs {
		addr := tcp
		if i%2 == 1 {
			addr = prx
		}
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("flood connection %d: %v", i, err)
		}
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\nX-Drip: ", addr)
		flood = append(flood, c)
	}
	// Let the agent accept what it will.
	for range 3 {
		for _, c := range flood {
			c.Write([]byte("a"))
		}
	}
	if err := health(); err != nil {
		t.Fatalf("during a flood of %d connections on loopback TCP, the Unix socket did not answer: %v\n%s", len(flood), err, tail(p.logs(), 600))
	}
	rss1 := rssKB(t, pid)
	fds, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	t.Logf("agent's descriptors during the flood: %d of %d", len(fds), floodFDs)
	t.Logf("during a flood of %d connections (open-file limit %d): the Unix socket answers; RSS %d KB before, %d KB during", len(flood), floodFDs, rss0, rss1)

	for _, c := range flood {
		c.Close()
	}
	flood = nil

	// After the flood, TCP answers again.
	req, _ := http.NewRequest("GET", "http://"+tcp+"/healthz", nil)
	req.Header.Set("M2MToken-Agent", "1")
	cl := &http.Client{Timeout: 30 * time.Second}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatalf("after the flood, TCP does not answer: %v", err)
	}
	resp.Body.Close()
}
