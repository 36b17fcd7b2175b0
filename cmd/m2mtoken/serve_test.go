package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/logtest"
)

// startServe runs `m2mtoken serve args...` until the test ends, and
// returns its exports (NAME=value) and output lines.
func startServe(t *testing.T, args ...string) (map[string]string, []string) {
	t.Helper()
	env, lines, _ := startServeLog(t, args...)
	return env, lines
}

// startServeLog is startServe that also returns serve's log (stderr).
func startServeLog(t *testing.T, args ...string) (map[string]string, []string, *logtest.Log) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve"}, args...)...)
	cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}
	stdout, _ := cmd.StdoutPipe()
	log := logtest.New()
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() })
	list, lines := readExports(t, stdout)
	env := map[string]string{}
	for _, kv := range list {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	return env, lines, log
}

// servedAPI is the API URL serve printed, without its final slash.
func servedAPI(lines []string) string {
	for _, l := range lines {
		if v, ok := strings.CutPrefix(l, "API URL:"); ok {
			return strings.TrimSuffix(strings.TrimSpace(v), "/")
		}
	}
	return ""
}

func envList(m map[string]string, extra ...string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return append(out, extra...)
}

// TestServeTLS: serve --tls writes its CA where asked and exports it; the
// command trusts it with --ca-file or M2MTOKEN_CA_FILE; the quickstart
// routes check tokens.
func TestServeTLS(t *testing.T) {
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	env, lines := startServe(t, "--tls", "--ca-out", caFile, "--client-secret", secret, "--ttl", "1h")
	for _, k := range []string{"AUTH0_DOMAIN", "AUTH0_CLIENT_ID", "AUTH0_CLIENT_SECRET", "AUTH0_AUDIENCE", "M2MTOKEN_CA_FILE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"} {
		if env[k] == "" {
			t.Fatalf("serve exported no %s: %q", k, lines)
		}
	}
	if env["M2MTOKEN_CA_FILE"] != caFile || strings.Contains(env["AUTH0_DOMAIN"], "/") {
		t.Fatalf("exports %v", env)
	}
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatal("no certificate in --ca-out")
	}
	base := "https://" + env["AUTH0_DOMAIN"]

	// Without the CA: a certificate error at once, no retries.
	plain := envList(env, "M2MTOKEN_CACHE_DIR="+t.TempDir())
	var noCA []string
	for _, kv := range plain {
		if !strings.HasPrefix(kv, "M2MTOKEN_CA_FILE=") && !strings.HasPrefix(kv, "SSL_CERT_FILE=") {
			noCA = append(noCA, kv)
		}
	}
	r := runBin(t, noCA, "token")
	if r.code != 1 || strings.Contains(r.stderr, "attempt") || !strings.Contains(r.stderr, "certificate does not verify") {
		t.Fatalf("without the CA: exit %d, %q", r.code, r.stderr)
	}
	// With --ca-file, and with the exports as they are.
	r = runBin(t, noCA, "token", "--no-cache", "--ca-file", caFile)
	if r.code != 0 {
		t.Fatalf("--ca-file: exit %d, %q", r.code, r.stderr)
	}
	r = runBin(t, plain, "token")
	if r.code != 0 {
		t.Fatalf("exports: exit %d, %q", r.code, r.stderr)
	}
	tok := strings.TrimSpace(r.stdout)

	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	apiURL := servedAPI(lines)
	if !strings.HasPrefix(apiURL, "https://127.0.0.1:") {
		t.Fatalf("API URL %q", apiURL)
	}
	get := func(path, token string) (int, string) {
		req, _ := http.NewRequest("GET", base+path, nil)
		if strings.HasPrefix(path, "api:") {
			req, _ = http.NewRequest("GET", apiURL+strings.TrimPrefix(path, "api:"), nil)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]string
		json.Unmarshal(b, &m)
		return resp.StatusCode, m["message"]
	}
	for _, tt := range []struct {
		path, token string
		code        int
	}{
		{"/api/public", "", 200},
		{"/api/private", "", 401},
		{"/api/private", "not-a-token", 401},
		{"/api/private", tok, 200},
		{"/api/private-scoped", tok, 200},
		{"api:/api/private", tok, 200},
		{"api:/api/private", "", 401},
		{"api:/api/private-scoped", tok, 200},
	} {
		if code, msg := get(tt.path, tt.token); code != tt.code || code == 200 && !strings.HasPrefix(msg, "Hello from a") {
			t.Errorf("%s with token %v: %d %q, want %d", tt.path, tt.token != "", code, msg, tt.code)
		}
	}
}

