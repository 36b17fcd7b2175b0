// serve's followed files: the client's secret (--client-secret-file) and a
// trusted platform's keys (--trust-key), changed the ways real programs
// change them, with serve running as its own process.

package main

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/internal/follow/followtest"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// followWait is how long a test waits for serve to log a change of a
// file it reads about once a second: far longer, for a loaded machine.
const followWait = 60 * time.Second

// requestToken asks serve's issuer for a token with form (the grant type
// and audience added) and returns the status and the answer.
func requestToken(t *testing.T, env map[string]string, form url.Values) (int, map[string]any) {
	t.Helper()
	form.Set("grant_type", "client_credentials")
	form.Set("audience", env["AUTH0_AUDIENCE"])
	resp, err := http.PostForm(env["AUTH0_DOMAIN"]+"/oauth/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// secretWorks reports whether serve's issuer takes secret.
func secretWorks(t *testing.T, env map[string]string, secret string) bool {
	t.Helper()
	code, body := requestToken(t, env, url.Values{"client_id": {env["AUTH0_CLIENT_ID"]}, "client_secret": {secret}})
	if code != 200 && (code != 401 || body["error"] != "access_denied") {
		t.Fatalf("secret %s: %d %v", m2mtoken.Fingerprint(secret), code, body)
	}
	return code == 200
}

func wantSecrets(t *testing.T, env map[string]string, when string, works map[string]bool) {
	t.Helper()
	for s, want := range works {
		if got := secretWorks(t, env, s); got != want {
			t.Errorf("%s: secret %s works %v, want %v", when, m2mtoken.Fingerprint(s), got, want)
		}
	}
}

// TestServeFollowsSecretFile: serve takes a changed secret file, whichever
// way it changed (a Kubernetes ..data swap, a rename over it, a rewrite in
// place): the new secret works and the old one is refused, the log says so
// by fingerprints, and the command pointed at the same file by the
// exports gets a token with the new secret.
func TestServeFollowsSecretFile(t *testing.T) {
	fp := m2mtoken.Fingerprint
	for _, way := range followtest.Ways {
		t.Run(way, func(t *testing.T) {
			f := followtest.New(t, way, "client-secret", "secret-one\n")
			env, lines, log := startServeLog(t, "--client-secret-file", f.Path)
			out := strings.Join(lines, "\n") + "\n"
			if env["AUTH0_CLIENT_SECRET_FILE"] != f.Path || env["AUTH0_CLIENT_SECRET"] != "" || strings.Contains(out, "secret-one") {
				t.Fatalf("serve printed:\n%s", out)
			}
			if want := "secret:    " + f.Path + " (" + fp("secret-one") + "), followed: on a change, the new secret works at once and the old one stops\n"; !strings.Contains(out, want) {
				t.Errorf("serve printed:\n%s\nwithout %q", out, want)
			}
			wantSecrets(t, env, "before", map[string]bool{"secret-one": true, "secret-two": false})

			f.Change("secret-two\n")
			log.WaitText(t, followWait, "m2mtoken serve: --client-secret-file "+f.Path+" changed: the new secret "+fp("secret-two")+
				" is accepted from now; the previous one, "+fp("secret-one")+", is refused from now\n")
			wantSecrets(t, env, "after", map[string]bool{"secret-one": false, "secret-two": true})
			if r := runBin(t, envList(env, "M2MTOKEN_CACHE_DIR="+t.TempDir()), "token"); r.code != 0 {
				t.Errorf("m2mtoken token with serve's exports: exit %d, %s", r.code, r.stderr)
			}

			f.Change("secret-three")
			log.WaitText(t, followWait, "the new secret "+fp("secret-three")+" is accepted from now")
			wantSecrets(t, env, "again", map[string]bool{"secret-two": false, "secret-three": true})
			for _, s := range []string{"secret-one", "secret-two", "secret-three"} {
				if l := log.String(); strings.Contains(l, s) {
					t.Errorf("the secret %s in the log:\n%s", s, l)
				}
			}
		})
	}
}

// TestServeRotationGraceAndDelay: --rotation-grace keeps the old secret
// working for a while; --rotation-delay makes the new one wait, as
// Auth0's propagation does, so that both orders of a rotation can be
// rehearsed.
func TestServeRotationGraceAndDelay(t *testing.T) {
	for _, tt := range []struct {
		flag, startup, logged string
		works                 map[string]bool
	}{
		{"--rotation-grace", "the new secret works at once and the old one works 1h0m0s more (--rotation-grace)",
			"is accepted from now; the previous one, " + m2mtoken.Fingerprint("old-secret") + ", is still accepted for 1h0m0s",
			map[string]bool{"old-secret": true, "new-secret": true}},
		{"--rotation-delay", "the new secret works 1h0m0s later (--rotation-delay) and the old one stops",
			"is accepted in 1h0m0s; the previous one, " + m2mtoken.Fingerprint("old-secret") + ", is refused from now",
			map[string]bool{"old-secret": false, "new-secret": false}},
	} {
		t.Run(tt.flag, func(t *testing.T) {
			f := followtest.New(t, "rename", "client-secret", "old-secret")
			env, lines, log := startServeLog(t, "--client-secret-file", f.Path, tt.flag, "1h")
			if out := strings.Join(lines, "\n"); !strings.Contains(out, tt.startup) {
				t.Errorf("serve printed:\n%s\nwithout %q", out, tt.startup)
			}
			f.Change("new-secret")
			log.WaitText(t, followWait, tt.logged)
			wantSecrets(t, env, "after the change", tt.works)
		})
	}
}

// TestServeSecretFileTrouble: a secret file that turns empty, vanishes or
// holds only a newline keeps the last secret working, with one warning
// that names the file, and a line when it reads well again; a file that
// cannot be read at start stops serve with the flag and the file named.
func TestServeSecretFileTrouble(t *testing.T) {
	f := followtest.New(t, "in place", "client-secret", "good-secret")
	env, _, log := startServeLog(t, "--client-secret-file", f.Path)
	for _, step := range []struct {
		do     func()
		logged string
	}{
		{func() { followtest.Write(t, f.Path, "") }, "warning: --client-secret-file " + f.Path + " is empty; what it held before is still used\n"},
		{func() { os.Remove(f.Path) }, "warning: --client-secret-file " + f.Path + ": no such file or directory; what it held before is still used\n"},
		{func() { followtest.Write(t, f.Path, "good-secret\n") }, "m2mtoken serve: --client-secret-file " + f.Path + " reads well again\n"},
		{func() { followtest.Write(t, f.Path, "\r\n") }, "warning: --client-secret-file " + f.Path + ": holds no secret, only line breaks; what it held before is still used\n"},
	} {
		step.do()
		log.WaitText(t, followWait, step.logged)
		wantSecrets(t, env, step.logged, map[string]bool{"good-secret": true})
	}
	if n := strings.Count(log.String(), "is empty"); n != 1 {
		t.Errorf("%d warnings for one empty file:\n%s", n, log.String())
	}

	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	followtest.Write(t, empty, "")
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--client-secret-file", filepath.Join(dir, "none")}, 1, "m2mtoken: --client-secret-file: " + filepath.Join(dir, "none") + ": no such file or directory\n"},
		{[]string{"--client-secret-file", empty}, 1, "m2mtoken: --client-secret-file: " + empty + " is empty\n"},
		{[]string{"--client-secret-file", empty, "--client-secret", "x"}, 2, "--client-secret and --client-secret-file are both set: give only one"},
		{[]string{"--rotation-grace", "10s"}, 2, "--rotation-grace and --rotation-delay need --client-secret-file"},
		{[]string{"--client-secret-file", empty, "--rotation-delay", "-1s"}, 2, "cannot be negative"},
	} {
		r := runBin(t, nil, append([]string{"serve"}, tt.args...)...)
		if r.code != tt.code || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("serve %q: exit %d, %q; want %d, %q", tt.args, r.code, r.stderr, tt.code, tt.want)
		}
	}
}

