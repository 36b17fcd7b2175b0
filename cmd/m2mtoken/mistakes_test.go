package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// TestRetriesAreReported: while the endpoint fails, one stderr line per
// failed attempt; stdout holds the token alone.
func TestRetriesAreReported(t *testing.T) {
	s := issuer(t)
	s.FailNext(2, m2mtest.Fault{Status: 503})
	r := runBin(t, tokenEnv(s, t.TempDir()), "token")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "m2mtoken: attempt 1 of 8 failed, retrying in ") ||
		!strings.HasPrefix(lines[1], "m2mtoken: attempt 2 of 8 failed, retrying in ") || !strings.Contains(lines[0], "503 Service Unavailable") {
		t.Fatalf("stderr %q", r.stderr)
	}
	if tok := strings.TrimSpace(r.stdout); strings.Count(r.stdout, "\n") != 1 || !strings.HasPrefix(tok, "eyJ") {
		t.Fatalf("stdout %q", r.stdout)
	}
	if strings.Contains(r.stderr, secret) || strings.Contains(r.stderr, strings.TrimSpace(r.stdout)) {
		t.Fatal("a retry line shows the secret or the token")
	}
}

// TestGivesUpWithCount: the final error of a retried fetch says how often
// and for how long it tried, once.
func TestGivesUpWithCount(t *testing.T) {
	s := issuer(t)
	s.FailNext(100, m2mtest.Fault{Status: 502})
	// A timeout that leaves time for a few attempts only.
	r := runBin(t, tokenEnv(s, t.TempDir()), "token", "--timeout", "2s", "--no-cache")
	last := r.stderr[strings.LastIndex(strings.TrimSpace(r.stderr), "\n")+1:]
	if r.code != 1 || !strings.Contains(last, " times over ") || !strings.Contains(last, "502 Bad Gateway") || strings.Count(r.stderr, "502") < 2 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestPermanentMistakesFailAtOnce: an HTML page answering 200 and an
// unknown host fail on the first attempt, with what to check.
func TestPermanentMistakesFailAtOnce(t *testing.T) {
	var hits atomic.Int64
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<!doctype html><title>Log in</title>")
	}))
	defer page.Close()
	env := []string{"AUTH0_CLIENT_ID=cli", "AUTH0_CLIENT_SECRET=" + secret, "AUTH0_AUDIENCE=" + aud}
	r := runBin(t, env, "token", "--no-cache", "--token-url", page.URL+"/login")
	if r.code != 1 || hits.Load() != 1 || strings.Count(r.stderr, "\n") != 1 ||
		!strings.Contains(r.stderr, "HTML instead of JSON (the URL answered, but not as an OAuth 2.0 token endpoint") {
		t.Fatalf("html: exit %d after %d requests, stderr %q", r.code, hits.Load(), r.stderr)
	}

	r = runBin(t, env, "token", "--no-cache", "--domain", "no-such-tenant.invalid", "--timeout", "20s")
	if !strings.Contains(r.stderr, "no such host") {
		t.Skipf("this machine's resolver does not answer NXDOMAIN for .invalid: %q", r.stderr)
	}
	if r.code != 1 || strings.Contains(r.stderr, "attempt") || !strings.Contains(r.stderr, "the host name does not exist: check --domain") {
		t.Fatalf("unknown host: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestHintsInTheCommand: Auth0's terse answers come with what to check,
// never with the secret.
func TestHintsInTheCommand(t *testing.T) {
	s := issuer(t)
	env := tokenEnv(s, t.TempDir())
	env[3] = "AUTH0_AUDIENCE=https://typo.example.com/"
	r := runBin(t, env, "token")
	if r.code != 1 || !strings.Contains(r.stderr, "Service not enabled within domain") || !strings.Contains(r.stderr, "the audience is not the identifier of an API in this tenant") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	env = tokenEnv(s, t.TempDir())
	env[2] = "AUTH0_CLIENT_SECRET=wrong-" + secret
	r = runBin(t, env, "token", "--auth-method", "basic")
	if r.code != 1 || !strings.Contains(r.stderr, "check the client ID, the client secret, and that the application's token endpoint authentication method is client_secret_basic") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	if strings.Contains(r.stderr, secret) {
		t.Fatal("stderr shows the secret")
	}
}

// TestFlagAndVariableNames: messages name the flag or variable the user
// set, never a Config field.
func TestFlagAndVariableNames(t *testing.T) {
	s := issuer(t)
	base := []string{"AUTH0_CLIENT_ID=cli", "AUTH0_CLIENT_SECRET=" + secret, "AUTH0_AUDIENCE=" + aud}
	for _, tt := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"url without scheme", base, []string{"--token-url", "tenant.eu.auth0.com"},
			`m2mtoken: --token-url "tenant.eu.auth0.com" has no scheme: a token URL is a full URL, such as "https://tenant.eu.auth0.com/oauth/token"; or give the bare domain in --domain or AUTH0_DOMAIN` + "\n"},
		{"variable without scheme", append(base, "M2MTOKEN_TOKEN_URL=tenant.eu.auth0.com"), nil,
			`m2mtoken: M2MTOKEN_TOKEN_URL "tenant.eu.auth0.com" has no scheme`},
		{"no endpoint", base, nil, "m2mtoken: no endpoint: set --domain or AUTH0_DOMAIN (for example \"tenant.eu.auth0.com\") or --token-url or M2MTOKEN_TOKEN_URL\n"},
		{"both variables", append(base, "AUTH0_DOMAIN=a.auth0.com", "M2MTOKEN_TOKEN_URL=https://b/oauth/token"), nil,
			"m2mtoken: both AUTH0_DOMAIN and M2MTOKEN_TOKEN_URL are set: set only one\n"},
		{"no secret", base[:1], []string{"--domain", "a.auth0.com"},
			"m2mtoken: --client-secret or AUTH0_CLIENT_SECRET is empty: give the application's Client Secret, or authenticate another way (--private-key-file or M2MTOKEN_PRIVATE_KEY_FILE for Private Key JWT, --client-assertion-file or M2MTOKEN_CLIENT_ASSERTION_FILE for a platform's token, --client-cert-file or M2MTOKEN_CLIENT_CERT_FILE and --client-key-file or M2MTOKEN_CLIENT_KEY_FILE for mTLS)\n"},
		{"plain http domain", base, []string{"--domain", "http://tenant.eu.auth0.com"}, "m2mtoken: --domain \"http://tenant.eu.auth0.com\" uses plain http"},
		{"negative timeout", base, []string{"--domain", "a.auth0.com", "--timeout", "-1s"}, "m2mtoken: --timeout is negative (-1s)"},
		{"missing secret file", base[:1], []string{"--domain", "a.auth0.com", "--client-secret-file", "/nonexistent/secret"}, "m2mtoken: --client-secret-file: open /nonexistent/secret"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := runBin(t, tt.env, append([]string{"token", "--no-cache"}, tt.args...)...)
			if r.code != 1 || !strings.HasPrefix(r.stderr, tt.want) || strings.Contains(r.stderr, "Config.") || strings.Contains(r.stderr, "m2mtoken: m2mtoken:") {
				t.Fatalf("exit %d, stderr %q, want it to start %q", r.code, r.stderr, tt.want)
			}
		})
	}
	t.Run("a flag wins over the other variable", func(t *testing.T) {
		// AUTH0_DOMAIN in the shell, --token-url on the command line.
		r := runBin(t, append(base, "AUTH0_DOMAIN=elsewhere.invalid"), "token", "--no-cache", "--token-url", s.TokenURL())
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
	})
	t.Run("secret file variable", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "secret")
		os.WriteFile(f, []byte(secret+"\n"), 0o600)
		r := runBin(t, []string{"AUTH0_CLIENT_ID=cli", "AUTH0_CLIENT_SECRET_FILE=" + f, "AUTH0_AUDIENCE=" + aud, "M2MTOKEN_TOKEN_URL=" + s.TokenURL()}, "token", "--no-cache")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
	})
}

