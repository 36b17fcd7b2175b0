//go:build unix

// Reloading the config file while the agent runs: sources kept (no token
// request), added, removed and changed; pools across reloads; proxies
// kept, swapped, added and removed, with their connections; requests in
// flight through what a reload removes; and files that change nothing.

package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/internal/clock"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// reloadEnv is the agent's environment in these tests: S holds the secret
// of every client.
func reloadEnv(v string) string {
	if v == "S" {
		return secret
	}
	return ""
}

// fileSrc is a source of the config file: client id at tokenURL, for
// audience, with the secret in S; extra are further fields.
func fileSrc(name, tokenURL, id, audience string, extra ...string) string {
	return fmt.Sprintf(`{"name": %q, "token_url": %q, "client_id": %q, "client_secret_env": "S", "audience": %q%s}`,
		name, tokenURL, id, audience, strings.Join(append([]string{""}, extra...), ", "))
}

// filePrx is a proxy of the config file.
func filePrx(source, listen, upstream string, extra ...string) string {
	return fmt.Sprintf(`{"source": %q, "listen": %q, "upstream": %q%s}`, source, listen, upstream, strings.Join(append([]string{""}, extra...), ", "))
}

// writeConf writes the config file at path, with the sources and proxies
// given as JSON objects.
func writeConf(t testing.TB, path string, sources, proxies []string) {
	t.Helper()
	b := fmt.Appendf(nil, "{\"sources\": [\n  %s\n],\n\"proxies\": [%s]}\n", strings.Join(sources, ",\n  "), strings.Join(proxies, ", "))
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// startFile runs an agent with the config file at path (its sources and
// proxies, then cfg's, as the command gives them) on a fake clock: the
// watchers check each source once, and then only when a test says so.
func startFile(t *testing.T, path string, cfg Config) *testAgent {
	t.Helper()
	sources, proxies, err := LoadConfigFile(path, reloadEnv)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Sources, cfg.Proxies = sources, append(proxies, cfg.Proxies...)
	cfg.Clock = clock.NewFake(time.Now())
	return startAgent(t, cfg)
}

// reload reloads the agent's config file (in the environment getenv, if
// given, else reloadEnv), and returns the line it logged.
func (a *testAgent) reload(path string, getenv ...func(string) string) map[string]any {
	a.t.Helper()
	msgs := []string{"config file reloaded", "config file reloaded: nothing changed"}
	var before [2]int
	for i, msg := range msgs {
		before[i], _ = a.log.Count(msg)
	}
	getenv = append(getenv, reloadEnv)
	if err := a.ReloadFile(path, getenv[0]); err != nil {
		a.t.Fatalf("reload: %v\n%s", err, a.log)
	}
	for i, msg := range msgs {
		if n, _ := a.log.Count(msg); n > before[i] {
			return a.log.Wait(a.t, a.done, waitFor, n, msg)
		}
	}
	a.t.Fatalf("the reload logged no line:\n%s", a.log)
	return nil
}

// says checks that the log line l has the attributes want (lists and
// numbers as fmt prints them), and no other of the reload line's.
func says(t testing.TB, l map[string]any, want map[string]string) {
	t.Helper()
	for _, k := range []string{"sources_added", "sources_removed", "sources_changed", "sources_unchanged",
		"proxies_added", "proxies_removed", "proxies_changed", "proxies_unchanged", "sources", "proxies"} {
		got := ""
		if v, ok := l[k]; ok {
			got = fmt.Sprint(v)
		}
		if got != want[k] {
			t.Errorf("the reload's line: %s is %q, want %q (%v)", k, got, want[k], l)
		}
	}
}

// tokenOf gets source name's token from the agent's TCP endpoint with c,
// checks that it is for audience, and returns it.
func (a *testAgent) tokenOf(c *http.Client, name, audience string, s *m2mtest.Server) string {
	a.t.Helper()
	code, body := get(a.t, c, "http://"+a.tcp()+"/v1/token/"+name, agentHeader, "1")
	if code != 200 {
		a.t.Fatalf("%s: %d %s", name, code, body)
	}
	tok := tokenIn(a.t, body)
	if _, err := s.Verify(tok, audience); err != nil {
		a.t.Fatalf("%s: the token is not for %s: %v", name, audience, err)
	}
	return tok
}

func tokenIn(t testing.TB, body string) string {
	t.Helper()
	_, rest, ok := strings.Cut(body, `"access_token":"`)
	tok, _, ok2 := strings.Cut(rest, `"`)
	if !ok || !ok2 {
		t.Fatalf("no token in %s", shown(body))
	}
	return tok
}

// closedWithin fails t unless ch is closed within waitFor.
func closedWithin(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitFor):
		t.Fatalf("%s: not within %v", what, waitFor)
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestReloadSources: a reload keeps the source the file left as it was
// (the same library source, token and watcher: no token request),
// serves an added one, stops serving a removed one (404, its watcher
// stopped, its library source closed) and replaces a changed one at once
// (the next request gets a token for the new audience), and says so in
// one line.
func TestReloadSources(t *testing.T) {
	s := m2mtest.NewServer(
		m2mtest.Client{ID: "keep", Secret: secret, Audiences: []string{"https://a/"}},
		m2mtest.Client{ID: "gone", Secret: secret, Audiences: []string{"https://a/"}},
		m2mtest.Client{ID: "chg", Secret: secret, Audiences: []string{"https://a/", "https://b/"}},
		m2mtest.Client{ID: "new", Secret: secret, Audiences: []string{"https://a/"}})
	defer s.Close()
	s.SetTokenLifetime(time.Hour)
	conf := filepath.Join(t.TempDir(), "agent.json")
	writeConf(t, conf, []string{fileSrc("keep", s.TokenURL(), "keep", "https://a/"), fileSrc("gone", s.TokenURL(), "gone", "https://a/"),
		fileSrc("chg", s.TokenURL(), "chg", "https://a/")}, nil)
	a := startFile(t, conf, Config{Listeners: []Listener{{"127.0.0.1:0"}}})
	c := client(t, "")
	kept := a.tokenOf(c, "keep", "https://a/", s)
	a.tokenOf(c, "chg", "https://a/", s)
	old := map[string]*agentSource{}
	for _, name := range []string{"keep", "gone", "chg"} {
		old[name] = a.byName[name]
	}

	writeConf(t, conf, []string{fileSrc("keep", s.TokenURL(), "keep", "https://a/"), fileSrc("chg", s.TokenURL(), "chg", "https://b/"),
		fileSrc("new", s.TokenURL(), "new", "https://a/")}, nil)
	says(t, a.reload(conf), map[string]string{"sources_added": "[new]", "sources_removed": "[gone]", "sources_changed": "[chg]",
		"sources_unchanged": "1"})

	if a.byName["keep"] != old["keep"] || isClosed(old["keep"].w.done) {
		t.Error("the kept source was replaced, or its watcher stopped")
	}
	if tok := a.tokenOf(c, "keep", "https://a/", s); tok != kept {
		t.Error("the kept source has a new token")
	}
	if n := s.ClientRequests("keep"); n != 1 {
		t.Errorf("the kept source made %d token requests; want its first only", n)
	}
	if code, body := get(t, c, "http://"+a.tcp()+"/v1/token/gone", agentHeader, "1"); code != 404 || !strings.Contains(body, `no source named \"gone\"; the agent has chg, keep, new`) {
		t.Errorf("the removed source: %d %s", code, body)
	}
	for _, name := range []string{"gone", "chg"} {
		closedWithin(t, old[name].w.done, name+"'s old watcher stops")
		closedWithin(t, old[name].h.closed, name+"'s old library source is closed")
		if _, err := old[name].src.TokenContext(context.Background()); !errors.Is(err, m2mtoken.ErrClosed) {
			t.Errorf("%s's old library source answers %v, not ErrClosed", name, err)
		}
	}
	// Replaced at once: the first request after the reload gets a token
	// for the audience the file says now.
	a.tokenOf(c, "chg", "https://b/", s)
	a.tokenOf(c, "new", "https://a/", s)
	// The request's fetch and the watcher's are one; the watcher holds the
	// token a moment after the request has it.
	a.smu.RLock()
	added, changed := a.byName["new"], a.byName["chg"]
	a.smu.RUnlock()
	closedWithin(t, added.w.ready, "the added source's watcher holds its token")
	closedWithin(t, changed.w.ready, "the changed source's watcher holds its token")
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if body := rec.Body.String(); rec.Code != 200 || !strings.Contains(body, `"new":{"ready":true}`) || strings.Contains(body, "gone") {
		t.Errorf("healthz: %d %s", rec.Code, body)
	}
}

// TestReloadPool: the sources of one client share a pool across reloads.
// An added source of a client joins the pool of the client's source that
// was alone (which makes no token request); removing a source of the pool
// leaves the others working; a source of the same request as another
// shares its token (no request); a source whose secret's variable has
// another value is changed, and gets a pool of its own.
func TestReloadPool(t *testing.T) {
	s := m2mtest.NewServer(m2mtest.Client{ID: "cli", Secret: secret, Audiences: []string{"https://billing/", "https://search/"}})
	defer s.Close()
	s.SetTokenLifetime(time.Hour)
	conf := filepath.Join(t.TempDir(), "agent.json")
	billing, search := fileSrc("billing", s.TokenURL(), "cli", "https://billing/"), fileSrc("search", s.TokenURL(), "cli", "https://search/")
	twin := fileSrc("twin", s.TokenURL(), "cli", "https://search/")
	writeConf(t, conf, []string{billing}, nil)
	a := startFile(t, conf, Config{Listeners: []Listener{{"127.0.0.1:0"}}})
	c := client(t, "")
	billingTok := a.tokenOf(c, "billing", "https://billing/", s)
	pool := a.byName["billing"].src.Pool()

	writeConf(t, conf, []string{billing, search}, nil)
	says(t, a.reload(conf), map[string]string{"sources_added": "[search]", "sources_unchanged": "1"})
	if a.byName["search"].src.Pool() != pool {
		t.Error("the added source of the client has a pool of its own")
	}
	searchTok := a.tokenOf(c, "search", "https://search/", s)
	if a.tokenOf(c, "billing", "https://billing/", s) != billingTok || s.ClientRequests("cli") != 2 {
		t.Errorf("%d token requests; want billing's and search's first", s.ClientRequests("cli"))
	}

	writeConf(t, conf, []string{search}, nil)
	old := a.byName["billing"]
	says(t, a.reload(conf), map[string]string{"sources_removed": "[billing]", "sources_unchanged": "1"})
	closedWithin(t, old.h.closed, "the removed source's library source is closed")
	if a.tokenOf(c, "search", "https://search/", s) != searchTok {
		t.Error("search lost its token when billing was removed")
	}

	writeConf(t, conf, []string{search, twin}, nil)
	says(t, a.reload(conf), map[string]string{"sources_added": "[twin]", "sources_unchanged": "1"})
	if a.byName["twin"].src != a.byName["search"].src || a.tokenOf(c, "twin", "https://search/", s) != searchTok {
		t.Error("a source of the same request does not share the token")
	}
	writeConf(t, conf, []string{twin}, nil)
	a.reload(conf)
	if a.tokenOf(c, "twin", "https://search/", s) != searchTok || s.ClientRequests("cli") != 2 {
		t.Errorf("removing search, whose token twin shares, cost twin its token (%d requests)", s.ClientRequests("cli"))
	}

	// Another secret in the variable: the source is changed, and its pool
	// is another (one secret, one client).
	before := a.byName["twin"]
	anotherSecret := func(v string) string {
		if v == "S" {
			return "another-" + secret
		}
		return ""
	}
	says(t, a.reload(conf, anotherSecret), map[string]string{"sources_changed": "[twin]", "sources_unchanged": "0"})
	if a.byName["twin"].src.Pool() == before.src.Pool() {
		t.Error("the source whose secret changed kept its pool")
	}
	closedWithin(t, before.h.closed, "the old twin is closed")
	if code, _ := get(t, c, "http://"+a.tcp()+"/v1/token/twin", agentHeader, "1"); code != 503 {
		t.Errorf("twin with another secret: %d, want 503 (the issuer refuses it)", code)
	}
}

// TestReloadInFlight: a source a reload removes is closed once the
// requests in flight through it (a proxy's streamed answer) end; the
// removed proxy stops accepting at once. A source a later reload adds for
// the same request, while the removed one still serves a request, takes
// its library source and token (no request), and keeps it after.
func TestReloadInFlight(t *testing.T) {
	s := issuer(t)
	s.AddClient(m2mtest.Client{ID: "other", Secret: secret, Audiences: []string{aud}})
	s.SetTokenLifetime(time.Hour)
	api := newProtectedAPI(t, s)
	dir := t.TempDir()
	conf, sock := filepath.Join(dir, "agent.json"), filepath.Join(dir, "gone.sock")
	other := fileSrc("other", s.TokenURL(), "other", aud)
	writeConf(t, conf, []string{fileSrc("gone", s.TokenURL(), "cli", aud), other}, []string{filePrx("gone", "unix:"+sock, api.URL)})
	a := startFile(t, conf, Config{Listeners: []Listener{{"127.0.0.1:0"}}})
	c := client(t, "")
	gone := a.byName["gone"]

	resp, err := client(t, sock).Get("http://localhost/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); line != "first\n" {
		t.Fatalf("the stream: %q %v", line, err)
	}

	writeConf(t, conf, []string{other}, nil)
	says(t, a.reload(conf), map[string]string{"sources_removed": "[gone]", "sources_unchanged": "1", "proxies_removed": "[unix:" + sock + "]"})
	if _, err := net.Dial("unix", sock); err == nil {
		t.Error("the removed proxy still accepts connections")
	}
	if isClosed(gone.h.closed) {
		t.Fatal("the removed source was closed with a request in flight through it")
	}
	// Added again, for the same request, while the request is in flight:
	// it takes the library source (and its token) that is still open.
	writeConf(t, conf, []string{other, fileSrc("twin", s.TokenURL(), "cli", aud)}, nil)
	a.reload(conf)
	if a.byName["twin"].src != gone.src {
		t.Error("the source added for the request of one in flight has another library source")
	}
	close(api.release)
	if rest, err := io.ReadAll(br); string(rest) != "second\n" {
		t.Fatalf("the request in flight through the removed proxy: %q %v", rest, err)
	}
	resp.Body.Close()
	a.tokenOf(c, "twin", aud, s)
	if n := s.ClientRequests("cli"); n != 1 {
		t.Errorf("%d token requests for cli; want the first only", n)
	}

	// Now removed with nothing in flight: closed at once.
	writeConf(t, conf, []string{other}, nil)
	a.reload(conf)
	closedWithin(t, gone.h.closed, "the removed source, with nothing in flight, is closed")
}

// countingClient is an HTTP client that counts the connections it opens.
func countingClient(t testing.TB, dials *atomic.Int32) *http.Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: waitFor}
}