// TestServeScopeChecked: a token without read:messages is refused by
// /api/private-scoped and accepted by /api/private.
func TestServeScopeChecked(t *testing.T) {
	env, _ := startServe(t, "--scope", "write:other", "--client-secret", secret)
	r := runBin(t, envList(env, "M2MTOKEN_CACHE_DIR="+t.TempDir()), "token")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	tok := strings.TrimSpace(r.stdout)
	for path, want := range map[string]int{"/api/private": 200, "/api/private-scoped": 403} {
		req, _ := http.NewRequest("GET", env["AUTH0_DOMAIN"]+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}

// TestServeAllAddresses: on 0.0.0.0 serve prints URLs a client can use.
func TestServeAllAddresses(t *testing.T) {
	env, lines := startServe(t, "--addr", "0.0.0.0:0")
	out := strings.Join(lines, "\n")
	if strings.Contains(out, "[::]") || strings.Contains(out, "0.0.0.0:0") || !strings.HasPrefix(env["AUTH0_DOMAIN"], "http://127.0.0.1:") {
		t.Fatalf("serve printed %s", out)
	}
	if r := runBin(t, envList(env), "token", "--no-cache"); r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}

	caFile := filepath.Join(t.TempDir(), "ca.pem")
	env, lines = startServe(t, "--addr", "0.0.0.0:0", "--tls", "--ca-out", caFile)
	host, _ := os.Hostname()
	u, err := url.Parse("https://" + env["AUTH0_DOMAIN"])
	if err != nil || host == "" || u.Hostname() != host {
		t.Fatalf("AUTH0_DOMAIN %q, want the machine's name %q", env["AUTH0_DOMAIN"], host)
	}
	// The certificate covers the name and loopback: reach it by
	// 127.0.0.1 while checking the name.
	pemBytes, _ := os.ReadFile(caFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	for _, name := range []string{host, "localhost", "127.0.0.1"} {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: name}}}
		resp, err := c.Get("https://127.0.0.1:" + u.Port() + "/api/public")
		if err != nil {
			t.Fatalf("as %s: %v", name, err)
		}
		resp.Body.Close()
	}
	_ = lines
}

// TestServeAudiencesAndOrganizations: serve's client may get tokens for
// every --audience and --organization, its startup lines say which, and
// its API accepts each audience's tokens and says what they are for.
// Others are refused as Auth0 refuses them, with the hint.
func TestServeAudiencesAndOrganizations(t *testing.T) {
	const billing, search = "https://billing.example.com/", "https://search.example.com/"
	env, lines := startServe(t, "--client-secret", secret, "--audience", billing, "--audience", search, "--organization", "org_acme", "--organization", "org_beta")
	out := strings.Join(lines, "\n")
	for _, want := range []string{
		"audiences: https://billing.example.com/ (the default, AUTH0_AUDIENCE), https://search.example.com/; any other is refused\n",
		"orgs:      org_acme, org_beta; any other is refused\n",
		"export AUTH0_AUDIENCE=https://billing.example.com/\n",
	} {
		if !strings.Contains(out+"\n", want) {
			t.Errorf("serve printed:\n%s\nwithout %q", out, want)
		}
	}
	base := envList(env, "M2MTOKEN_CACHE_DIR="+t.TempDir())
	for _, tt := range []struct {
		args []string
		want string // the API's answer, or the error
	}{
		{nil, "ok m2mtoken-local Bearer https://billing.example.com/\n"},
		{[]string{"--audience", search}, "ok m2mtoken-local Bearer https://search.example.com/\n"},
		{[]string{"--audience", search, "--organization", "org_beta"}, "ok m2mtoken-local Bearer https://search.example.com/ org_beta\n"},
		{[]string{"--audience", "https://typo.example.com/"}, "403 Forbidden: access_denied: Service not enabled within domain: https://typo.example.com/ (the audience is not the identifier of an API in this tenant: check --audience"},
		{[]string{"--organization", "org_gamma"}, `is not a member of organization "org_gamma" (the application may not get tokens for this organization: check --organization`},
	} {
		r := runBin(t, base, append([]string{"token"}, tt.args...)...)
		if r.code != 0 {
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("token %q: exit %d, %q, want %q", tt.args, r.code, r.stderr, tt.want)
			}
			continue
		}
		req, _ := http.NewRequest("GET", env["API_URL"]+"v1/things", nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(r.stdout))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != tt.want {
			t.Errorf("token %q: the API answered %d %q, want %q", tt.args, resp.StatusCode, b, tt.want)
		}
	}
}

// TestServeSaysAClientRefusedItsCertificate: a client that does not trust
// serve's CA ends the TLS handshake with an alert that net/http logs as
// "remote error: tls: bad certificate"; serve says instead that the client
// refused serve's certificate, and which CA file it must trust.
func TestServeSaysAClientRefusedItsCertificate(t *testing.T) {
	env, _, log := startServeLog(t, "--tls", "--addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0")
	for _, u := range []string{env["AUTH0_DOMAIN"], strings.TrimPrefix(strings.TrimSuffix(env["API_URL"], "/"), "https://")} {
		raw, err := net.Dial("tcp", u)
		if err != nil {
			t.Fatal(err)
		}
		conn := tls.Client(raw, &tls.Config{ServerName: "localhost"})
		if err := conn.Handshake(); err == nil {
			t.Fatalf("a client with the system's roots trusted serve's certificate at %s", u)
		}
		conn.Close()
		log.WaitText(t, 5*time.Second, "a client at "+raw.LocalAddr().String()+" refused serve's certificate (tls: bad certificate): it must trust serve's CA, "+
			env["M2MTOKEN_CA_FILE"]+" (M2MTOKEN_CA_FILE in the exports)")
	}
	if strings.Contains(log.String(), "TLS handshake error") {
		t.Errorf("net/http's line is still there:\n%s", log.String())
	}
}
