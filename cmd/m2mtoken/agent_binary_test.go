//go:build unix

// The agent binary's smoke test: what only a real process shows, its
// signals, its socket's permissions and its shutdown. Everything else about
// the agent is tested in-process, in internal/agent and agent_cmd_test.go.

package main

import (
	"bytes"
	"encoding/json"
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
func TestAgentBinary(t *testing.T) {
	s := issuer(t)
	for _, sig := range []os.Signal{syscall.SIGTERM, os.Interrupt} {
		dir := t.TempDir()
		sock, sink := filepath.Join(dir, "agent.sock"), filepath.Join(dir, "default.token")
		gid := os.Getgid()
		p := launchBinary(t, nil, tokenEnv(s, dir), "--listen", "unix:"+sock, "--listen", "127.0.0.1:0",
			"--sink", "default="+sink, "--group", strconv.Itoa(gid))
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
		if err := p.halt(sig); err != nil {
			t.Fatalf("exit after %v: %v\n%s", sig, err, p.logs())
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
		if logs := p.logs(); strings.Contains(logs, secret) || strings.Contains(logs, ans.AccessToken) {
			t.Errorf("%v: the log reveals the secret or the token:\n%s", sig, logs)
		}
	}
}