// TestWrongSecretWithCachedToken: a token cached for the right secret
// does not hide a wrong one.
func TestWrongSecretWithCachedToken(t *testing.T) {
	s := issuer(t)
	dir := t.TempDir()
	env := tokenEnv(s, dir)
	if r := runBin(t, env, "token"); r.code != 0 {
		t.Fatalf("right secret: exit %d: %s", r.code, r.stderr)
	}
	if r := runBin(t, env, "token"); r.code != 0 || s.TokensIssued("cli") != 1 {
		t.Fatalf("right secret again: exit %d, %d issued", r.code, s.TokensIssued("cli"))
	}
	env[2] = "AUTH0_CLIENT_SECRET=wrong-" + secret
	r := runBin(t, env, "token")
	if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "401 Unauthorized") {
		t.Fatalf("wrong secret with a cached token: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// TestMistakesNamed: the common mistakes of a first run, each named as
// what it is, in the words the user typed.
func TestMistakesNamed(t *testing.T) {
	s := issuer(t)
	base := []string{"AUTH0_CLIENT_ID=cli", "AUTH0_CLIENT_SECRET=" + secret, "AUTH0_AUDIENCE=" + aud}
	for _, tt := range []struct {
		name string
		env  []string
		args []string
		code int
		want string // the whole of stderr
	}{
		{"locahost", base, []string{"--token-url", "http://locahost:8080/oauth/token"}, 1,
			`m2mtoken: --token-url "http://locahost:8080/oauth/token": "locahost" is not a loopback name: did you mean localhost? (plain http is allowed only to loopback addresses)` + "\n"},
		{"empty port", base, []string{"--token-url", "http://127.0.0.1:/oauth/token"}, 1,
			`m2mtoken: --token-url "http://127.0.0.1:/oauth/token" has an empty port: give the port after the colon, or drop the colon for the scheme's default` + "\n"},
		{"variable typo", []string{"AUTH0_CLIENTID=cli", "AUTH0_CLIENT_SECRET=" + secret, "AUTH0_AUDIENCE=" + aud, "AUTH0_DOMAIN=t.example.com"}, nil, 1,
			"m2mtoken: warning: AUTH0_CLIENTID is set but not read: did you mean AUTH0_CLIENT_ID?\n" +
				"m2mtoken: --client-id or AUTH0_CLIENT_ID is empty: set it to the application's Client ID\n"},
		{"short flag", base, []string{"--secret", "x"}, 2,
			"m2mtoken token: unknown flag --secret: did you mean --client-secret or --client-secret-file?\nRun 'm2mtoken token --help' for its flags.\n"},
		{"typo of an old flag name", base, []string{"--dpop-ky", "x"}, 2,
			"m2mtoken token: unknown flag --dpop-ky: did you mean --dpop-key-file?\nRun 'm2mtoken token --help' for its flags.\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := runBin(t, tt.env, append([]string{"token", "--no-cache"}, tt.args...)...)
			if r.code != tt.code || r.stderr != tt.want {
				t.Fatalf("exit %d, stderr:\n%s\nwant:\n%s", r.code, r.stderr, tt.want)
			}
		})
	}
	t.Run("variable typo on success", func(t *testing.T) {
		// The audience has its default: the warning is what says why the
		// token is for no API.
		r := runBin(t, append(tokenEnv(s, t.TempDir()), "AUTH0_AUDIANCE=https://other/"), "token")
		if r.code != 0 || r.stderr != "m2mtoken: warning: AUTH0_AUDIANCE is set but not read: did you mean AUTH0_AUDIENCE?\n" {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("the old --dpop-key still works", func(t *testing.T) {
		r := runBin(t, tokenEnv(s, t.TempDir()), "token", "--dpop-key", dpopKeyFile(t), "--json")
		if r.code != 0 || !strings.Contains(r.stdout, `"token_type": "DPoP"`) {
			t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("an Ed25519 DPoP key, as --help says", func(t *testing.T) {
		_, key, _ := ed25519.GenerateKey(rand.Reader)
		der, _ := x509.MarshalPKCS8PrivateKey(key)
		f := filepath.Join(t.TempDir(), "ed.pem")
		os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
		r := runBin(t, tokenEnv(s, t.TempDir()), "token", "--dpop-key-file", f, "--json")
		if r.code != 0 || !strings.Contains(r.stdout, `"token_type": "DPoP"`) {
			t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		if h := runBin(t, nil, "token", "--help"); !strings.Contains(h.stdout, "(P-256, RSA or Ed25519)") {
			t.Fatalf("--help: %s", h.stdout)
		}
	})
	t.Run("a 401 from an API", func(t *testing.T) {
		api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="api"`)
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
		}))
		defer api.Close()
		r := runBin(t, base, "token", "--no-cache", "--token-url", api.URL+"/oauth/token")
		if r.code != 1 || !strings.Contains(r.stderr, "401 Unauthorized (a 401 with no OAuth error: the URL may not be a token endpoint (an API, or a proxy, that wants a token itself): check --token-url; Auth0's is https://TENANT/oauth/token)") {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("hints name what was set", func(t *testing.T) {
		env := tokenEnv(s, t.TempDir())
		env[2] = "AUTH0_CLIENT_SECRET=wrong-" + secret
		r := runBin(t, env, "token", "--auth-method", "basic")
		if r.code != 1 || !strings.Contains(r.stderr, "client_secret_basic: AUTH0_CLIENT_ID, AUTH0_CLIENT_SECRET and --auth-method)") {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
}

// TestRefusedConnectionSaidOnce: a port nothing listens on is retried (a
// server may be starting), said once with how long, then the final error:
// two lines.
func TestRefusedConnectionSaidOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	env := []string{"AUTH0_CLIENT_ID=cli", "AUTH0_CLIENT_SECRET=" + secret, "AUTH0_AUDIENCE=" + aud}
	// --timeout keeps the test short; the default retries for up to 30 s.
	r := runBin(t, env, "token", "--no-cache", "--timeout", "2s", "--token-url", "http://"+addr+"/oauth/token")
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if r.code != 1 || len(lines) != 2 ||
		lines[0] != "m2mtoken: nothing is listening at "+addr+" yet; retrying for up to 2s; Ctrl-C to stop" ||
		!strings.HasPrefix(lines[1], "m2mtoken: token request to http://"+addr+"/oauth/token failed ") ||
		!strings.HasSuffix(lines[1], ": connection refused (check the host and port in --token-url, or that the server runs)") {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	for _, l := range lines {
		if len(l) > 180 {
			t.Errorf("a line of %d characters: %q", len(l), l)
		}
	}
}