// TestReloadProxies: a reload keeps a proxy's listener while its address
// stays: a new upstream, source or header applies to the next request on
// the same keep-alive connection. A removed proxy stops listening, an
// added one listens; a --proxy keeps its address, and follows its source
// when the file changes it; the token endpoint's keep-alive connection
// goes on.
func TestReloadProxies(t *testing.T) {
	s := issuer(t)
	s.AddClient(m2mtest.Client{ID: "other", Secret: secret, Audiences: []string{"https://other/"}})
	s.SetTokenLifetime(time.Hour)
	api := newProtectedAPI(t, s)
	two := httptest.NewServer(s.Protect("https://other/", nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "two")
	})))
	t.Cleanup(two.Close)
	dir := t.TempDir()
	conf, sock1, sock3 := filepath.Join(dir, "agent.json"), filepath.Join(dir, "p1.sock"), filepath.Join(dir, "p3.sock")
	apiSrc, otherSrc := fileSrc("api", s.TokenURL(), "cli", aud), fileSrc("other", s.TokenURL(), "other", "https://other/")
	writeConf(t, conf, []string{apiSrc, otherSrc}, []string{filePrx("api", "unix:"+sock1, api.URL), filePrx("api", "127.0.0.1:0", api.URL)})
	a := startFile(t, conf, Config{Listeners: []Listener{{"127.0.0.1:0"}}, Proxies: []Proxy{{Source: "api", Listen: "127.0.0.1:0", Upstream: api.URL}}})
	var dials, flagDials, endpointDials atomic.Int32
	pc, fc, ec := countingClient(t, &dials), countingClient(t, &flagDials), countingClient(t, &endpointDials)
	p2, flag := a.proxy(1), a.proxy(2)
	if code, body := get(t, pc, "http://"+p2+"/api/private"); code != 200 || !strings.Contains(body, "private") {
		t.Fatalf("proxy 2: %d %s", code, body)
	}
	tok := a.tokenOf(ec, "api", aud, s)

	writeConf(t, conf, []string{apiSrc, otherSrc}, []string{filePrx("other", "127.0.0.1:0", two.URL), filePrx("api", "unix:"+sock3, api.URL)})
	says(t, a.reload(conf), map[string]string{"sources_unchanged": "2", "proxies_added": "[unix:" + sock3 + "]", "proxies_removed": "[unix:" + sock1 + "]",
		"proxies_changed": "[" + p2 + "]", "proxies_unchanged": "0"})
	if code, body := get(t, pc, "http://"+p2+"/x"); code != 200 || body != "two" {
		t.Errorf("proxy 2, to its new upstream with its new source: %d %s", code, body)
	}
	if _, err := net.Dial("unix", sock1); err == nil {
		t.Error("the removed proxy still accepts connections")
	}
	if code, body := get(t, client(t, sock3), "http://localhost/api/private"); code != 200 || !strings.Contains(body, "private") {
		t.Errorf("the added proxy: %d %s", code, body)
	}
	if code, _ := get(t, fc, "http://"+flag+"/api/private"); code != 200 {
		t.Errorf("the --proxy: %d", code)
	}
	if tok2 := a.tokenOf(ec, "api", aud, s); tok2 != tok {
		t.Error("the endpoint's source has a new token")
	}
	if _, proxies := a.Addrs(); fmt.Sprint(proxies) != fmt.Sprint([]string{p2, "unix:" + sock3, flag}) {
		t.Errorf("Addrs: %q", proxies)
	}

	// The header required on the same listener: the next request on the
	// same connection is refused without it.
	writeConf(t, conf, []string{apiSrc, otherSrc}, []string{filePrx("other", "127.0.0.1:0", two.URL, `"require_header": true`), filePrx("api", "unix:"+sock3, api.URL)})
	says(t, a.reload(conf), map[string]string{"sources_unchanged": "2", "proxies_changed": "[" + p2 + "]", "proxies_unchanged": "1"})
	if code, _ := get(t, pc, "http://"+p2+"/x"); code != 403 {
		t.Errorf("proxy 2 with the header required, without it: %d", code)
	}
	// The --proxy's source changed (its scopes): the --proxy goes on at
	// its address, through the new source.
	writeConf(t, conf, []string{fileSrc("api", s.TokenURL(), "cli", aud, `"scopes": ["read:x"]`), otherSrc}, []string{filePrx("other", "127.0.0.1:0", two.URL, `"require_header": true`), filePrx("api", "unix:"+sock3, api.URL)})
	says(t, a.reload(conf), map[string]string{"sources_changed": "[api]", "sources_unchanged": "1", "proxies_unchanged": "2"})
	if a.proxies[2].cur.src != a.byName["api"] {
		t.Error("the --proxy goes through the old source")
	}
	if code, _ := get(t, fc, "http://"+flag+"/api/private"); code != 200 {
		t.Errorf("the --proxy after its source changed: %d", code)
	}
	if d, f, e := dials.Load(), flagDials.Load(), endpointDials.Load(); d != 1 || f != 1 || e != 1 {
		t.Errorf("connections opened: %d to the file's proxy, %d to the --proxy, %d to the endpoint; want one each, kept across the reloads", d, f, e)
	}
}

