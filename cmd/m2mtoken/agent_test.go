//go:build unix

package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// agentProc is a running 'm2mtoken agent' with JSON logs.
type agentProc struct {
	t     *testing.T
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []map[string]any
	raw   bytes.Buffer
	done  chan struct{} // closed when stderr ends
	exit  chan error
}

// startAgent runs the agent binary with env and args (plus --log-json) and
// waits until it logs that every source holds a token, or until want
// lines have been logged if ready is false.
func startAgent(t *testing.T, env []string, args ...string) *agentProc {
	t.Helper()
	p := launchAgent(t, nil, env, args...)
	p.waitLog("ready: every source holds a token", 30*time.Second)
	return p
}

// launchAgent runs the agent binary as startAgent does, under the command
// wrap if it is not empty (the binary and its arguments follow it), and
// returns at once.
func launchAgent(t *testing.T, wrap []string, env []string, args ...string) *agentProc {
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
	p := &agentProc{t: t, cmd: cmd, done: make(chan struct{}), exit: make(chan error, 1)}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var m map[string]any
			p.mu.Lock()
			p.raw.Write(sc.Bytes())
			p.raw.WriteByte('\n')
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				p.lines = append(p.lines, m)
			}
			p.mu.Unlock()
		}
	}()
	go func() { <-p.done; p.exit <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-p.exit
		}
	})
	return p
}

// waitLog waits for a log line with msg.
func (p *agentProc) waitLog(msg string, timeout time.Duration) map[string]any {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if l := p.find(msg); l != nil {
			return l
		}
		select {
		case <-p.done:
			p.t.Fatalf("the agent exited before logging %q:\n%s", msg, p.logs())
		case <-time.After(20 * time.Millisecond):
		}
	}
	p.t.Fatalf("no %q in the agent's log after %v:\n%s", msg, timeout, p.logs())
	return nil
}

func (p *agentProc) find(msg string) map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.lines {
		if l["msg"] == msg {
			return l
		}
	}
	return nil
}

func (p *agentProc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.raw.String()
}

// addr returns the address the agent logged for what it serves ("token
// endpoint" or "proxy") on a TCP port.
func (p *agentProc) addr(serves string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.lines {
		if a, _ := l["addr"].(string); l["msg"] == "listening" && l["serves"] == serves && !strings.HasPrefix(a, "unix:") {
			return a
		}
	}
	p.t.Fatalf("no %s listening on TCP:\n%s", serves, p.raw.String())
	return ""
}

// stop sends sig and waits for the agent to exit; it returns the exit
// error.
func (p *agentProc) stop(sig os.Signal) error {
	p.t.Helper()
	p.cmd.Process.Signal(sig)
	select {
	case err := <-p.exit:
		return err
	case <-time.After(30 * time.Second):
		p.t.Fatalf("the agent did not stop within 30 s of %v:\n%s", sig, p.logs())
	}
	return nil
}

