// serve with client certificates (--client-cert-auth, --cert-bound-tokens),
// run as its own process and called as a client would: a Go http.Client
// with the certificate, and curl from a shell.

package main

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/follow/followtest"
	"github.com/m2mtoken/m2mtoken/internal/jwt"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// mtlsClient is an http.Client that trusts serve's CA (M2MTOKEN_CA_FILE)
// and presents cert, if given.
func mtlsClient(t *testing.T, env map[string]string, cert *tls.Certificate) *http.Client {
	t.Helper()
	b, err := os.ReadFile(env["M2MTOKEN_CA_FILE"])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatal("no CA in M2MTOKEN_CA_FILE")
	}
	cfg := &tls.Config{RootCAs: pool}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	tr := &http.Transport{TLSClientConfig: cfg}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// exportedCert loads the certificate and key serve exported.
func exportedCert(t *testing.T, env map[string]string) tls.Certificate {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(env["M2MTOKEN_CLIENT_CERT_FILE"], env["M2MTOKEN_CLIENT_KEY_FILE"])
	if err != nil {
		t.Fatalf("the exported certificate and key: %v", err)
	}
	return cert
}

// certToken asks serve's issuer for a token through c with form (the
// grant type, client and audience added); it returns the status, the
// answer, and the token's cnf claim.
func certToken(t *testing.T, c *http.Client, env map[string]string, form url.Values) (int, map[string]any, map[string]any) {
	t.Helper()
	form.Set("grant_type", "client_credentials")
	form.Set("client_id", env["AUTH0_CLIENT_ID"])
	form.Set("audience", env["AUTH0_AUDIENCE"])
	resp, err := c.PostForm("https://"+env["AUTH0_DOMAIN"]+"/oauth/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	var claims struct{ Cnf map[string]any }
	if tok, _ := body["access_token"].(string); tok != "" {
		jwt.Unverified(tok, &claims)
	}
	return resp.StatusCode, body, claims.Cnf
}

// apiStatus calls u with tok through c, and returns the status and the
// challenge.
func apiStatus(t *testing.T, c *http.Client, u, tok string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
}

func thumbprintOf(cert tls.Certificate) string {
	sum := sha256.Sum256(cert.Certificate[0])
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// TestServeTLSClientAuth: serve --client-cert-auth tls_client_auth issues
// the client a certificate from its CA and exports it with the method and
// no secret. A token request with it and no secret gets a token bound to
// it; one without is refused, saying why. The API (its own address and
// the issuer's quickstart routes) accepts the token with the certificate,
// and refuses it without, or with another client's.
func TestServeTLSClientAuth(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	env, lines := startServe(t, "--tls", "--client-cert-auth", "tls_client_auth", "--client-cert-out", certFile, "--client-key-out", keyFile)
	out := strings.Join(lines, "\n") + "\n"
	if env["M2MTOKEN_AUTH_METHOD"] != "tls_client_auth" || env["M2MTOKEN_CLIENT_CERT_FILE"] != certFile || env["M2MTOKEN_CLIENT_KEY_FILE"] != keyFile ||
		env["AUTH0_CLIENT_SECRET"] != "" || env["AUTH0_CLIENT_SECRET_FILE"] != "" {
		t.Fatalf("exports %v", env)
	}
	cert := exportedCert(t, env)
	for _, want := range []string{
		"auth:      tls_client_auth, no secret: a certificate from this run's CA with the subject CN=m2mtoken-local, such as the one below\n",
		"cert:      " + certFile + " (x5t#S256 " + thumbprintOf(cert) + ", until ",
		"), key " + keyFile + "\n",
		"tokens:    bound to the client certificate (cnf.x5t#S256); the API accepts a token only with its certificate\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("serve printed:\n%s\nwithout %q", out, want)
		}
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("--client-key-out: %v %v, want mode 0600", fi.Mode(), err)
	}

	withCert := mtlsClient(t, env, &cert)
	code, body, cnf := certToken(t, withCert, env, url.Values{})
	if code != 200 || body["token_type"] != "Bearer" || cnf["x5t#S256"] != thumbprintOf(cert) {
		t.Fatalf("with the certificate: %d %v, cnf %v", code, body["error_description"], cnf)
	}
	tok := body["access_token"].(string)
	without := mtlsClient(t, env, nil)
	code, body, _ = certToken(t, without, env, url.Values{})
	if code != 401 || body["error"] != "invalid_client" || !strings.Contains(body["error_description"].(string), `client "m2mtoken-local" authenticates with its certificate (tls_client_auth) and the request presented none`) {
		t.Fatalf("without a certificate: %d %v", code, body)
	}
	if code, _, _ = certToken(t, withCert, env, url.Values{"client_secret": {"anything"}}); code != 401 {
		t.Fatalf("a secret, with the certificate: %d", code)
	}
	self, err := m2mtest.SelfSigned(&x509.Certificate{Subject: pkix.Name{CommonName: "m2mtoken-local"}})
	if err != nil {
		t.Fatal(err)
	}
	if code, body, _ = certToken(t, mtlsClient(t, env, &self), env, url.Values{}); code != 401 || !strings.Contains(body["error_description"].(string), "does not chain to a CA the server trusts") {
		t.Fatalf("a self-signed certificate with the registered subject: %d %v", code, body)
	}

	other := mtlsClient(t, env, &self)
	for _, u := range []string{env["API_URL"] + "api/private", env["API_URL"] + "v1/things", "https://" + env["AUTH0_DOMAIN"] + "/api/private"} {
		if code, chall := apiStatus(t, withCert, u, tok); code != 200 {
			t.Errorf("%s with the certificate: %d %q", u, code, chall)
		}
		if code, chall := apiStatus(t, without, u, tok); code != 401 || !strings.Contains(chall, `error_description="the token is bound to a client certificate (cnf.x5t#S256) and the request presented none`) {
			t.Errorf("%s without the certificate: %d %q", u, code, chall)
		}
		if code, chall := apiStatus(t, other, u, tok); code != 401 || !strings.Contains(chall, "and the request presented another ("+thumbprintOf(self)+")") {
			t.Errorf("%s with another certificate: %d %q", u, code, chall)
		}
	}

	// The command, with serve's exports as they are: a token bound to the
	// certificate, which the API accepts with it.
	r := runBin(t, envList(env), "token", "--no-cache")
	if r.code != 0 {
		t.Fatalf("m2mtoken token with the exports: exit %d: %s", r.code, r.stderr)
	}
	cmdTok := strings.TrimSpace(r.stdout)
	if code, chall := apiStatus(t, withCert, env["API_URL"]+"api/private", cmdTok); code != 200 {
		t.Errorf("the command's token, with the certificate: %d %q", code, chall)
	}
	if code, _ := apiStatus(t, without, env["API_URL"]+"api/private", cmdTok); code != 401 {
		t.Errorf("the command's token, without the certificate: %d, want 401", code)
	}
}

// TestServeClientCertWithCurl: what a shell user does with the exports:
// curl gets a token with the certificate and key, and calls the API with
// them; without them the API refuses the token.
func TestServeClientCertWithCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("curl is missing")
		}
		t.Skip("curl is not installed")
	}
	for _, method := range []string{"tls_client_auth", "self_signed_tls_client_auth"} {
		t.Run(method, func(t *testing.T) {
			env, _ := startServe(t, "--tls", "--client-cert-auth", method)
			script := `set -e
cert="--cert $M2MTOKEN_CLIENT_CERT_FILE --key $M2MTOKEN_CLIENT_KEY_FILE"
answer=$(curl -sS $cert -d grant_type=client_credentials -d client_id="$AUTH0_CLIENT_ID" -d audience="$AUTH0_AUDIENCE" "https://$AUTH0_DOMAIN/oauth/token")
tok=$(printf '%s' "$answer" | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
printf 'with %s\n' "$(curl -sS $cert -H "Authorization: Bearer $tok" "${API_URL}api/private")"
printf 'without %s\n' "$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $tok" "${API_URL}api/private")"
printf 'no cert %s\n' "$(curl -sS -d grant_type=client_credentials -d client_id="$AUTH0_CLIENT_ID" -d audience="$AUTH0_AUDIENCE" "https://$AUTH0_DOMAIN/oauth/token")"
`
			cmd := exec.Command("/bin/sh", "-c", script)
			cmd.Env = envList(env, "PATH="+filepath.Dir(curl)+":/usr/bin:/bin")
			b, err := cmd.CombinedOutput()
			out := string(b)
			for _, want := range []string{
				`with {"message":"Hello from a private endpoint! You need to be authenticated to see this."}`,
				"without 401",
				`no cert {"error":"invalid_client","error_description":"Invalid client certificate: client \"m2mtoken-local\" authenticates with its certificate (` + method + `) and the request presented none`,
			} {
				if !strings.Contains(out, want) {
					t.Errorf("%v; the shell printed:\n%s\nwithout %q", err, out, want)
				}
			}
		})
	}
}