// TestReloadRefused: a new file that cannot be read, does not parse or
// does not pass New's checks (the library's included, and a listener
// that cannot be opened) changes nothing: the agent logs the error in the
// file's words and goes on; what a refused reload made (a source, a
// listener) is closed.
func TestReloadRefused(t *testing.T) {
	s := issuer(t)
	s.AddClient(m2mtest.Client{ID: "fresh", Secret: secret, Audiences: []string{aud}})
	s.SetTokenLifetime(time.Hour)
	dir := t.TempDir()
	conf, sink, sock := filepath.Join(dir, "agent.json"), filepath.Join(dir, "keep.token"), filepath.Join(dir, "p.sock")
	opened := filepath.Join(dir, "opened.sock") // a refused reload opens it, then closes it
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	keep, fresh := fileSrc("keep", s.TokenURL(), "cli", aud), fileSrc("fresh", s.TokenURL(), "fresh", aud)
	writeConf(t, conf, []string{keep}, []string{filePrx("keep", "unix:"+sock, "https://api.example.com")})
	a := startFile(t, conf, Config{Listeners: []Listener{{"127.0.0.1:0"}}, Sinks: []Sink{{"keep", sink}}})
	c := client(t, "")
	tok := a.tokenOf(c, "keep", aud, s)
	before, beforeProxy := a.byName["keep"], a.proxies[0].cur
	endpoint := a.tcp()
	goodJSON, _ := os.ReadFile(conf)
	for _, tc := range []struct {
		name, file string
		mode       os.FileMode
		want       string
	}{
		{"syntax", `{"sources": [` + keep + ",\n]}", 0o600, "config file " + conf + ": line 2, column 2: invalid character ']'"},
		{"unknown field", strings.Replace(string(goodJSON), `"audience"`, `"audiance"`, 1), 0o600, `unknown field "audiance": did you mean "audience"?`},
		{"others may write it", string(goodJSON), 0o666, "--config: the config file " + conf + " may be written by its group or others"},
		{"the sink's source removed", `{"sources": [` + fresh + `]}`, 0o600, `--sink keep=` + sink + `: no source named "keep"; the agent has fresh`},
		{"unset variable", `{"sources": [` + strings.Replace(keep, `"S"`, `"NOPE"`, 1) + `]}`, 0o600, `source "keep": "client_secret_env": the environment variable NOPE is empty or unset: set it to the client secret in the agent's environment (a running agent keeps the environment it started with: restart it with the variable set, or name a file in "client_secret_file", which needs no restart)`},
		{"a port in use", `{"sources": [` + keep + "," + fresh + `], "proxies": [` + filePrx("fresh", "unix:"+opened, "https://api.example.com") + "," +
			filePrx("fresh", busy.Addr().String(), "https://api.example.com") + `]}`, 0o600,
			`config file ` + conf + `: proxies[1]: "listen" ` + busy.Addr().String() + `: listen tcp ` + busy.Addr().String() + `: bind: address already in use`},
		{"the endpoint's address", `{"sources": [` + keep + `], "proxies": [` + filePrx("keep", endpoint, "https://api.example.com") + `]}`, 0o600,
			`config file ` + conf + `: proxies[0]: "listen" ` + endpoint + `: listen tcp ` + endpoint + `: bind: address already in use`},
		{"one address twice", `{"sources": [` + keep + `], "proxies": [` + filePrx("keep", "unix:"+sock, "https://api.example.com") + "," + filePrx("keep", "unix:"+sock, "https://other.example.com") + `]}`, 0o600,
			`config file ` + conf + `: proxies[1]: unix:` + sock + ` is where config file ` + conf + `: proxies[0] listens too: give each listener its own address`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(conf, []byte(tc.file), tc.mode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(conf, tc.mode)
			n, _ := a.log.Count("config file not reloaded: the agent goes on with the configuration it has")
			err := a.ReloadFile(conf, reloadEnv)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("reload: %v; want %q", err, tc.want)
			}
			l := a.log.Wait(t, a.done, waitFor, n+1, "config file not reloaded: the agent goes on with the configuration it has")
			if l["file"] != conf || !strings.Contains(fmt.Sprint(l["error"]), tc.want) {
				t.Errorf("the log line: %v", l)
			}
			if a.byName["keep"] != before || a.byName["fresh"] != nil || len(a.byName) != 1 || len(a.proxies) != 1 || a.proxies[0].cur != beforeProxy {
				t.Errorf("a refused reload changed the sources or proxies: %v %v", a.byName, a.proxies)
			}
			if a.hmu.Lock(); len(a.helds) != 1 {
				t.Errorf("a refused reload left %d library sources open; want keep's", len(a.helds))
			}
			a.hmu.Unlock()
			if _, err := os.Stat(opened); !os.IsNotExist(err) {
				t.Errorf("a refused reload left a listener's socket: %v", err)
			}
			if _, err := os.Stat(sock); err != nil {
				t.Errorf("the proxy's socket: %v", err)
			}
		})
	}
	// A source the library refuses, after one it made: Reload, as the
	// file's checks refuse before the library could.
	sources, _, err := LoadConfigFile(conf, reloadEnv)
	if err != nil {
		t.Fatal(err)
	}
	freshSpecs, _, _ := parseConfigFile(conf, []byte(`{"sources": [`+fresh+`]}`), reloadEnv)
	bad := Source{Name: "bad", Origin: "test: source bad", Config: m2mtoken.Config{TokenURL: s.TokenURL()}}
	if err := a.Reload(append(sources, freshSpecs[0], bad), nil); err == nil || !strings.HasPrefix(err.Error(), "test: source bad: missing settings: set Config.ClientID") {
		t.Errorf("Reload with a source the library refuses: %v", err)
	}
	if a.hmu.Lock(); a.byName["fresh"] != nil || len(a.helds) != 1 {
		t.Errorf("the refused Reload left sources: %v %v", a.byName, a.helds)
	}
	a.hmu.Unlock()
	if tok2 := a.tokenOf(c, "keep", aud, s); tok2 != tok || s.ClientRequests("fresh") != 0 || s.ClientRequests("cli") != 1 {
		t.Errorf("after the refused reloads: a new token %v, %d requests of fresh, %d of keep", tok2 != tok, s.ClientRequests("fresh"), s.ClientRequests("cli"))
	}
	os.WriteFile(conf, goodJSON, 0o600)
	os.Chmod(conf, 0o600)
	says(t, a.reload(conf), map[string]string{"sources": "1", "proxies": "1"})
}

