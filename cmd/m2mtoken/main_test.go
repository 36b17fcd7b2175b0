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
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// bin is the m2mtoken binary, built once for the tests that run it.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "m2mtoken-bin")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "m2mtoken")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	secret = "cli-secret-CANARY-1234"
	aud    = "https://api.example.com/"
)

type result struct {
	code           int
	stdout, stderr string
}

// runBin runs the binary with a clean environment plus env.
func runBin(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, out.String(), errb.String()}
}

func issuer(t *testing.T) *m2mtest.Server {
	s := m2mtest.NewServer(m2mtest.Client{ID: "cli", Secret: secret, Audiences: []string{aud}, Scopes: []string{"read:x"}})
	t.Cleanup(s.Close)
	return s
}

func tokenEnv(s *m2mtest.Server, cacheDir string) []string {
	return []string{"M2MTOKEN_TOKEN_URL=" + s.TokenURL(), "AUTH0_CLIENT_ID=cli", "AUTH0_CLIENT_SECRET=" + secret, "AUTH0_AUDIENCE=" + aud, "M2MTOKEN_CACHE_DIR=" + cacheDir}
}

func TestTokenCachedBetweenRuns(t *testing.T) {
	s := issuer(t)
	dir := filepath.Join(t.TempDir(), "cache")
	env := tokenEnv(s, dir)
	r1 := runBin(t, env, "token")
	if r1.code != 0 {
		t.Fatalf("exit %d: %s", r1.code, r1.stderr)
	}
	tok := strings.TrimSpace(r1.stdout)
	if _, err := s.Verify(tok, aud); err != nil {
		t.Fatalf("printed token does not verify: %v", err)
	}
	r2 := runBin(t, env, "token")
	if strings.TrimSpace(r2.stdout) != tok || s.TokensIssued("cli") != 1 {
		t.Fatalf("second run: new token or request (%d issued)", s.TokensIssued("cli"))
	}
	files, _ := os.ReadDir(dir)
	var found bool
	for _, f := range files {
		info, _ := f.Info()
		b, _ := os.ReadFile(filepath.Join(dir, f.Name()))
		if bytes.Contains(b, []byte(secret)) {
			t.Fatalf("%s holds the secret", f.Name())
		}
		if strings.HasSuffix(f.Name(), ".json") {
			found = true
			if info.Mode().Perm() != 0o600 {
				t.Errorf("%s mode %v", f.Name(), info.Mode().Perm())
			}
		}
	}
	if !found {
		t.Fatal("no cache file")
	}
	if r := runBin(t, env, "token", "--no-cache"); r.code != 0 || s.TokensIssued("cli") != 2 {
		t.Fatalf("--no-cache: exit %d, %d issued", r.code, s.TokensIssued("cli"))
	}
}

func TestTokenOutputs(t *testing.T) {
	s := issuer(t)
	env := tokenEnv(s, t.TempDir())
	h := runBin(t, env, "token", "--header")
	if !strings.HasPrefix(h.stdout, "Authorization: Bearer eyJ") {
		t.Fatalf("--header: %q", h.stdout)
	}
	j := runBin(t, env, "token", "--json")
	var out map[string]any
	if err := json.Unmarshal([]byte(j.stdout), &out); err != nil {
		t.Fatalf("--json: %v: %q", err, j.stdout)
	}
	if out["token_type"] != "Bearer" || out["scope"] != "read:x" || out["expires_in"].(float64) < 86000 {
		t.Fatalf("--json: %v", out)
	}
}

func TestOverlappingRunsMakeOneRequest(t *testing.T) {
	s := issuer(t)
	s.SetLatency(300 * time.Millisecond)
	env := tokenEnv(s, t.TempDir())
	var wg sync.WaitGroup
	toks := make([]string, 6)
	for i := range toks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := runBin(t, env, "token")
			if r.code != 0 {
				t.Errorf("exit %d: %s", r.code, r.stderr)
			}
			toks[i] = r.stdout
		}()
	}
	wg.Wait()
	if s.TokensIssued("cli") != 1 {
		t.Fatalf("%d tokens issued to 6 overlapping runs, want 1", s.TokensIssued("cli"))
	}
}