// curl runs curl with args and returns its status code and body.
func curl(t *testing.T, args ...string) (int, string) {
	t.Helper()
	out, err := exec.Command("curl", append([]string{"-sS", "--max-time", "20", "-w", "\n%{http_code}"}, args...)...).Output()
	if err != nil {
		t.Fatalf("curl %v: %v", args, err)
	}
	s := string(out)
	i := strings.LastIndexByte(s, '\n')
	var code int
	fmt.Sscan(s[i+1:], &code)
	return code, s[:i]
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

// protectedAPI is an API behind the issuer: /api/private needs a valid
// token; /echo echoes the request body; /stream sends a line, then waits
// for release before the second.
type protectedAPI struct {
	*httptest.Server
	release chan struct{}
	gotBody chan string
}

func newProtectedAPI(t *testing.T, s *m2mtest.Server) *protectedAPI {
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
		api.gotBody <- first
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

// TestAgentEndToEnd runs the agent binary with the default source from
// the environment, a Unix socket, a TCP endpoint and a proxy, and drives
// it with curl, Python and Go clients.
func TestAgentEndToEnd(t *testing.T) {
	needProgram(t, "curl")
	s := issuer(t)
	s.SetTokenLifetime(time.Hour)
	api := newProtectedAPI(t, s)
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	env := tokenEnv(s, dir)
	p := startAgent(t, env, "--listen", "unix:"+sock, "--listen", "127.0.0.1:0", "--proxy", "default=127.0.0.1:0="+api.URL)
	tcp, prx := p.addr("token endpoint"), p.addr("proxy")

	info, err := os.Stat(sock)
	if err != nil || info.Mode().Perm() != 0o600 || info.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket: %v %v", info.Mode(), err)
	}

	// curl over the Unix socket and over TCP.
	code, body := curl(t, "--unix-socket", sock, "http://localhost/v1/token/default")
	var ans tokenAnswer
	if code != 200 || json.Unmarshal([]byte(body), &ans) != nil || ans.TokenType != "Bearer" || ans.ExpiresIn < 3500 {
		t.Fatalf("unix: %d %s", code, body)
	}
	if _, err := s.Verify(ans.AccessToken, aud); err != nil {
		t.Fatalf("the token does not verify: %v", err)
	}
	code, body = curl(t, "-H", "M2MToken-Agent: 1", "http://"+tcp+"/v1/token/default")
	var ans2 tokenAnswer
	if code != 200 || json.Unmarshal([]byte(body), &ans2) != nil || ans2.AccessToken != ans.AccessToken {
		t.Fatalf("tcp: %d %s", code, body)
	}
	if code, body := curl(t, "--unix-socket", sock, "http://localhost/healthz"); code != 200 || !strings.Contains(body, `"status":"ok"`) {
		t.Fatalf("healthz: %d %s", code, body)
	}

	// The SSRF and DNS rebinding refusals.
	for name, args := range map[string][]string{
		"no header":      {"http://" + tcp + "/v1/token/default"},
		"rebinding":      {"-H", "M2MToken-Agent: 1", "-H", "Host: attacker.example", "http://" + tcp + "/v1/token/default"},
		"browser":        {"-H", "M2MToken-Agent: 1", "-H", "Origin: https://attacker.example", "http://" + tcp + "/v1/token/default"},
		"forwarded":      {"-H", "M2MToken-Agent: 1", "-H", "X-Forwarded-For: 203.0.113.9", "http://" + tcp + "/v1/token/default"},
		"proxy rebound":  {"-H", "Host: attacker.example", "http://" + prx + "/api/private"},
		"proxy browser":  {"-H", "Origin: https://attacker.example", "http://" + prx + "/api/private"},
		"as open proxy":  {"--proxy", "http://" + prx, "http://example.com/"},
		"stats over TCP": {"http://" + tcp + "/v1/stats"},
	} {
		code, body := curl(t, args...)
		if code != 403 || strings.Contains(body, "eyJ") {
			t.Errorf("%s: %d %s", name, code, body)
		}
	}
	// CONNECT is refused: curl fails to open the tunnel, and says what the
	// proxy answered.
	out, _ := exec.Command("curl", "-sS", "--max-time", "20", "--proxytunnel", "--proxy", "http://"+prx, "-w", "%{http_connect}", "http://127.0.0.1:1/").Output()
	if string(out) != "405" {
		t.Errorf("CONNECT: %q", out)
	}
	// An absolute-form request for a loopback host still goes to the one
	// upstream, never to the host it names.
	if code, body := curl(t, "--proxy", "http://"+prx, "http://127.0.0.1:1/api/private?x=1"); code != 200 || !strings.Contains(body, `"query":"x=1"`) {
		t.Errorf("absolute-form request: %d %s", code, body)
	}

	// The proxy adds the token, replacing any Authorization the client sent.
	if code, body := curl(t, "-H", "Authorization: Bearer not-a-token", "http://"+prx+"/api/private?a=b"); code != 200 || !strings.Contains(body, `"message":"private"`) {
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
		resp, err := http.Post("http://"+prx+"/echo", "text/plain", pr)
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
	case <-time.After(20 * time.Second):
		t.Fatal("the first line of a streamed request body did not reach the upstream")
	}
	io.WriteString(pw, strings.Repeat("x", 1<<20))
	pw.Close()
	if r := <-res; r.err != nil || r.body != fmt.Sprint(len("line one\n")+1<<20) {
		t.Fatalf("echo: %q %v", r.body, r.err)
	}
	// ...and the response body.
	resp, err := http.Get("http://" + prx + "/stream")
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
	code, body = curl(t, "--unix-socket", sock, "http://localhost/v1/stats")
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

	// SIGTERM: the agent stops, removes its socket, exits 0, and its log
	// never showed the secret or the token.
	if err := p.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.logs())
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the socket file is still there: %v", err)
	}
	if p.find("stopped") == nil {
		t.Errorf("no 'stopped' in the log:\n%s", p.logs())
	}
	if logs := p.logs(); strings.Contains(logs, secret) || strings.Contains(logs, ans.AccessToken) {
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

// runPython runs a Python 3 script with args and fails the test if it
// fails.
func runPython(t *testing.T, script string, args ...string) {
	t.Helper()
	needProgram(t, "python3")
	f := filepath.Join(t.TempDir(), "client.py")
	os.WriteFile(f, []byte(script), 0o600)
	out, err := exec.Command("python3", append([]string{f}, args...)...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("python3: %v\n%s", err, out)
	}
}

// TestAgentConfigFileAndSink runs the agent with two sources from a
// config file (secrets from the environment and from a file) and a file
// sink for 2-second tokens: the sink holds a new token after a refresh.
// --group shares the socket and the sink with a group. SIGINT stops it as
// SIGTERM does.
func TestAgentConfigFileAndSink(t *testing.T) {
	needProgram(t, "curl")
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
	sock := filepath.Join(dir, "a.sock")
	sink := filepath.Join(dir, "main.token")
	gid := os.Getgid()
	p := startAgent(t, []string{"MAIN_SECRET=" + secret}, "--config", conf, "--listen", "unix:"+sock, "--sink", "main="+sink, "--group", strconv.Itoa(gid))
	if info, err := os.Stat(sock); err != nil || info.Mode().Perm() != 0o660 || int(info.Sys().(*syscall.Stat_t).Gid) != gid {
		t.Fatalf("socket with --group: %v %v", info.Mode(), err)
	}

	for name, audience := range map[string]string{"main": aud, "other": "https://other/"} {
		code, body := curl(t, "--unix-socket", sock, "http://localhost/v1/token/"+name)
		var ans tokenAnswer
		if code != 200 || json.Unmarshal([]byte(body), &ans) != nil {
			t.Fatalf("%s: %d %s", name, code, body)
		}
		if _, err := s.Verify(ans.AccessToken, audience); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}

	first, err := os.ReadFile(sink)
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := os.Stat(sink); info.Mode().Perm() != 0o640 || int(info.Sys().(*syscall.Stat_t).Gid) != gid {
		t.Fatalf("sink mode %v", info.Mode())
	}
	var second []byte
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if b, err := os.ReadFile(sink); err == nil && !bytes.Equal(b, first) {
			second = b
			break
		}
	}
	if second == nil {
		t.Fatalf("the sink still holds the first token after 20 s:\n%s", p.logs())
	}
	if _, err := s.Verify(string(second), aud); err != nil {
		t.Fatalf("the refreshed token in the sink does not verify: %v", err)
	}
	if err := p.stop(os.Interrupt); err != nil {
		t.Fatalf("exit after SIGINT: %v", err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the socket file is still there: %v", err)
	}
	// The sink outlives the agent, on purpose: readers keep a valid token
	// while it restarts.
	// (Its tokens live 2 s here, so it is not verified again.)
	if b, err := os.ReadFile(sink); err != nil || !bytes.HasPrefix(b, []byte("eyJ")) {
		t.Errorf("the sink is gone or empty after the agent stopped: %q, %v", b, err)
	}
	if logs := p.logs(); strings.Contains(logs, secret) || strings.Contains(logs, "other-secret-CANARY") {
		t.Errorf("the log reveals a secret:\n%s", logs)
	}
}

// TestAgentCommandErrors: what a user sees for the common mistakes.
func TestAgentCommandErrors(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "agent.json")
	os.WriteFile(conf, []byte(`{"sources": [{"name": "api", "domain": "t.auth0.com", "client_id": "c", "client_secret": "inline-CANARY"}]}`), 0o600)
	for _, tc := range []struct {
		env  []string
		args []string
		code int
		want string
	}{
		{nil, []string{"agent", "--config", conf, "--listen", "unix:" + filepath.Join(dir, "s")}, 1, `source "api": "client_secret": a secret is never written in the config file`},
		{nil, []string{"agent", "--config", filepath.Join(dir, "missing.json"), "--listen", "unix:" + filepath.Join(dir, "s")}, 1, "--config: open"},
		{nil, []string{"agent", "--config", conf, "--client-id", "x", "--listen", "unix:" + filepath.Join(dir, "s")}, 2, "--client-id and --config"},
		{[]string{"AUTH0_CLIENT_ID=c", "AUTH0_CLIENT_SECRET=s", "AUTH0_DOMAIN=t.auth0.com"}, []string{"agent", "--listen", "0.0.0.0:8080"}, 2, `--listen "0.0.0.0:8080": only a loopback address`},
		{[]string{"AUTH0_CLIENT_ID=c", "AUTH0_CLIENT_SECRET=s", "AUTH0_DOMAIN=t.auth0.com"}, []string{"agent"}, 2, "nothing to serve"},
		{[]string{"AUTH0_CLIENT_SECRET=s", "AUTH0_DOMAIN=t.auth0.com"}, []string{"agent", "--listen", "unix:" + filepath.Join(dir, "s")}, 1, "--client-id or AUTH0_CLIENT_ID is empty"},
		{nil, []string{"agent", "--help"}, 0, "M2MToken-Agent: 1"},
	} {
		r := runBin(t, tc.env, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr+r.stdout, tc.want) || strings.Contains(r.stderr, "inline-CANARY") {
			t.Errorf("%v: exit %d, want %d with %q:\n%s", tc.args, r.code, tc.code, tc.want, r.stderr)
		}
	}
	// A socket another agent listens on is not taken over.
	busy := filepath.Join(dir, "busy.sock")
	ln, err := net.Listen("unix", busy)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r := runBin(t, []string{"AUTH0_CLIENT_ID=c", "AUTH0_CLIENT_SECRET=s", "AUTH0_DOMAIN=t.auth0.com"}, "agent", "--listen", "unix:"+busy)
	if r.code != 1 || !strings.Contains(r.stderr, "--listen unix:"+busy+": another process is listening") {
		t.Errorf("busy socket: exit %d %q", r.code, r.stderr)
	}
	// A port in use is named with its flag.
	r = runBin(t, []string{"AUTH0_CLIENT_ID=c", "AUTH0_CLIENT_SECRET=s", "AUTH0_DOMAIN=t.auth0.com"}, "agent", "--listen", "unix:"+filepath.Join(dir, "ok.sock"), "--proxy", "default="+busyPort(t)+"=https://api.example.com")
	if r.code != 1 || !strings.Contains(r.stderr, "--proxy default=LISTEN 127.0.0.1:") || !strings.Contains(r.stderr, "address already in use") {
		t.Errorf("port in use: exit %d %q", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "ok.sock")); !os.IsNotExist(err) {
		t.Errorf("a failed start left its socket file: %v", err)
	}
	// A path that is not a socket is never removed.
	regular := filepath.Join(dir, "regular")
	os.WriteFile(regular, []byte("keep"), 0o600)
	r = runBin(t, []string{"AUTH0_CLIENT_ID=c", "AUTH0_CLIENT_SECRET=s", "AUTH0_DOMAIN=t.auth0.com"}, "agent", "--listen", "unix:"+regular)
	if b, _ := os.ReadFile(regular); r.code != 1 || !strings.Contains(r.stderr, "not a socket") || string(b) != "keep" {
		t.Errorf("regular file: exit %d %q", r.code, r.stderr)
	}
}

