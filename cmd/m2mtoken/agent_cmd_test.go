//go:build unix

// The agent command's flags, environment and errors, run in-process; and
// the whole chain with 'm2mtoken serve' as the issuer and API.

package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/m2mtoken/m2mtoken/internal/agent"
)

// TestAgentCommandErrors: what a user sees for the common mistakes, and
// their exit status: 2 for the command line, 1 for the rest.
func TestAgentCommandErrors(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "agent.json")
	os.WriteFile(conf, []byte(`{"sources": [{"name": "api", "domain": "t.auth0.com", "client_id": "c", "client_secret": "inline-CANARY"}]}`), 0o600)
	creds := []string{"AUTH0_CLIENT_ID=c", "AUTH0_CLIENT_SECRET=s", "AUTH0_DOMAIN=t.auth0.com"}
	busy := filepath.Join(dir, "busy.sock")
	ln, err := net.Listen("unix", busy)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, tc := range []struct {
		env  []string
		args []string
		code int
		want string
	}{
		{nil, []string{"agent", "--config", conf, "--listen", "unix:" + filepath.Join(dir, "s")}, 1, `source "api": "client_secret": a secret is never written in the config file`},
		{nil, []string{"agent", "--config", filepath.Join(dir, "missing.json"), "--listen", "unix:" + filepath.Join(dir, "s")}, 1, "--config: open"},
		{nil, []string{"agent", "--config", conf, "--client-id", "x", "--listen", "unix:" + filepath.Join(dir, "s")}, 2, "--client-id and --config"},
		{creds, []string{"agent", "--listen", "0.0.0.0:8080"}, 2, `--listen "0.0.0.0:8080": only a loopback address`},
		{creds, []string{"agent"}, 2, "nothing to serve"},
		{creds, []string{"agent", "--sink", "default"}, 2, `--sink "default": use NAME=PATH`},
		{creds, []string{"agent", "--proxy", "default=127.0.0.1:0"}, 2, "NAME=LISTEN=UPSTREAM"},
		{creds, []string{"agent", "--listen", "127.0.0.1:0", "--max-conns", "0"}, 2, "--max-conns 0: give a number of connections, 1 or more"},
		{creds, []string{"agent", "--listen", "127.0.0.1:0", "--cache", "redis"}, 2, `--cache "redis"`},
		{creds, []string{"agent", "--listen", "127.0.0.1:0", "--log-level", "loud"}, 2, `--log-level "loud"`},
		{[]string{"AUTH0_CLIENT_SECRET=s", "AUTH0_DOMAIN=t.auth0.com"}, []string{"agent", "--listen", "unix:" + filepath.Join(dir, "s")}, 1, "--client-id or AUTH0_CLIENT_ID is empty"},
		{creds, []string{"agent", "--listen", "unix:" + busy}, 1, "--listen unix:" + busy + ": another process is listening"},
		{nil, []string{"agent", "--help"}, 0, "M2MToken-Agent: 1"},
	} {
		r := runIn(t, tc.env, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr+r.stdout, tc.want) || strings.Contains(r.stderr, "inline-CANARY") {
			t.Errorf("%v: exit %d, want %d with %q:\n%s", tc.args, r.code, tc.code, tc.want, r.stderr)
		}
	}
}

// TestAgentDefaultSourceInUserWords: what the library says about a Config
// field of the source "default" names the flag and the variable.
func TestAgentDefaultSourceInUserWords(t *testing.T) {
	setEnv(t, nil)
	cmd := newFlags("agent", "")
	creds := registerCredFlags(cmd)
	if err := cmd.fs.Parse([]string{"--client-secret", "s", "--domain", "t.auth0.com"}); err != nil {
		t.Fatal(err)
	}
	src, err := defaultSource(creds, "none", "")
	if err == nil {
		_, err = agent.New(agent.Config{Sources: []agent.Source{src}, Listeners: []agent.Listener{{Addr: "unix:" + filepath.Join(t.TempDir(), "s")}}})
	}
	if err == nil || !strings.Contains(err.Error(), `source "default"`) || !strings.Contains(err.Error(), "--client-id") ||
		!strings.Contains(err.Error(), "AUTH0_CLIENT_ID") || strings.Contains(err.Error(), "Config.") || strings.Contains(err.Error(), "m2mtoken: ") {
		t.Fatalf("error: %v", err)
	}
}

// TestAgentWithServe runs the whole chain: 'm2mtoken serve' (a process)
// is the issuer and the Auth0 quickstart's API; the agent takes its
// settings from serve's exports; a Python client calls /api/private and
// /api/private-scoped through the agent's proxy, with no token code, and
// with tokens from the agent's endpoint over TCP and the Unix socket.
func TestAgentWithServe(t *testing.T) {
	needProgram(t, "python3")
	served, lines := startServe(t, "--client-secret", secret, "--ttl", "1h")
	env := envList(served)
	apiURL := servedAPI(lines)
	if apiURL == "" {
		t.Fatalf("serve printed no API URL: %q", lines)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	p := startAgent(t, env, "--listen", "unix:"+sock, "--listen", "127.0.0.1:0", "--proxy", "default=127.0.0.1:0="+apiURL)
	script := filepath.Join(t.TempDir(), "client.py")
	os.WriteFile(script, []byte(withServeClient), 0o600)
	out, err := exec.Command("python3", script, "--tcp", p.addr("token endpoint"), "--unix", sock, "--proxy", "http://"+p.addr("proxy"), "--api", apiURL).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("python3: %v\n%s", err, out)
	}
}

const withServeClient = `
import argparse, http.client, json, socket, urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--tcp"); ap.add_argument("--unix"); ap.add_argument("--proxy"); ap.add_argument("--api")
a = ap.parse_args()

def get(url, token=None):
    headers = {"Authorization": "Bearer " + token} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as r:
        assert r.status == 200, (url, r.status)
        return json.load(r)["message"]

# Through the proxy: no token code at all.
for route in ("/api/public", "/api/private", "/api/private-scoped"):
    get(a.proxy + route)

# With a token from the agent over TCP.
req = urllib.request.Request("http://" + a.tcp + "/v1/token/default", headers={"M2MToken-Agent": "1"})
with urllib.request.urlopen(req) as r:
    tok = json.load(r)["access_token"]
assert "private" in get(a.api + "/api/private-scoped", tok)

# And over the Unix socket.
class UnixConnection(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(a.unix)
c = UnixConnection("localhost")
c.request("GET", "/v1/token/default")
assert "private" in get(a.api + "/api/private", json.load(c.getresponse())["access_token"])

# Without a token, serve's API refuses: the agent is what made the calls work.
try:
    get(a.api + "/api/private")
    raise SystemExit("no 401 without a token")
except urllib.error.HTTPError as e:
    assert e.code == 401, e.code
print("python client: ok")
`