func TestTokenErrors(t *testing.T) {
	s := issuer(t)
	env := tokenEnv(s, t.TempDir())
	env[2] = "AUTH0_CLIENT_SECRET=wrong-" + secret
	r := runBin(t, env, "token")
	if r.code != 1 || !strings.Contains(r.stderr, "401") || !strings.Contains(r.stderr, "access_denied") || !strings.Contains(r.stderr, "Unauthorized") {
		t.Fatalf("wrong secret: exit %d, stderr %q", r.code, r.stderr)
	}
	if strings.Contains(r.stderr+r.stdout, secret) {
		t.Fatal("output shows the secret")
	}
	if strings.Contains(r.stderr, "m2mtoken: m2mtoken:") {
		t.Fatalf("doubled prefix: %q", r.stderr)
	}
	r = runBin(t, nil, "token", "--no-cache")
	if r.code != 1 || r.stderr != "m2mtoken: --client-id or AUTH0_CLIENT_ID is empty: set it to the application's Client ID\n" {
		t.Fatalf("no settings: exit %d, %q", r.code, r.stderr)
	}
	r = runBin(t, nil, "token", "--bogus")
	if r.code != 2 || r.stdout != "" || r.stderr != "m2mtoken token: unknown flag --bogus\nRun 'm2mtoken token --help' for its flags.\n" {
		t.Fatalf("bad flag: exit %d, %q", r.code, r.stderr)
	}
	if r := runBin(t, nil, "frobnicate"); r.code != 2 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "m2mtoken help") {
		t.Fatalf("bad command: exit %d, %q", r.code, r.stderr)
	}
}

func TestSecretFile(t *testing.T) {
	s := issuer(t)
	f := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(f, []byte(secret+"\n"), 0o600)
	env := tokenEnv(s, t.TempDir())[:2]
	r := runBin(t, env, "token", "--no-cache", "--client-secret-file", f, "--audience", aud)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
}

func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}, {"token", "--help"}, {"token", "-h"}, {"help", "token"}, {"serve", "--help"}, {"help", "serve"}, {"demo", "--help"}} {
		r := runBin(t, nil, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage") || r.stderr != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
		}
		if len(args) == 2 && !strings.Contains(r.stdout, "Flags:") {
			t.Errorf("%v: no flags in %q", args, r.stdout)
		}
	}
	if r := runBin(t, nil, "token", "--help"); !strings.Contains(r.stdout, "(env AUTH0_CLIENT_ID)") || !strings.Contains(r.stdout, "\n  --ca-file string\n") {
		t.Errorf("token --help does not name the variables: %q", r.stdout)
	}
	// Flags are listed as the README and the errors write them, --name;
	// old spellings kept working are not listed.
	for _, cmd := range []string{"token", "serve", "demo", "agent"} {
		r := runBin(t, nil, cmd, "--help")
		_, flags, _ := strings.Cut(r.stdout, "\nFlags:\n")
		for _, l := range strings.Split(strings.TrimRight(flags, "\n"), "\n") {
			if !strings.HasPrefix(l, "  --") && !strings.HasPrefix(l, "    \t") {
				t.Errorf("%s --help: flag line %q", cmd, l)
			}
		}
		if strings.Contains(flags, "--dpop-key string") || !strings.Contains(flags, "--version\n") {
			t.Errorf("%s --help flags:\n%s", cmd, flags)
		}
	}
	if r := runBin(t, nil, "help", "nope"); r.code != 2 || r.stdout != "" {
		t.Errorf("help nope: exit %d", r.code)
	}
	for _, args := range [][]string{{"--version"}, {"version"}, {"token", "--version"}} {
		if r := runBin(t, nil, args...); r.code != 0 || !strings.HasPrefix(r.stdout, "m2mtoken ") {
			t.Errorf("%v: exit %d, %q", args, r.code, r.stdout)
		}
	}
}