// TestServeSelfSignedClientAuth: serve --client-cert-auth
// self_signed_tls_client_auth makes and registers a self-signed
// certificate; with --client-cert it registers the user's, follows the
// file, and rotates as the file changes: a second certificate added (both
// work), the first removed (refused from then on), the log naming them by
// thumbprint.
func TestServeSelfSignedClientAuth(t *testing.T) {
	env, lines := startServe(t, "--tls", "--client-cert-auth", "self_signed_tls_client_auth")
	if out := strings.Join(lines, "\n"); !strings.Contains(out, "auth:      self_signed_tls_client_auth, no secret: the self-signed certificate below is registered\n") {
		t.Errorf("serve printed:\n%s", out)
	}
	made := exportedCert(t, env)
	if code, body, cnf := certToken(t, mtlsClient(t, env, &made), env, url.Values{}); code != 200 || cnf["x5t#S256"] != thumbprintOf(made) {
		t.Fatalf("the certificate serve made: %d %v %v", code, body["error_description"], cnf)
	}

	certPEM := func(c tls.Certificate) string { p, _, _ := m2mtest.CertificatePEM(c); return string(p) }
	one, _ := m2mtest.SelfSigned(&x509.Certificate{Subject: pkix.Name{CommonName: "billing"}})
	two, _ := m2mtest.SelfSigned(&x509.Certificate{Subject: pkix.Name{CommonName: "billing"}})
	f := followtest.New(t, "rename", "client.pem", certPEM(one))
	env, lines, log := startServeLog(t, "--tls", "--client-cert-auth", "self_signed_tls_client_auth", "--client-cert", f.Path)
	out := strings.Join(lines, "\n") + "\n"
	if !strings.Contains(out, "auth:      self_signed_tls_client_auth, no secret: the certificates in "+f.Path+" (followed) are registered: x5t#S256 "+thumbprintOf(one)+"\n") ||
		env["M2MTOKEN_CLIENT_CERT_FILE"] != "" || env["M2MTOKEN_CLIENT_KEY_FILE"] != "" ||
		!strings.Contains(out, "# and your certificate's files: one of those registered in "+f.Path+", and its private key:\n") {
		t.Fatalf("serve printed:\n%s", out)
	}
	works := func(c tls.Certificate) bool {
		code, _, _ := certToken(t, mtlsClient(t, env, &c), env, url.Values{})
		return code == 200
	}
	if !works(one) || works(two) {
		t.Fatal("before the rotation")
	}
	f.Change(certPEM(one) + certPEM(two))
	log.WaitText(t, followWait, "changed: registered x5t#S256 "+thumbprintOf(one)+" and x5t#S256 "+thumbprintOf(two)+" (before: x5t#S256 "+thumbprintOf(one)+")")
	if !works(one) || !works(two) {
		t.Fatal("both in the file")
	}
	f.Change(certPEM(two))
	log.WaitText(t, followWait, "changed: registered x5t#S256 "+thumbprintOf(two)+" (before: ")
	if works(one) || !works(two) {
		t.Fatal("the first removed from the file")
	}
	three, _ := m2mtest.SelfSigned(&x509.Certificate{Subject: pkix.Name{CommonName: "billing"}})
	f.Change(certPEM(three))
	log.WaitText(t, followWait, "changed: registered x5t#S256 "+thumbprintOf(three)+" (before: x5t#S256 "+thumbprintOf(two)+")")
	if works(two) || !works(three) {
		t.Fatal("replaced in one change")
	}
}

