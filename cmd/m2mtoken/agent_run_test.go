// Helpers of the agent command's tests: the command run in-process (its
// flags, environment and logging, with a context for its signals) and, for
// the claims about a process, the binary; both with their JSON log read
// by internal/logtest.

package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/m2mtoken/m2mtoken/internal/logtest"
)

// waitFor bounds every wait for the agent: a failure, not a pace.
const waitFor = 30 * time.Second

// agentRun is a running 'm2mtoken agent --log-json', in-process or a
// process.
type agentRun struct {
	*logtest.Log
	t    *testing.T
	done chan struct{} // closed when it has stopped
	err  error         // how it stopped
	stop func(os.Signal)
	pid  int // the process's, or 0 in-process
}

// waitLog waits for a log line with msg.
func (p *agentRun) waitLog(msg string) map[string]any {
	p.t.Helper()
	return p.Wait(p.t, p.done, waitFor, 1, msg)
}

// logs returns the log as written.
func (p *agentRun) logs() string { return p.String() }

// addr returns the address the agent logged for what it serves ("token
// endpoint" or "proxy") on a TCP port.
func (p *agentRun) addr(serves string) string {
	p.t.Helper()
	for _, l := range p.Records() {
		if a, _ := l["addr"].(string); l["msg"] == "listening" && l["serves"] == serves && !strings.HasPrefix(a, "unix:") {
			return a
		}
	}
	p.t.Fatalf("no %s listening on TCP:\n%s", serves, p.logs())
	return ""
}

// halt sends sig (in-process: cancels the command's context, as a signal
// does) and waits for the agent to stop; it returns how it stopped.
func (p *agentRun) halt(sig os.Signal) error {
	p.t.Helper()
	p.stop(sig)
	select {
	case <-p.done:
		return p.err
	case <-time.After(waitFor):
		p.t.Fatalf("the agent did not stop within %v of %v:\n%s", waitFor, sig, p.logs())
	}
	return nil
}

// setEnv gives the test a clean environment for the command, as a new
// process would have: none of the variables the command reads but env
// (KEY=VALUE), and a HOME of its own.
func setEnv(t *testing.T, env []string) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AUTH0_") || strings.HasPrefix(k, "M2MTOKEN_") || k == "SSL_CERT_FILE" {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	t.Setenv("HOME", t.TempDir())
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// startAgent runs 'm2mtoken agent --log-json' with args in-process, in
// the environment env, and waits until it logs that every source holds a
// token.
func startAgent(t *testing.T, env []string, args ...string) *agentRun {
	t.Helper()
	p := launchAgent(t, env, args...)
	p.waitLog("ready: every source holds a token")
	return p
}

// launchAgent runs 'm2mtoken agent --log-json' with args in-process, in
// the environment env, and returns at once. When the test ends, it is
// stopped, and the goroutines must be back to those before it started.
func launchAgent(t *testing.T, env []string, args ...string) *agentRun {
	t.Helper()
	setEnv(t, env)
	before := goleak.IgnoreCurrent()
	ctx, cancel := context.WithCancel(context.Background())
	hup := make(chan struct{}, 1)
	// SIGHUP reloads, as the command's does; any other signal stops.
	p := &agentRun{Log: logtest.New(), t: t, done: make(chan struct{}), stop: func(sig os.Signal) {
		if sig == syscall.SIGHUP {
			hup <- struct{}{}
			return
		}
		cancel()
	}}
	go func() {
		p.err = runAgent(ctx, append([]string{"--log-json"}, args...), io.Discard, p.Log, hup)
		close(p.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
		goleak.VerifyNone(t, before)
	})
	return p
}

// launchBinary runs the agent binary with env and args (plus --log-json),
// under the command wrap if it is not empty (the binary and its arguments
// follow it), and returns at once.
func launchBinary(t *testing.T, wrap []string, env []string, args ...string) *agentRun {
	t.Helper()
	argv := append(append(append([]string(nil), wrap...), bin, "agent", "--log-json"), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append([]string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}, env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &agentRun{Log: logtest.New(), t: t, done: make(chan struct{}), pid: cmd.Process.Pid,
		stop: func(sig os.Signal) { cmd.Process.Signal(sig) }}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.Write(append(sc.Bytes(), '\n'))
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// unixClient returns an HTTP client over the Unix socket sock, closed when
// the test ends.
func unixClient(t *testing.T, sock string) *http.Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: waitFor}
}

// get sends GET url with c and returns the status and the body.
func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func needProgram(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed, and CI is set", name)
		}
		t.Skipf("%s is not installed", name)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