// readmeBlock returns the README's text from the line that starts with
// start up to the closing fence.
func readmeBlock(t *testing.T, start string) string {
	t.Helper()
	b, err := os.ReadFile("../../docs/agent.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, start)
	if i < 0 {
		t.Fatalf("the README has no %q", start)
	}
	j := strings.Index(s[i:], "```")
	if j < 0 {
		t.Fatalf("no closing fence after %q", start)
	}
	return s[i : i+j]
}

// TestAgentReadmeRecipes runs the README's pytest fixture and cron lines
// against an agent. Without pytest installed, the fixture runs under a
// stand-in that calls the test with the fixture's value.
func TestAgentReadmeRecipes(t *testing.T) {
	needProgram(t, "curl")
	needProgram(t, "python3")
	s := issuer(t)
	api := newProtectedAPI(t, s)
	dir := t.TempDir()
	sock, sink := filepath.Join(dir, "agent.sock"), filepath.Join(dir, "default.token")
	p := startAgent(t, tokenEnv(s, dir), "--listen", "unix:"+sock, "--sink", "default="+sink, "--proxy", "default=127.0.0.1:0="+api.URL)
	prx := p.addr("proxy")

	py := t.TempDir()
	os.WriteFile(filepath.Join(py, "test_api.py"), []byte(readmeBlock(t, "# test_api.py")), 0o600)
	cmd := exec.Command("python3", "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_api.py")
	if exec.Command("python3", "-c", "import pytest").Run() != nil {
		os.WriteFile(filepath.Join(py, "pytest.py"), []byte("def fixture(f):\n    return f\n"), 0o600)
		cmd = exec.Command("python3", "-c", "import test_api as t; t.test_private(t.access_token()); print('1 passed')")
	}
	cmd.Dir = py
	cmd.Env = append(os.Environ(), "M2MTOKEN_AGENT_SOCKET="+sock, "API_URL="+api.URL)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "1 passed") {
		t.Fatalf("the README's pytest fixture: %v\n%s", err, out)
	}

	var lines []string
	for _, l := range strings.Split(readmeBlock(t, "*/5 * * * * "), "\n") {
		if job, ok := strings.CutPrefix(l, "*/5 * * * * "); ok {
			lines = append(lines, job)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("cron lines: %q", lines)
	}
	for _, job := range lines {
		job = strings.NewReplacer("/run/m2mtoken/default.token", sink, "https://api.example.com", api.URL, "http://127.0.0.1:9000", "http://"+prx).Replace(job)
		out, err := exec.Command("sh", "-c", job).CombinedOutput()
		if err != nil || string(out) != "synced" {
			t.Errorf("cron line %q: %v %q", job, err, out)
		}
	}
}

// busyPort returns the address of a TCP listener held open for the test.
func busyPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// TestAgentDPoP: a source with a DPoP key, for an API that requires DPoP.
// Through the proxy, curl and Python need no token code, proofs included;
// the token endpoint refuses a bare DPoP-bound token and answers the
// headers of one request when asked with ?url=; a sink is refused.
func TestAgentDPoP(t *testing.T) {
	needProgram(t, "curl")
	s := m2mtest.NewServer(m2mtest.Client{ID: "dp", Secret: secret, Audiences: []string{aud}, RequireDPoP: true})
	defer s.Close()
	api := newProtectedAPI(t, s)
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	keyFile := filepath.Join(dir, "dpop.pem")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	conf := filepath.Join(dir, "agent.json")
	os.WriteFile(conf, fmt.Appendf(nil, `{"sources": [{"name": "dp", "token_url": %q, "client_id": "dp",
	  "client_secret_env": "DP_SECRET", "audience": %q, "dpop_key_file": %q, "require_dpop": true}]}`, s.TokenURL(), aud, keyFile), 0o600)
	env := []string{"DP_SECRET=" + secret}

	if r := runBin(t, env, "agent", "--config", conf, "--sink", "dp="+filepath.Join(dir, "tok")); r.code != 2 || !strings.Contains(r.stderr, `source "dp" binds its tokens to a DPoP key`) {
		t.Fatalf("a sink for a DPoP source: exit %d %q", r.code, r.stderr)
	}

	sock := filepath.Join(dir, "a.sock")
	p := startAgent(t, env, "--config", conf, "--listen", "unix:"+sock, "--proxy", "dp=127.0.0.1:0="+api.URL)
	prx := p.addr("proxy")

	if code, body := curl(t, "http://"+prx+"/api/private"); code != 200 || !strings.Contains(body, `"message":"private"`) {
		t.Fatalf("curl through the proxy: %d %s", code, body)
	}
	runPython(t, `
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/api/private") as r:
    assert r.status == 200
with urllib.request.urlopen(urllib.request.Request(sys.argv[1] + "/echo", data=b"x\n" * 10, method="POST")) as r:
    assert r.read() == b"20"
print("ok")
`, "http://"+prx)

	if code, body := curl(t, "--unix-socket", sock, "http://localhost/v1/token/dp"); code != 400 || !strings.Contains(body, "dpop_bound") || strings.Contains(body, "eyJ") {
		t.Fatalf("a bare DPoP-bound token: %d %s", code, body)
	}
	target := api.URL + "/api/private"
	code, body := curl(t, "--unix-socket", sock, "http://localhost/v1/token/dp?method=GET&url="+url.QueryEscape(target))
	var ans tokenAnswer
	if code != 200 || json.Unmarshal([]byte(body), &ans) != nil || ans.TokenType != "DPoP" || ans.Headers["DPoP"] == "" ||
		ans.Headers["Authorization"] != "DPoP "+ans.AccessToken {
		t.Fatalf("headers for one request: %d %s", code, body)
	}
	args := []string{"-H", "Authorization: " + ans.Headers["Authorization"], "-H", "DPoP: " + ans.Headers["DPoP"], target}
	if code, body := curl(t, args...); code != 200 {
		t.Fatalf("the API refused the agent's headers: %d %s", code, body)
	}
	if code, _ := curl(t, args...); code != 401 {
		t.Fatalf("a replayed proof: %d, want 401", code)
	}
	if err := p.stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if logs := p.logs(); strings.Contains(logs, secret) || strings.Contains(logs, ans.AccessToken) {
		t.Errorf("the log reveals the secret or the token:\n%s", logs)
	}
}

// TestAgentWithServe runs the whole chain as processes: 'm2mtoken serve'
// is the issuer and the Auth0 quickstart's API; the agent takes its
// settings from serve's exports; a Python client calls /api/private and
// /api/private-scoped through the agent's proxy, with no token code, and
// with tokens from the agent's endpoint over TCP and the Unix socket.
func TestAgentWithServe(t *testing.T) {
	needProgram(t, "curl")
	needProgram(t, "python3")
	serve := exec.Command(bin, "serve", "--client-secret", secret, "--ttl", "1h")
	stdout, _ := serve.StdoutPipe()
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { serve.Process.Signal(os.Interrupt); serve.Wait() }()
	env, lines := readExports(t, stdout)
	var apiURL string
	for _, l := range lines {
		if v, ok := strings.CutPrefix(l, "API URL:"); ok {
			apiURL = strings.TrimSuffix(strings.TrimSpace(v), "/")
		}
	}
	if apiURL == "" {
		t.Fatalf("serve printed no API URL: %q", lines)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	p := startAgent(t, env, "--listen", "unix:"+sock, "--listen", "127.0.0.1:0", "--proxy", "default=127.0.0.1:0="+apiURL)
	runPython(t, `
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
`, "--tcp", p.addr("token endpoint"), "--unix", sock, "--proxy", "http://"+p.addr("proxy"), "--api", apiURL)
}