func TestServeAndToken(t *testing.T) {
	cmd := exec.Command(bin, "serve", "--client-id", "local", "--client-secret", secret, "--audience", aud, "--ttl", "1h")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	env, _ := readExports(t, stdout)
	if len(env) != 4 || !strings.HasPrefix(env[0], "AUTH0_DOMAIN=http://127.0.0.1:") {
		t.Fatalf("serve printed %v", env)
	}
	r := runBin(t, append(env, "M2MTOKEN_CACHE_DIR="+t.TempDir()), "token", "--json")
	var out map[string]any
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || out["expires_in"].(float64) < 3500 {
		t.Fatalf("token from serve: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
}

func TestDemoExitsZero(t *testing.T) {
	r := runBin(t, nil, "demo", "--duration", "3s", "--ttl", "1s", "--token-latency", "50ms", "--callers", "8", "--quiet")
	if r.code != 0 || !strings.Contains(r.stdout, "API calls") || !strings.Contains(r.stdout, "token requests") {
		t.Fatalf("demo: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

func TestPrivateKeyFile(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	f := filepath.Join(t.TempDir(), "key.pem")
	os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	s := m2mtest.NewServer(m2mtest.Client{ID: "pk", PublicKey: key.Public(), Audiences: []string{aud}})
	defer s.Close()
	env := []string{"M2MTOKEN_TOKEN_URL=" + s.TokenURL(), "AUTH0_CLIENT_ID=pk", "AUTH0_AUDIENCE=" + aud, "AUTH0_CLIENT_SECRET=ignored-with-a-key"}
	r := runBin(t, env, "token", "--no-cache", "--private-key-file", f, "--key-id", "k1")
	if r.code != 0 || s.TokensIssued("pk") != 1 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	r = runBin(t, env, "token", "--no-cache", "--private-key-file", filepath.Join(t.TempDir(), "missing.pem"))
	if r.code != 1 || !strings.Contains(r.stderr, "reading the private key") {
		t.Fatalf("missing key: exit %d %q", r.code, r.stderr)
	}
}

// TestCLISecretCanary: debug logs, errors and cache files never show the
// secret; stderr never shows the token (stdout prints it by design).
func TestCLISecretCanary(t *testing.T) {
	s := issuer(t)
	dir := t.TempDir()
	env := tokenEnv(s, dir)
	r := runBin(t, env, "token", "--verbose")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	tok := strings.TrimSpace(r.stdout)
	if !strings.Contains(r.stderr, "sha256:") {
		t.Errorf("verbose log shows no fingerprint: %s", r.stderr)
	}
	bad := tokenEnv(s, t.TempDir()) // an empty cache: the wrong secret reaches the endpoint
	bad[2] = "AUTH0_CLIENT_SECRET=" + secret + "-wrong"
	rb := runBin(t, bad, "token", "--verbose", "--json")
	if rb.code != 1 {
		t.Fatalf("wrong secret: exit %d", rb.code)
	}
	for name, out := range map[string]string{"verbose stderr": r.stderr, "error stdout": rb.stdout, "error stderr": rb.stderr} {
		if strings.Contains(out, secret) || strings.Contains(out, tok) {
			t.Fatalf("%s reveals the secret or token:\n%s", name, out)
		}
	}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(secret)) {
				t.Fatalf("%s holds the secret", p)
			}
		}
		return nil
	})
}

func dpopKeyFile(t *testing.T) string {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	f := filepath.Join(t.TempDir(), "dpop.pem")
	os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	return f
}

// TestDPoPServeTokenCurl: serve --require-dpop --dpop-nonce; token without
// a DPoP key is refused; with --dpop-key, --header --url prints both
// header lines, and curl -H @- reaches the protected API with them.
func TestDPoPServeTokenCurl(t *testing.T) {
	cmd := exec.Command(bin, "serve", "--client-id", "local", "--client-secret", secret, "--audience", aud, "--require-dpop", "--dpop-nonce")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	env := []string{}
	var apiURL, banner string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		if banner == "" {
			banner = line
		}
		if v, ok := strings.CutPrefix(line, "API URL:"); ok {
			apiURL = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "export "); ok {
			env = append(env, v)
		}
		if strings.HasPrefix(line, "export AUTH0_AUDIENCE") {
			break
		}
	}
	go io.Copy(io.Discard, stdout)
	if len(env) != 4 || apiURL == "" || !strings.Contains(banner, "DPoP required, with nonces") {
		t.Fatalf("serve printed %q %v %q", banner, env, apiURL)
	}
	env = append(env, "M2MTOKEN_CACHE_DIR="+t.TempDir())
	if r := runBin(t, env, "token"); r.code != 1 || !strings.Contains(r.stderr, "DPoP proof is required") {
		t.Fatalf("without a DPoP key: exit %d %q", r.code, r.stderr)
	}
	key := dpopKeyFile(t)
	if r := runBin(t, env, "token", "--dpop-key", key, "--header"); r.code != 1 || !strings.Contains(r.stderr, "--url") {
		t.Fatalf("--header without --url: exit %d %q", r.code, r.stderr)
	}
	if r := runBin(t, env, "token", "--dpop-key", key); r.code != 0 || !strings.Contains(r.stderr, "DPoP-bound") || strings.Count(r.stdout, ".") != 2 {
		t.Fatalf("plain: exit %d %q", r.code, r.stderr)
	}
	target := apiURL + "v1/things?page=1"
	for _, method := range []string{"GET", "POST"} {
		r := runBin(t, env, "token", "--dpop-key", key, "--header", "--url", target, "--method", method)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if r.code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "Authorization: DPoP ey") || !strings.HasPrefix(lines[1], "DPoP: ey") {
			t.Fatalf("--header --url: exit %d %q %q", r.code, r.stdout, r.stderr)
		}
		curl, err := exec.LookPath("curl")
		if err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("curl is missing")
			}
			t.Skip("curl is not installed")
		}
		c := exec.Command(curl, "-sS", "-X", method, "-H", "@-", "-o", "-", "-w", "\n%{http_code}", target)
		c.Stdin = strings.NewReader(r.stdout)
		out, err := c.CombinedOutput()
		if err != nil || string(out) != "ok local DPoP\n\n200" {
			t.Fatalf("curl %s: %v %q", method, err, out)
		}
		// The same headers again: the proof is spent.
		c = exec.Command(curl, "-sS", "-X", method, "-H", "@-", "-o", "/dev/null", "-w", "%{http_code}", target)
		c.Stdin = strings.NewReader(r.stdout)
		if out, err := c.CombinedOutput(); err != nil || string(out) != "401" {
			t.Fatalf("replayed headers: %v %q", err, out)
		}
	}
}

