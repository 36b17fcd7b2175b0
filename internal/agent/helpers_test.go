// Helpers of the agent's tests: an agent run in-process (New, then Run in
// a goroutine until the test ends, with its JSON log read by
// internal/logtest and a leak check once it has stopped), a test issuer, an API behind it, and
// clients over Unix sockets and loopback TCP.

package agent

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/internal/logtest"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

const (
	secret = "cli-secret-CANARY-1234"
	aud    = "https://api.example.com/"
	// nobody plays the other local user.
	nobody = 65534
	// waitFor bounds every wait for the agent: a failure, not a pace.
	waitFor = 30 * time.Second
)

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// shown is a body for a failure message: one that holds a token (a JWT,
// "eyJ...") is shown only by its length, even in a test's output.
func shown(body string) string {
	if strings.Contains(body, "eyJ") {
		return fmt.Sprintf("(a body of %d bytes with a token in it)", len(body))
	}
	return body
}

func issuer(t testing.TB) *m2mtest.Server {
	s := m2mtest.NewServer(m2mtest.Client{ID: "cli", Secret: secret, Audiences: []string{aud}, Scopes: []string{"read:x"}})
	t.Cleanup(s.Close)
	return s
}

// source is the source "default" of client "cli" at s.
func source(s *m2mtest.Server) Source {
	return Source{Name: "default", Config: m2mtoken.Config{TokenURL: s.TokenURL(), ClientID: "cli", ClientSecret: secret, Audience: aud}}
}

// testAgent is an agent running in the test's process.
type testAgent struct {
	*Agent
	t      testing.TB
	log    *logtest.Log
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned
	err    error         // what Run returned
}

// startAgent runs an agent with cfg until the test ends (after setup, as
// launchAgent does), and waits until every source holds a token.
func startAgent(t testing.TB, cfg Config, setup ...func(*Agent)) *testAgent {
	t.Helper()
	a := launchAgent(t, cfg, setup...)
	select {
	case <-a.Ready():
	case <-a.done:
		t.Fatalf("the agent stopped before it was ready: %v\n%s", a.err, a.log)
	case <-time.After(waitFor):
		t.Fatalf("the agent is not ready after %v:\n%s", waitFor, a.log)
	}
	return a
}

// launchAgent runs an agent with cfg (its Logger a JSON log the test
// reads), after setup, if given, has changed it; and returns once it
// listens, or has failed to. When the test
// ends the agent is stopped, and the goroutines must be back to those
// before it started: the agent's own, its sources' and its clients'
// connections included.
func launchAgent(t testing.TB, cfg Config, setup ...func(*Agent)) *testAgent {
	t.Helper()
	before := goleak.IgnoreCurrent()
	lb := logtest.New()
	cfg.Logger = slog.New(slog.NewJSONHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range setup {
		f(a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ta := &testAgent{Agent: a, t: t, log: lb, cancel: cancel, done: make(chan struct{})}
	go func() { ta.err = a.Run(ctx); close(ta.done) }()
	t.Cleanup(func() {
		ta.stop()
		if tt, ok := t.(*testing.T); ok {
			goleak.VerifyNone(tt, before)
		}
	})
	<-a.Listening()
	return ta
}

// stop stops the agent as a signal to the command does, and returns what
// Run returned.
func (a *testAgent) stop() error {
	a.t.Helper()
	a.cancel()
	select {
	case <-a.done:
	case <-time.After(waitFor):
		a.t.Fatalf("the agent did not stop within %v:\n%s", waitFor, a.log)
	}
	return a.err
}

// waitLog waits for the n-th log line with msg and the attributes given
// as key, value pairs.
func (a *testAgent) waitLog(n int, msg string, attrs ...any) {
	a.t.Helper()
	a.log.Wait(a.t, a.done, waitFor, n, msg, attrs...)
}

// tcp returns the token endpoint's first TCP address.
func (a *testAgent) tcp() string {
	a.t.Helper()
	endpoints, _ := a.Addrs()
	for _, e := range endpoints {
		if !strings.HasPrefix(e, "unix:") {
			return e
		}
	}
	a.t.Fatalf("no token endpoint on TCP: %q", endpoints)
	return ""
}

// proxy returns the i-th proxy's address.
func (a *testAgent) proxy(i int) string {
	_, proxies := a.Addrs()
	return proxies[i]
}

// client returns an HTTP client that the test closes when it ends; over
// the Unix socket sock, if it is not empty.
func client(t testing.TB, sock string) *http.Client {
	tr := &http.Transport{}
	if sock != "" {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: waitFor}
}

// get sends GET url with the headers given as name, value pairs, and
// returns the status and the body.
func get(t testing.TB, c *http.Client, url string, headers ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if strings.EqualFold(headers[i], "Host") {
			req.Host = headers[i+1]
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// rawGet sends "METHOD target" over a new connection to addr as written,
// so that no client cleans the path, and returns the status and body.
func rawGet(t testing.TB, addr, method, target string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitFor)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitFor))
	fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", method, target, addr)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func needProgram(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed, and CI is set", name)
		}
		t.Skipf("%s is not installed", name)
	}
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a directory to another user (chown to 65534); run the tests as root to replay these attacks")
	}
}

// protectedAPI is an API behind the issuer: /api/private needs a valid
// token; /echo echoes the request body; /stream sends a line, then waits
// for release before the second.
type protectedAPI struct {
	*httptest.Server
	release chan struct{}
	gotBody chan string
}

func newProtectedAPI(t testing.TB, s *m2mtest.Server) *protectedAPI {
	api := &protectedAPI{release: make(chan struct{}), gotBody: make(chan string, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/private", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"message":"private","path":%q,"query":%q}`, r.URL.Path, r.URL.RawQuery)
	})
	mux.HandleFunc("/v1/sync", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "synced")
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		// Read the first line before the client has sent the rest: the
		// proxy streams request bodies.
		br := bufio.NewReader(r.Body)
		first, _ := br.ReadString('\n')
		select {
		case api.gotBody <- first:
		default:
		}
		rest, _ := io.ReadAll(br)
		fmt.Fprintf(w, "%d", len(first)+len(rest))
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		select {
		case <-api.release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "second\n")
	})
	api.Server = httptest.NewServer(s.Protect(aud, nil, mux))
	t.Cleanup(api.Close)
	return api
}

// runPython runs a Python 3 script with args and fails the test if it
// fails.
func runPython(t testing.TB, script string, args ...string) {
	t.Helper()
	needProgram(t, "python3")
	f := filepath.Join(t.TempDir(), "client.py")
	os.WriteFile(f, []byte(script), 0o600)
	out, err := exec.Command("python3", append([]string{f}, args...)...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("python3: %v\n%s", err, out)
	}
}
