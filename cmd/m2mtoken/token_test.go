// m2mtoken token: its cache between runs, outputs, credentials and
// errors.

package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken/m2mtest"
)

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
	if want := "m2mtoken: missing settings: set --client-id or AUTH0_CLIENT_ID (the application's Client ID), " +
		"--client-secret or AUTH0_CLIENT_SECRET (its Client Secret, or --private-key-file or M2MTOKEN_PRIVATE_KEY_FILE for Private Key JWT) " +
		"and --domain or AUTH0_DOMAIN (for example \"tenant.eu.auth0.com\") or --token-url or M2MTOKEN_TOKEN_URL; " +
		"to try it without a tenant, run 'm2mtoken serve' in another shell and paste the export lines it prints\n"; r.code != 1 || r.stderr != want {
		t.Fatalf("no settings: exit %d, %q, want %q", r.code, r.stderr, want)
	}
	// One setting given: the rest are listed, without the hint for newcomers.
	r = runBin(t, nil, "token", "--no-cache", "--client-id", "svc")
	if want := "m2mtoken: missing settings: set --client-secret or AUTH0_CLIENT_SECRET (its Client Secret, or --private-key-file or M2MTOKEN_PRIVATE_KEY_FILE for Private Key JWT) " +
		"and --domain or AUTH0_DOMAIN (for example \"tenant.eu.auth0.com\") or --token-url or M2MTOKEN_TOKEN_URL\n"; r.code != 1 || r.stderr != want {
		t.Fatalf("client ID only: exit %d, %q, want %q", r.code, r.stderr, want)
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

func TestServeAndToken(t *testing.T) {
	exports, _ := startServe(t, "--client-id", "local", "--client-secret", secret, "--audience", aud, "--ttl", "1h")
	if len(exports) != 5 || !strings.HasPrefix(exports["AUTH0_DOMAIN"], "http://127.0.0.1:") || !strings.HasPrefix(exports["API_URL"], "http://127.0.0.1:") {
		t.Fatalf("serve printed %v", exports)
	}
	r := runBin(t, envList(exports, "M2MTOKEN_CACHE_DIR="+t.TempDir()), "token", "--json")
	var out map[string]any
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || out["expires_in"].(float64) < 3500 {
		t.Fatalf("token from serve: exit %d %q %q", r.code, r.stdout, r.stderr)
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
