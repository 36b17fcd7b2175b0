// The limits against slow clients, in-process: a request body that stalls
// is cut off. (That a flood of connections beyond the open-file limit
// leaves the Unix socket answering is a claim about a process and its
// descriptors: cmd/m2mtoken's TestAgentSlowClientFlood runs the binary
// under ulimit -n 256 for it.)

package agent

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestStalledBodyCutOff: a request to the proxy (which reads bodies) that
// promises 1,000 bytes of body and sends ten is answered, or its
// connection closed, once the body's grace has passed; never left
// waiting.
func TestStalledBodyCutOff(t *testing.T) {
	s := issuer(t)
	api := newProtectedAPI(t, s)
	a := launchAgent(t, Config{Sources: []Source{source(s)}, Proxies: []Proxy{{Source: "default", Listen: "127.0.0.1:0", Upstream: api.URL}}},
		func(a *Agent) { a.bodyGrace = 100 * time.Millisecond })
	for _, addr := range []string{a.proxy(0)} {
		c, err := net.DialTimeout("tcp", addr, waitFor)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /echo HTTP/1.1\r\nHost: %s\r\n%s: 1\r\nContent-Length: 1000\r\n\r\nten bytes.", addr, agentHeader)
		c.SetReadDeadline(time.Now().Add(waitFor))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("%s: a request body stalled for %v is still being waited for", addr, waitFor)
		}
		if err == nil {
			resp.Body.Close()
			t.Logf("%s: a stalled body: %s", addr, resp.Status)
		} else {
			t.Logf("%s: a stalled body: connection closed (%v)", addr, err)
		}
	}
}

// TestBodyDeadlineEndsWithTheBody: a small body read in full, then an
// upstream slower than the body's grace. The deadline must not outlive
// the body: firing during the wait, it would cancel the request, and the
// client would get an empty 200.
func TestBodyDeadlineEndsWithTheBody(t *testing.T) {
	s := issuer(t)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		time.Sleep(400 * time.Millisecond) // a slow upstream, past the 100 ms grace
		fmt.Fprintf(w, "slow answer to %s", b)
	}))
	defer slow.Close()
	a := launchAgent(t, Config{Sources: []Source{source(s)}, Proxies: []Proxy{{Source: "default", Listen: "127.0.0.1:0", Upstream: slow.URL}}},
		func(a *Agent) { a.bodyGrace = 100 * time.Millisecond })
	resp, err := http.Post("http://"+a.proxy(0)+"/work", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "slow answer to hello" {
		t.Fatalf("got %s %q, want 200 %q", resp.Status, b, "slow answer to hello")
	}
}