// TestDPoPTokenCache: the cache file serves the next run with the same
// DPoP key, and never a run with another key.
func TestDPoPTokenCache(t *testing.T) {
	s := m2mtest.NewServer(m2mtest.Client{ID: "cli", Secret: secret, Audiences: []string{aud}, RequireDPoP: true})
	defer s.Close()
	env := tokenEnv(s, t.TempDir())
	k1, k2 := dpopKeyFile(t), dpopKeyFile(t)
	var toks []string
	for _, k := range []string{k1, k1, k2} {
		r := runBin(t, env, "token", "--dpop-key", k, "--json")
		var out map[string]any
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || out["token_type"] != "DPoP" {
			t.Fatalf("exit %d %q %q", r.code, r.stdout, r.stderr)
		}
		toks = append(toks, out["access_token"].(string))
	}
	if toks[0] != toks[1] || toks[0] == toks[2] || s.TokensIssued("cli") != 2 {
		t.Fatalf("%d tokens issued; same key shared %v, other key shared %v", s.TokensIssued("cli"), toks[0] == toks[1], toks[0] == toks[2])
	}
	if r := runBin(t, env, "token", "--dpop-key", filepath.Join(t.TempDir(), "none.pem")); r.code != 1 || !strings.Contains(r.stderr, "--dpop-key") {
		t.Fatalf("missing key: exit %d %q", r.code, r.stderr)
	}
}