// TestServeCertBoundTokens: --cert-bound-tokens with a secret (FAPI)
// binds the secret's tokens to the certificate of the token request, and
// refuses a token request without one; --cert-bound-tokens=false with
// --client-cert-auth issues unbound tokens, which the API accepts without
// a certificate.
func TestServeCertBoundTokens(t *testing.T) {
	env, lines := startServe(t, "--tls", "--cert-bound-tokens", "--client-secret", secret)
	if env["AUTH0_CLIENT_SECRET"] != secret || env["M2MTOKEN_AUTH_METHOD"] != "" || env["M2MTOKEN_CLIENT_CERT_FILE"] == "" {
		t.Fatalf("exports %v", env)
	}
	if out := strings.Join(lines, "\n"); !strings.Contains(out, "tokens:    bound to the client certificate of the token request (cnf.x5t#S256): a token request needs one, any;") {
		t.Errorf("serve printed:\n%s", out)
	}
	cert := exportedCert(t, env)
	withSecret := url.Values{"client_secret": {secret}}
	code, body, cnf := certToken(t, mtlsClient(t, env, &cert), env, withSecret)
	if code != 200 || cnf["x5t#S256"] != thumbprintOf(cert) {
		t.Fatalf("a secret over mTLS: %d %v %v", code, body["error_description"], cnf)
	}
	if code, body, _ := certToken(t, mtlsClient(t, env, nil), env, withSecret); code != 400 || !strings.Contains(body["error_description"].(string), "gets certificate-bound tokens: send the token request over mTLS") {
		t.Fatalf("a secret without a certificate: %d %v", code, body)
	}

	env, lines = startServe(t, "--tls", "--client-cert-auth", "tls_client_auth", "--cert-bound-tokens=false")
	if out := strings.Join(lines, "\n"); !strings.Contains(out, "tokens:    not bound to the client certificate (--cert-bound-tokens=false)\n") {
		t.Errorf("serve printed:\n%s", out)
	}
	cert = exportedCert(t, env)
	code, body, cnf = certToken(t, mtlsClient(t, env, &cert), env, url.Values{})
	if code != 200 || cnf != nil {
		t.Fatalf("unbound: %d %v %v", code, body["error_description"], cnf)
	}
	if code, chall := apiStatus(t, mtlsClient(t, env, nil), env["API_URL"]+"api/private", body["access_token"].(string)); code != 200 {
		t.Fatalf("an unbound token without the certificate: %d %q", code, chall)
	}
}