// TestServeTrustsPlatform: with --trust-issuer, --trust-subject and
// --trust-key (a JWKS, followed), serve's client gets tokens with a
// platform's token as its client assertion, reused, and the API takes
// them; another subject is refused by name; when the platform's keys
// rotate in the file, the new key's tokens work and the old key's are
// refused.
func TestServeTrustsPlatform(t *testing.T) {
	const sub = "system:serviceaccount:prod:billing"
	k8s := m2mtest.NewPlatform("https://kubernetes.default.svc.cluster.local")
	keys := followtest.New(t, "kubernetes", "jwks.json", string(k8s.JWKS()))
	env, lines, log := startServeLog(t, "--client-secret", secret, "--trust-issuer", k8s.Issuer, "--trust-subject", sub, "--trust-key", keys.Path)
	out := strings.Join(lines, "\n") + "\n"
	if want := "trust:     client assertions (jwt-bearer, or jwt-spiffe) from issuer https://kubernetes.default.svc.cluster.local for subject " + sub +
		", aud api://AzureADTokenExchange,\n           signed with 1 key (kid " + k8s.Key().ID + ") from " + keys.Path + " (followed)\n"; !strings.Contains(out, want) {
		t.Errorf("serve printed:\n%s\nwithout %q", out, want)
	}
	assertion := func(tok string) url.Values {
		return url.Values{"client_id": {"m2mtoken-local"}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {tok}}
	}
	tok, err := k8s.Token(sub, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var access string
	for i := range 2 {
		code, body := requestToken(t, env, assertion(tok))
		if code != 200 {
			t.Fatalf("request %d with the platform's token: %d %v", i, code, body)
		}
		access, _ = body["access_token"].(string)
	}
	req, _ := http.NewRequest("GET", env["API_URL"]+"v1/things", nil)
	req.Header.Set("Authorization", "Bearer "+access)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok m2mtoken-local Bearer https://api.local/\n" {
		t.Errorf("the API answered %q", b)
	}
	other, _ := k8s.Token("system:serviceaccount:prod:intruder", "", time.Hour)
	if code, body := requestToken(t, env, assertion(other)); code != 401 || !strings.Contains(body["error_description"].(string), `subject "system:serviceaccount:prod:intruder" does not match`) {
		t.Errorf("another subject: %d %v", code, body)
	}

	// The platform's keys rotate: the kubelet swaps the file.
	rotated := m2mtest.NewPlatform(k8s.Issuer)
	keys.Change(string(rotated.JWKS()))
	log.WaitText(t, followWait, "m2mtoken serve: --trust-key "+keys.Path+" changed: 1 key (kid "+rotated.Key().ID+") trusted for issuer "+k8s.Issuer+"\n")
	tok2, _ := rotated.Token(sub, "", time.Hour)
	if code, body := requestToken(t, env, assertion(tok2)); code != 200 {
		t.Errorf("the rotated key's token: %d %v", code, body)
	}
	if code, body := requestToken(t, env, assertion(tok)); code != 401 || !strings.Contains(body["error_description"].(string), "names none of the keys trusted for issuer") {
		t.Errorf("the old key's token: %d %v", code, body)
	}
}