// TestReloadNothingChanged: the same file, written another way (fields
// in another order, the scopes too, the cache by its old name), changes
// nothing and makes no token request.
func TestReloadNothingChanged(t *testing.T) {
	s := m2mtest.NewServer(m2mtest.Client{ID: "cli", Secret: secret, Audiences: []string{aud}, Scopes: []string{"read:x", "write:x"}})
	defer s.Close()
	s.SetTokenLifetime(time.Hour)
	conf := filepath.Join(t.TempDir(), "agent.json")
	writeConf(t, conf, []string{fileSrc("one", s.TokenURL(), "cli", aud, `"scopes": ["read:x", "write:x"]`, `"cache": "memory"`)}, nil)
	a := startFile(t, conf, Config{Listeners: []Listener{{"127.0.0.1:0"}}})
	c := client(t, "")
	tok := a.tokenOf(c, "one", aud, s)
	os.WriteFile(conf, fmt.Appendf(nil, `{"proxies": [], "sources": [{"cache": "none", "scopes": ["write:x", "read:x", "read:x"],
	  "audience": %q, "client_secret_env": "S", "client_id": "cli", "token_url": %q, "name": "one"}]}`, aud, s.TokenURL()), 0o600)
	says(t, a.reload(conf), map[string]string{"sources": "1", "proxies": "0"})
	if a.tokenOf(c, "one", aud, s) != tok || s.ClientRequests("cli") != 1 {
		t.Errorf("%d token requests", s.ClientRequests("cli"))
	}
}