// TestServeClientCertMistakes: the flags' mistakes are usage errors that
// say what to do; a --client-cert that is not a certificate stops serve
// with the flag and the file named.
func TestServeClientCertMistakes(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "key.pem")
	_, keyPEM, _ := m2mtest.CertificatePEM(mustSelfSigned(t))
	os.WriteFile(key, keyPEM, 0o600)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--client-cert-auth", "tls_client_auth"}, "--client-cert-auth needs --tls: a client certificate travels in the TLS handshake"},
		{[]string{"--tls", "--client-cert-auth", "mtls"}, `--client-cert-auth "mtls": want tls_client_auth (a certificate from serve's CA) or self_signed_tls_client_auth (a registered certificate)`},
		{[]string{"--tls", "--client-cert-auth", "tls_client_auth", "--client-secret", "x"}, "--client-cert-auth replaces the client's secret, as on Auth0"},
		{[]string{"--tls", "--client-cert", key}, "--client-cert registers a self-signed certificate: it needs --client-cert-auth self_signed_tls_client_auth"},
		{[]string{"--tls", "--client-cert-auth", "self_signed_tls_client_auth", "--client-cert", key, "--client-cert-out", "x"}, "give one or the other"},
		{[]string{"--tls", "--client-key-out", "x"}, "--client-cert-out and --client-key-out need --client-cert-auth or --cert-bound-tokens"},
		{[]string{"--tls", "--client-cert-auth", "self_signed_tls_client_auth", "--client-cert", key}, "--client-cert: " + key + ": holds a private key: give the certificate only"},
	} {
		r := runBin(t, nil, append([]string{"serve"}, tt.args...)...)
		if r.code == 0 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("serve %q: exit %d, %q, want %q", tt.args, r.code, r.stderr, tt.want)
		}
	}
}

func mustSelfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	c, err := m2mtest.SelfSigned(&x509.Certificate{Subject: pkix.Name{CommonName: "x"}, NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