// TestServeTrustsSPIFFE: a SPIFFE trust domain's key in PEM, and a
// JWT-SVID sent as jwt-spiffe without client_id; the startup mistakes of
// the trust flags are refused with the flags named.
func TestServeTrustsSPIFFE(t *testing.T) {
	const id = "spiffe://example.org/ns/prod/sa/billing"
	td := m2mtest.NewPlatform("spiffe://example.org")
	der, err := x509.MarshalPKIXPublicKey(td.Key().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "bundle.pem")
	followtest.Write(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
	env, _, _ := startServeLog(t, "--trust-issuer", "spiffe://example.org", "--trust-subject", id, "--trust-audience", "https://issuer.example/", "--trust-key", keyFile)
	svid, _ := td.Token(id, "https://issuer.example/", 5*time.Minute)
	form := url.Values{"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-spiffe"}, "client_assertion": {svid}}
	if code, body := requestToken(t, env, form); code != 200 {
		t.Errorf("a JWT-SVID: %d %v", code, body)
	}

	privFile := filepath.Join(t.TempDir(), "key.pem")
	followtest.Write(t, privFile, "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n")
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--trust-issuer", "https://k8s"}, 2, "--trust-issuer, --trust-subject and --trust-key go together: --trust-subject and --trust-key missing"},
		{[]string{"--trust-audience", "x"}, 2, "--trust-issuer and --trust-subject and --trust-key missing"},
		{[]string{"--trust-issuer", "https://k8s", "--trust-subject", "s", "--trust-key", privFile}, 1,
			"m2mtoken: --trust-key: " + privFile + ": it holds a private key (PRIVATE KEY): give the public key instead, such as the output of openssl pkey -in KEY -pubout\n"},
		{[]string{"--trust-issuer", "spiffe://example.org", "--trust-subject", "spiffe://other.org/x", "--trust-key", keyFile}, 2,
			`--trust-issuer spiffe://example.org and --trust-subject spiffe://other.org/x: Subject "spiffe://other.org/x" is not a SPIFFE ID in spiffe://example.org`},
	} {
		r := runBin(t, nil, append([]string{"serve"}, tt.args...)...)
		if r.code != tt.code || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("serve %q: exit %d, %q; want %d, %q", tt.args, r.code, r.stderr, tt.code, tt.want)
		}
	}
}