// TestReloadReadiness: a source a reload adds is ready as one is at
// start: /healthz is 503 until it has a token, and a request for it waits
// for its first token rather than failing.
func TestReloadReadiness(t *testing.T) {
	s := issuer(t)
	s.AddClient(m2mtest.Client{ID: "late", Secret: secret, Audiences: []string{aud}})
	s.SetTokenLifetime(time.Hour)
	// The token requests of client late wait for gate.
	gate := make(chan struct{})
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		form, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(form))
		if strings.Contains(string(form), "client_id=late&") {
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
		}
		s.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	conf := filepath.Join(t.TempDir(), "agent.json")
	first := fileSrc("first", s.TokenURL(), "cli", aud)
	writeConf(t, conf, []string{first}, nil)
	a := startFile(t, conf, Config{Listeners: []Listener{{"127.0.0.1:0"}}})
	c := client(t, "")
	writeConf(t, conf, []string{first, fileSrc("late", front.URL+"/oauth/token", "late", aud)}, nil)
	a.reload(conf)
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if body := rec.Body.String(); rec.Code != 503 || !strings.Contains(body, `"late":{"ready":false}`) {
		t.Errorf("healthz with a source that has no token yet: %d %s", rec.Code, body)
	}
	got := make(chan string, 1)
	go func() {
		_, body := get(t, c, "http://"+a.tcp()+"/v1/token/late", agentHeader, "1")
		got <- body
	}()
	close(gate)
	if body := <-got; !strings.Contains(body, `"access_token":"eyJ`) {
		t.Errorf("the first request for the added source: %s", body)
	}
	closedWithin(t, a.byName["late"].w.ready, "the added source's watcher has its token")
	rec = httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != 200 {
		t.Errorf("healthz once the added source has its token: %d %s", rec.Code, rec.Body)
	}
}

