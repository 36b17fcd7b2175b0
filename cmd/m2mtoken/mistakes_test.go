package main

import (
	"io"
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
	if r.code != 1 || strings.Contains(r.stderr, "attempt") || !strings.Contains(r.stderr, "check the domain or token URL: the host name does not exist") {
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
			"m2mtoken: --client-secret or AUTH0_CLIENT_SECRET is empty: set it to the application's Client Secret (or set --private-key-file or M2MTOKEN_PRIVATE_KEY_FILE for Private Key JWT)\n"},
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