func TestDemoDPoP(t *testing.T) {
	r := runBin(t, nil, "demo", "--dpop", "--duration", "2s", "--ttl", "1s", "--token-latency", "50ms", "--callers", "4", "--quiet")
	if r.code != 0 || !strings.Contains(r.stdout, "DPoP-bound tokens") || !strings.Contains(r.stdout, "failed calls                              0") {
		t.Fatalf("demo --dpop: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if r := runBin(t, nil, "demo", "--dpop", "--compare"); r.code != 2 {
		t.Fatalf("--dpop --compare: exit %d", r.code)
	}
}

// TestHeaderURLWithBearer: --header --url with a bearer token prints the
// one Authorization line; --url without --header is a usage error.
func TestHeaderURLWithBearer(t *testing.T) {
	s := issuer(t)
	env := tokenEnv(s, t.TempDir())
	r := runBin(t, env, "token", "--header", "--url", "https://api.example.com/x")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "Authorization: Bearer ey") || strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r := runBin(t, env, "token", "--url", "https://api.example.com/x"); r.code != 2 {
		t.Fatalf("--url without --header: exit %d", r.code)
	}
	if r := runBin(t, env, "token", "--header", "--url", "not a url"); r.code != 1 || !strings.Contains(r.stderr, "--url") {
		t.Fatalf("bad --url: exit %d %q", r.code, r.stderr)
	}
}

// readExports reads serve's output up to "# serving until interrupted",
// and returns the exported variables (NAME=value) and every line.
func readExports(t *testing.T, r io.Reader) (env, lines []string) {
	t.Helper()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		lines = append(lines, line)
		if v, ok := strings.CutPrefix(line, "export "); ok {
			env = append(env, v)
		}
		if line == "# serving until interrupted" {
			return env, lines
		}
	}
	t.Fatalf("serve ended before it was ready: %q", lines)
	return nil, nil
}

func TestBadFlagsNamedAsTyped(t *testing.T) {
	for _, tc := range []struct{ arg, want string }{
		{"--audiance", "m2mtoken token: unknown flag --audiance: did you mean --audience?\nRun 'm2mtoken token --help' for its flags.\n"},
		{"-client-secert-file=x", "m2mtoken token: unknown flag --client-secert-file: did you mean --client-secret-file?\nRun 'm2mtoken token --help' for its flags.\n"},
		{"--frobnicate", "m2mtoken token: unknown flag --frobnicate\nRun 'm2mtoken token --help' for its flags.\n"},
		{"--ttl=10", "m2mtoken token: --ttl \"10\": not a duration: give a number with a unit, such as 30s, 5m or 24h\nRun 'm2mtoken token --help' for its flags.\n"},
		{"--count=x", "m2mtoken token: --count \"x\": parse error\nRun 'm2mtoken token --help' for its flags.\n"},
		{"--audience", "m2mtoken token: --audience needs a value\nRun 'm2mtoken token --help' for its flags.\n"},
	} {
		c := newFlags("token", "test")
		c.fs.Duration("ttl", 0, "")
		c.fs.Int("count", 0, "")
		c.fs.String("audience", "", "")
		c.fs.String("client-secret-file", "", "")
		var stdout, stderr strings.Builder
		ok, err := c.parse([]string{tc.arg}, &stdout, &stderr)
		if ok || !errors.Is(err, errUsage) || stdout.String() != "" || stderr.String() != tc.want {
			t.Errorf("%s: ok=%v err=%v stderr=%q, want %q", tc.arg, ok, err, stderr.String(), tc.want)
		}
	}
}

// TestUnknownCommand: a typo of a command names the command meant; any
// other word says where the commands are. Neither prints the usage.
func TestUnknownCommand(t *testing.T) {
	for _, tc := range []struct{ arg, want string }{
		{"tokn", "m2mtoken: unknown command \"tokn\"; did you mean \"token\"? Run 'm2mtoken help' for the commands\n"},
		{"agnet", "m2mtoken: unknown command \"agnet\"; did you mean \"agent\"? Run 'm2mtoken help' for the commands\n"},
		{"xyzzy", "m2mtoken: unknown command \"xyzzy\"; run 'm2mtoken help' for the commands\n"},
	} {
		var stdout, stderr strings.Builder
		if code := run([]string{tc.arg}, &stdout, &stderr); code != 2 || stdout.String() != "" || stderr.String() != tc.want {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want %q", tc.arg, code, stdout.String(), stderr.String(), tc.want)
		}
	}
}