// TestReloadUnderRequests: callers of a kept source, of a proxy whose
// upstream a reload swaps, of a source reloads add and remove, and of
// /v1/stats and /healthz, all running while the file flips 20 times: no
// call to the kept source or through the proxy fails, the flipping
// source answers 200 or 404 (never 503), and the kept source made one
// token request in all.
func TestReloadUnderRequests(t *testing.T) {
	s := issuer(t)
	s.AddClient(m2mtest.Client{ID: "other", Secret: secret, Audiences: []string{aud}})
	s.SetTokenLifetime(time.Hour)
	api := newProtectedAPI(t, s)
	api2 := newProtectedAPI(t, s)
	conf := filepath.Join(t.TempDir(), "agent.json")
	keep, flip := fileSrc("keep", s.TokenURL(), "cli", aud), fileSrc("flip", s.TokenURL(), "other", aud)
	files := [2]func(){
		func() { writeConf(t, conf, []string{keep, flip}, []string{filePrx("keep", "127.0.0.1:0", api.URL)}) },
		func() { writeConf(t, conf, []string{keep}, []string{filePrx("keep", "127.0.0.1:0", api2.URL)}) },
	}
	files[0]()
	a := startFile(t, conf, Config{Listeners: []Listener{{"127.0.0.1:0"}}})
	endpoint, prx := "http://"+a.tcp(), "http://"+a.proxy(0)
	stop := make(chan struct{})
	type tally struct {
		calls  int
		failed []string
	}
	results := make(chan tally)
	var started sync.WaitGroup // each caller has made its first call
	caller := func(call func(c *http.Client) string) {
		c := client(t, "")
		var r tally
		for {
			select {
			case <-stop:
				results <- r
				return
			default:
			}
			r.calls++
			if f := call(c); f != "" && len(r.failed) < 5 {
				r.failed = append(r.failed, f)
			}
			if r.calls == 1 {
				started.Done()
			}
		}
	}
	status := func(c *http.Client, url string, headers ...string) (int, string) {
		req, _ := http.NewRequest("GET", url, nil)
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	callers := []func(*http.Client) string{
		func(c *http.Client) string {
			if code, body := status(c, endpoint+"/v1/token/keep", agentHeader, "1"); code != 200 {
				return fmt.Sprintf("keep: %d %s", code, shown(body))
			}
			return ""
		},
		func(c *http.Client) string {
			if code, body := status(c, prx+"/api/private"); code != 200 {
				return fmt.Sprintf("proxy: %d %s", code, body)
			}
			return ""
		},
		func(c *http.Client) string {
			if code, body := status(c, endpoint+"/v1/token/flip", agentHeader, "1"); code != 200 && code != 404 {
				return fmt.Sprintf("flip: %d %s", code, shown(body))
			}
			return ""
		},
		func(*http.Client) string {
			for _, path := range []string{"/v1/stats", "/healthz"} {
				rec := httptest.NewRecorder()
				a.Handler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
				if rec.Code != 200 && rec.Code != 503 {
					return fmt.Sprintf("%s: %d", path, rec.Code)
				}
			}
			return ""
		},
	}
	started.Add(len(callers))
	for _, call := range callers {
		go caller(call)
	}
	started.Wait() // the reloads fall among calls, not before them
	for i := range 20 {
		files[(i+1)%2]()
		a.reload(conf)
	}
	close(stop)
	for range callers {
		r := <-results
		if len(r.failed) > 0 || r.calls == 0 {
			t.Errorf("%d calls, failed: %q", r.calls, r.failed)
		}
	}
	if n := s.ClientRequests("cli"); n != 1 {
		t.Errorf("the kept source made %d token requests; want 1", n)
	}
}
