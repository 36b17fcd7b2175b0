// The limits against slow clients, in-process: a request body that stalls
// is cut off. (That a flood of connections beyond the open-file limit
// leaves the Unix socket answering is a claim about a process and its
// descriptors: cmd/m2mtoken's TestAgentSlowClientFlood runs the binary
// under ulimit -n 256 for it.)

package agent

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
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
	a := launchAgent(t, Config{Sources: []Source{source(s)}, Proxies: []Proxy{{"default", "127.0.0.1:0", api.URL}}},
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
