//go:build unix

// The agent end to end, in-process: a token endpoint on a Unix socket and
// loopback TCP, a proxy, sinks, a group, and a clean stop.

package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken/m2mtest"
	"golang.org/x/oauth2"
)

// TestAgentEndToEnd runs the agent with a Unix socket, a TCP endpoint and
// a proxy, and drives it with Go and Python clients.
func TestAgentEndToEnd(t *testing.T) {
	s := issuer(t)
	s.SetTokenLifetime(time.Hour)
	api := newProtectedAPI(t, s)
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	a := startAgent(t, Config{Sources: []Source{source(s)},
		Listeners: []Listener{{"unix:" + sock}, {"127.0.0.1:0"}},
		Proxies:   []Proxy{{Source: "default", Listen: "127.0.0.1:0", Upstream: api.URL}}})
	tcp, prx := a.tcp(), a.proxy(0)
	uc, tc := client(t, sock), client(t, "")

	info, err := os.Stat(sock)
	if err != nil || info.Mode().Perm() != 0o600 || info.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket: %v %v", info.Mode(), err)
	}

	// Over the Unix socket and over TCP.
	code, body := get(t, uc, "http://localhost/v1/token/default")
	var ans tokenAnswer
	if code != 200 || json.Unmarshal([]byte(body), &ans) != nil || ans.TokenType != "Bearer" || ans.ExpiresIn < 3500 {
		t.Fatalf("unix: %d %s", code, body)
	}
	if _, err := s.Verify(ans.AccessToken, aud); err != nil {
		t.Fatalf("the token does not verify: %v", err)
	}
	code, body = get(t, tc, "http://"+tcp+"/v1/token/default", agentHeader, "1")
	var ans2 tokenAnswer
	if code != 200 || json.Unmarshal([]byte(body), &ans2) != nil || ans2.AccessToken != ans.AccessToken {
		t.Fatalf("tcp: %d %s", code, body)
	}
	if code, body := get(t, uc, "http://localhost/healthz"); code != 200 || !strings.Contains(body, `"status":"ok"`) {
		t.Fatalf("healthz: %d %s", code, body)
	}

	// The SSRF and DNS rebinding refusals.
	for name, args := range map[string][]string{
		"no header":      {"http://" + tcp + "/v1/token/default"},
		"rebinding":      {"http://" + tcp + "/v1/token/default", agentHeader, "1", "Host", "attacker.example"},
		"browser":        {"http://" + tcp + "/v1/token/default", agentHeader, "1", "Origin", "https://attacker.example"},
		"forwarded":      {"http://" + tcp + "/v1/token/default", agentHeader, "1", "X-Forwarded-For", "203.0.113.9"},
		"proxy rebound":  {"http://" + prx + "/api/private", "Host", "attacker.example"},
		"proxy browser":  {"http://" + prx + "/api/private", "Origin", "https://attacker.example"},
		"stats over TCP": {"http://" + tcp + "/v1/stats"},
	} {
		code, body := get(t, tc, args[0], args[1:]...)
		if code != 403 || strings.Contains(body, "eyJ") {
			t.Errorf("%s: %d %s", name, code, shown(body))
		}
	}
	// As an open proxy: a request for another host, through it.
	pu, _ := url.Parse("http://" + prx)
	open := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
	t.Cleanup(open.CloseIdleConnections)
	if code, body := get(t, open, "http://example.com/"); code != 403 || strings.Contains(body, "eyJ") {
		t.Errorf("as open proxy: %d %s", code, shown(body))
	}
	// CONNECT is refused.
	if code, _ := rawGet(t, prx, "CONNECT", "127.0.0.1:1"); code != 405 {
		t.Errorf("CONNECT: %d", code)
	}
	// An absolute-form request for a loopback host still goes to the one
	// upstream, never to the host it names.
	if code, body := get(t, open, "http://127.0.0.1:1/api/private?x=1"); code != 200 || !strings.Contains(body, `"query":"x=1"`) {
		t.Errorf("absolute-form request: %d %s", code, body)
	}

	// The proxy adds the token, replacing any Authorization the client sent.
	if code, body := get(t, tc, "http://"+prx+"/api/private?a=b", "Authorization", "Bearer not-a-token"); code != 200 || !strings.Contains(body, `"message":"private"`) {
		t.Fatalf("proxy: %d %s", code, body)
	}
	// It streams the request body...
	pr, pw := io.Pipe()
	type result struct {
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := tc.Post("http://"+prx+"/echo", "text/plain", pr)
		if err != nil {
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		res <- result{string(b), err}
	}()
	io.WriteString(pw, "line one\n")
	select {
	case got := <-api.gotBody:
		if got != "line one\n" {
			t.Fatalf("upstream got %q", got)
		}
	case <-time.After(waitFor):
		t.Fatal("the first line of a streamed request body did not reach the upstream")
	}
	io.WriteString(pw, strings.Repeat("x", 1<<20))
	pw.Close()
	if r := <-res; r.err != nil || r.body != fmt.Sprint(len("line one\n")+1<<20) {
		t.Fatalf("echo: %q %v", r.body, r.err)
	}
	// ...and the response body.
	resp, err := tc.Get("http://" + prx + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); line != "first\n" || err != nil {
		t.Fatalf("stream: %q %v", line, err)
	}
	close(api.release)
	if rest, _ := io.ReadAll(br); string(rest) != "second\n" {
		t.Fatalf("stream rest: %q", rest)
	}
	resp.Body.Close()

	// A Python client: the token endpoint over TCP and the Unix socket, and
	// the proxy, to the protected API.
	runPython(t, pythonClient, "--tcp", tcp, "--unix", sock, "--proxy", "http://"+prx, "--api", api.URL)

	// Stats: counters, no secret, no token.
	code, body = get(t, uc, "http://localhost/v1/stats")
	var st struct {
		Sources map[string]sourceStats `json:"sources"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || st.Sources["default"].TokenRequests != 1 || !st.Sources["default"].Ready {
		t.Fatalf("stats: %d %s", code, body)
	}
	if strings.Contains(body, secret) || strings.Contains(body, ans.AccessToken) {
		t.Fatalf("stats reveal the secret or the token: %s", body)
	}
	if ps := st.Sources["default"].Proxies[prx]; ps.Requests < 5 || ps.Upstream != api.URL {
		t.Errorf("proxy stats: %+v", st.Sources["default"].Proxies)
	}
	if s.TokensIssued("cli") != 1 {
		t.Errorf("%d tokens issued, want 1", s.TokensIssued("cli"))
	}

	// Stopped, the agent removes its socket, and its log never showed the
	// secret or the token.
	uc.CloseIdleConnections()
	tc.CloseIdleConnections()
	if err := a.stop(); err != nil {
		t.Fatalf("Run: %v\n%s", err, a.log)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the socket file is still there: %v", err)
	}
	if a.log.Find("stopped") == nil {
		t.Errorf("no 'stopped' in the log:\n%s", a.log)
	}
	if logs := a.log.String(); strings.Contains(logs, secret) || strings.Contains(logs, ans.AccessToken) {
		t.Errorf("the log reveals the secret or the token:\n%s", logs)
	}
}

const pythonClient = `
import argparse, http.client, json, socket, sys, urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--tcp"); ap.add_argument("--unix"); ap.add_argument("--proxy"); ap.add_argument("--api")
a = ap.parse_args()

class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.path = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)

def call_api(token):
    req = urllib.request.Request(a.api + "/api/private", headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req) as r:
        assert r.status == 200, r.status
        return json.load(r)

# The token endpoint over TCP needs the agent's header.
req = urllib.request.Request("http://" + a.tcp + "/v1/token/default", headers={"M2MToken-Agent": "1"})
with urllib.request.urlopen(req) as r:
    tok = json.load(r)
assert tok["token_type"] == "Bearer" and tok["expires_in"] > 0, tok
assert call_api(tok["access_token"])["message"] == "private"

# Without it: 403.
try:
    urllib.request.urlopen("http://" + a.tcp + "/v1/token/default")
    sys.exit("no 403 without the header")
except urllib.error.HTTPError as e:
    assert e.code == 403, e.code

# Over the Unix socket.
c = UnixConnection(a.unix)
c.request("GET", "/v1/token/default")
r = c.getresponse()
assert r.status == 200, r.status
assert call_api(json.load(r)["access_token"])["message"] == "private"

# Through the proxy: no token code at all.
with urllib.request.urlopen(a.proxy + "/api/private") as r:
    assert json.load(r)["message"] == "private"
with urllib.request.urlopen(urllib.request.Request(a.proxy + "/echo", data=b"hello\n" * 1000, method="POST")) as r:
    assert r.read() == b"6000", "echo"
print("python client: ok")
`

// TestAgentConfigFileAndSink runs the agent with two sources from a
// config file (secrets from the environment and from a file) and a file
// sink for 2-second tokens: the sink holds a new token after a refresh.
// Group shares the socket and the sink with a group. Stopped, the agent
// removes its socket and keeps the sink.
func TestAgentConfigFileAndSink(t *testing.T) {
	s := issuer(t)
	s.AddClient(m2mtest.Client{ID: "other", Secret: "other-secret-CANARY", Audiences: []string{"https://other/"}})
	s.SetTokenLifetime(2 * time.Second)
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "other-secret")
	os.WriteFile(secretFile, []byte("other-secret-CANARY\n"), 0o600)
	conf := filepath.Join(dir, "agent.json")
	os.WriteFile(conf, fmt.Appendf(nil, `{"sources": [
	  {"name": "main", "token_url": %q, "client_id": "cli", "client_secret_env": "MAIN_SECRET", "audience": %q},
	  {"name": "other", "token_url": %q, "client_id": "other", "client_secret_file": %q, "audience": "https://other/"}
	]}`, s.TokenURL(), aud, s.TokenURL(), secretFile), 0o600)
	sources, _, err := LoadConfigFile(conf, func(v string) string {
		if v == "MAIN_SECRET" {
			return secret
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "a.sock")
	sink := filepath.Join(dir, "main.token")
	gid := os.Getgid()
	// Each token the watcher of main has written to the sink.
	written := make(chan string, 8)
	a := startAgent(t, Config{Sources: sources, Listeners: []Listener{{"unix:" + sock}}, Sinks: []Sink{{"main", sink}}, Group: strconv.Itoa(gid)},
		func(a *Agent) {
			w := a.byName["main"].w
			deliver := w.deliver
			w.deliver = func(tok *oauth2.Token) error {
				err := deliver(tok)
				select {
				case written <- tok.AccessToken:
				default:
				}
				return err
			}
		})
	if info, err := os.Stat(sock); err != nil || info.Mode().Perm() != 0o660 || int(info.Sys().(*syscall.Stat_t).Gid) != gid {
		t.Fatalf("socket with a group: %v %v", info.Mode(), err)
	}
	uc := client(t, sock)
	for name, audience := range map[string]string{"main": aud, "other": "https://other/"} {
		code, body := get(t, uc, "http://localhost/v1/token/"+name)
		var ans tokenAnswer
		if code != 200 || json.Unmarshal([]byte(body), &ans) != nil {
			t.Fatalf("%s: %d %s", name, code, body)
		}
		if _, err := s.Verify(ans.AccessToken, audience); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}

	first := <-written
	if b, err := os.ReadFile(sink); err != nil || string(b) != first {
		t.Fatalf("the sink does not hold the first token: %v", err)
	}
	if info, _ := os.Stat(sink); info.Mode().Perm() != 0o640 || int(info.Sys().(*syscall.Stat_t).Gid) != gid {
		t.Fatalf("sink mode %v", info.Mode())
	}
	// The refresh, once written, is what the sink holds.
	var refreshed string
	select {
	case refreshed = <-written:
	case <-time.After(waitFor):
		t.Fatalf("no refreshed token written to the sink after %v:\n%s", waitFor, a.log)
	}
	second, err := os.ReadFile(sink)
	if err != nil || string(second) != refreshed || refreshed == first {
		t.Fatalf("the sink holds %q after the refresh %q: %v", second, refreshed, err)
	}
	if _, err := s.Verify(string(second), aud); err != nil {
		t.Fatalf("the refreshed token in the sink does not verify: %v", err)
	}
	uc.CloseIdleConnections()
	if err := a.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the socket file is still there: %v", err)
	}
	// The sink outlives the agent, on purpose: readers keep a valid token
	// while it restarts.
	if b, err := os.ReadFile(sink); err != nil || !bytes.HasPrefix(b, []byte("eyJ")) {
		t.Errorf("the sink is gone or empty after the agent stopped: %q, %v", b, err)
	}
	if logs := a.log.String(); strings.Contains(logs, secret) || strings.Contains(logs, "other-secret-CANARY") {
		t.Errorf("the log reveals a secret:\n%s", logs)
	}
}

// TestAgentFailsToListen: a socket another agent listens on is not taken
// over, a port in use is named with its flag, a path that is not a socket
// is never removed, and a failed start leaves no socket file.
func TestAgentFailsToListen(t *testing.T) {
	s := issuer(t)
	dir := t.TempDir()
	busy := filepath.Join(dir, "busy.sock")
	ln, err := net.Listen("unix", busy)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer port.Close()
	regular := filepath.Join(dir, "regular")
	os.WriteFile(regular, []byte("keep"), 0o600)
	ok := filepath.Join(dir, "ok.sock")
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Listeners: []Listener{{"unix:" + busy}}}, "--listen unix:" + busy + ": another process is listening"},
		{Config{Listeners: []Listener{{"unix:" + ok}}, Proxies: []Proxy{{Source: "default", Listen: port.Addr().String(), Upstream: "https://api.example.com"}}}, "--proxy default=LISTEN 127.0.0.1:"},
		{Config{Listeners: []Listener{{"unix:" + regular}}}, "not a socket"},
	} {
		tc.cfg.Sources = []Source{source(s)}
		a := launchAgent(t, tc.cfg)
		<-a.done
		if a.err == nil || !strings.Contains(a.err.Error(), tc.want) {
			t.Errorf("Run: %v; want %q", a.err, tc.want)
		}
	}
	if _, err := os.Stat(ok); !os.IsNotExist(err) {
		t.Errorf("a failed start left its socket file: %v", err)
	}
	if b, _ := os.ReadFile(regular); string(b) != "keep" {
		t.Errorf("the regular file at the socket's path was changed: %q", b)
	}
}
