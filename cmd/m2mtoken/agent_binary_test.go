//go:build unix

// The agent binary's smoke test: what only a real process shows, its
// signals, its socket's permissions and its shutdown. Everything else about
// the agent is tested in-process, in internal/agent and agent_cmd_test.go.

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestAgentBinary runs the agent binary with a Unix socket shared with a
// group (mode 0660), a TCP endpoint and a sink; fetches a token over the
// socket; and stops it with SIGTERM: it exits 0, removes its socket,
// keeps its sink (readers ride out a restart), and never logged the
// secret or the token. A second run is stopped with SIGINT the same way.
// Before it stops, each run gets a SIGHUP, whose default action would
// kill it at once: with no config file to reload, it says so and goes on
// serving, over the same connection.
func TestAgentBinary(t *testing.T) {
	s := issuer(t)
	// A slow upstream of the proxy: a request stays in flight until the
	// agent has begun to stop.
	got := make(chan chan struct{}, 1)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		release := make(chan struct{})
		got <- release
		select {
		case <-release:
			io.WriteString(w, "finished")
		case <-r.Context().Done(): // the agent went away
		}
	}))
	t.Cleanup(slow.Close)
	for _, sig := range []os.Signal{syscall.SIGTERM, os.Interrupt} {
		dir := t.TempDir()
		sock, sink := filepath.Join(dir, "agent.sock"), filepath.Join(dir, "default.token")
		gid := os.Getgid()
		p := launchBinary(t, nil, tokenEnv(s, dir), "--listen", "unix:"+sock, "--listen", "127.0.0.1:0",
			"--sink", "default="+sink, "--group", strconv.Itoa(gid), "--proxy", "default=127.0.0.1:0="+slow.URL)
		p.waitLog("ready: every source holds a token")
		info, err := os.Stat(sock)
		if err != nil || info.Mode()&os.ModeSocket == 0 || info.Mode().Perm() != 0o660 || int(info.Sys().(*syscall.Stat_t).Gid) != gid {
			t.Fatalf("socket with --group: %v %v", info.Mode(), err)
		}
		if info, err := os.Stat(sink); err != nil || info.Mode().Perm() != 0o640 {
			t.Fatalf("sink: %v %v", info.Mode(), err)
		}
		code, body := get(t, unixClient(t, sock), "http://localhost/v1/token/default")
		var ans struct {
			AccessToken string `json:"access_token"`
		}
		if code != 200 || json.Unmarshal([]byte(body), &ans) != nil {
			t.Fatalf("over the socket: %d %s", code, body)
		}
		if _, err := s.Verify(ans.AccessToken, aud); err != nil {
			t.Fatal(err)
		}
		p.stop(syscall.SIGHUP)
		p.waitLog("SIGHUP: nothing to reload: the source comes from the flags and the environment, which a running process cannot read again (restart the agent to change them); the secret, key and assertion files they name are followed as they change")
		if code, body := get(t, unixClient(t, sock), "http://localhost/v1/token/default"); code != 200 || !strings.Contains(body, ans.AccessToken) {
			t.Fatalf("after SIGHUP: %d", code)
		}
		inFlight := make(chan string, 1)
		go func() {
			resp, err := http.Get("http://" + p.addr("proxy") + "/slow")
			if err != nil {
				inFlight <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			inFlight <- resp.Status + " " + string(b)
		}()
		release := <-got
		p.stop(sig)
		p.waitLog("stopping")
		close(release)
		if r := <-inFlight; r != "200 OK finished" {
			t.Errorf("%v: the request in flight got %q", sig, r)
		}
		<-p.done
		if p.err != nil {
			t.Fatalf("exit after %v: %v\n%s", sig, p.err, p.logs())
		}
		if _, err := os.Stat(sock); !os.IsNotExist(err) {
			t.Errorf("%v: the socket file is still there: %v", sig, err)
		}
		if b, err := os.ReadFile(sink); err != nil || !bytes.Equal(b, []byte(ans.AccessToken)) {
			t.Errorf("%v: the sink is gone or changed after the agent stopped: %v", sig, err)
		}
		if p.Find("stopped") == nil {
			t.Errorf("%v: no 'stopped' in the log:\n%s", sig, p.logs())
		}
		if l := p.Find("stopping"); l == nil || !strings.Contains(fmt.Sprint(l["reason"]), map[os.Signal]string{
			syscall.SIGTERM: "signal: terminated", os.Interrupt: "signal: interrupt",
		}[sig]) {
			t.Errorf("%v: the 'stopping' line does not say why: %v", sig, l)
		}
		if logs := p.logs(); strings.Contains(logs, secret) || strings.Contains(logs, ans.AccessToken) {
			t.Errorf("%v: the log reveals the secret or the token:\n%s", sig, logs)
		}
	}
}
