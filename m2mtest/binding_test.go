// Tests of certificate-bound tokens (RFC 8705 section 3): which tokens
// are bound, and the APIs that accept them only with their certificate.

package m2mtest

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/dpop"
)

// protectedTLS starts an API over https that asks for client
// certificates, behind s.Protect.
func protectedTLS(t *testing.T, s *Server) *httptest.Server {
	api := httptest.NewUnstartedServer(s.Protect(aud, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })))
	api.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	api.StartTLS()
	t.Cleanup(api.Close)
	return api
}

// call sends a request with tok to u through c, and returns the status
// and the WWW-Authenticate challenge.
func call(t *testing.T, c *http.Client, u, scheme, tok string, header ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set("Authorization", scheme+" "+tok)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
}

// TestCertificateBoundToken: an API behind Protect accepts a
// certificate-bound token only over a connection with its certificate:
// a stolen token sent with no certificate, with another, or over plain
// http is refused with 401 invalid_token saying so; Verify, which sees no
// connection, refuses it too.
func TestCertificateBoundToken(t *testing.T) {
	mine, theirs := issue(t, nil, subject("svc")), issue(t, nil, subject("svc"))
	s := NewMTLSAliasServer(nil, Client{ID: "svc", Audiences: []string{aud}, Certificate: ClientCertificate{SelfSigned: mine.Leaf}})
	defer s.Close()
	a := post(t, s.CertificateClient(mine), s.MTLSTokenURL(), certForm("svc"))
	tok, _ := a.body["access_token"].(string)
	if tok == "" {
		t.Fatalf("%d %v", a.status, a.body)
	}
	api := protectedTLS(t, s)
	s.Handle("/api", s.Protect(aud, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	for _, tt := range []struct {
		name   string
		client *http.Client
		url    string
		want   int
		chall  string
	}{
		{"its certificate", s.CertificateClient(mine), api.URL, 200, ""},
		{"no certificate", api.Client(), api.URL, 401, `Bearer realm="api", error="invalid_token", error_description="the token is bound to a client certificate (cnf.x5t#S256) and the request presented none: send it with the client certificate the token was issued to"`},
		{"another certificate", s.CertificateClient(theirs), api.URL, 401, "and the request presented another (" + x5t(theirs) + ")"},
		{"plain http", http.DefaultClient, httptestServer(t, s.Protect(aud, nil, http.NotFoundHandler())), 401, "came over plain http"},
		// The routes added with Handle, at the alias, see its certificate.
		{"its certificate, at the alias", s.CertificateClient(mine), strings.TrimSuffix(s.MTLSTokenURL(), "/oauth/token") + "/api", 200, ""},
		{"another, at the alias", s.CertificateClient(theirs), strings.TrimSuffix(s.MTLSTokenURL(), "/oauth/token") + "/api", 401, "presented another"},
	} {
		code, chall := call(t, tt.client, tt.url, "Bearer", tok)
		if code != tt.want || !strings.Contains(chall, tt.chall) {
			t.Errorf("%s: %d %q, want %d %q", tt.name, code, chall, tt.want, tt.chall)
		}
	}
	// The body says why too, for a user who reads only the body.
	req, _ := http.NewRequest("GET", api.URL, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if resp, err := api.Client().Do(req); err != nil {
		t.Fatal(err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := "invalid token: the token is bound to a client certificate (cnf.x5t#S256) and the request presented none"; !strings.Contains(string(body), want) {
			t.Errorf("body %q, want %q", body, want)
		}
	}
	if _, err := s.Verify(tok, aud); err == nil || !strings.Contains(err.Error(), "bound to a client certificate (cnf.x5t#S256)") {
		t.Errorf("Verify: %v", err)
	}
	if code, chall := call(t, s.CertificateClient(mine), api.URL, "DPoP", tok); code != 401 || !strings.Contains(chall, "not DPoP-bound") {
		t.Errorf("as DPoP: %d %q", code, chall)
	}
}

// TestCertificateBinding: which tokens are bound, by the client's
// CertificateBinding: by default those of a request authenticated by the
// certificate, not a secret sent over mTLS; BindAlways binds a secret's
// too (FAPI) and refuses a request without a certificate; BindNever
// binds none.
func TestCertificateBinding(t *testing.T) {
	mine := issue(t, nil, subject("svc"))
	cc := ClientCertificate{SelfSigned: mine.Leaf}
	s := NewMTLSAliasServer(nil,
		Client{ID: "default", Secret: "pw", Audiences: []string{aud}, Certificate: cc},
		Client{ID: "always", Secret: "pw", Audiences: []string{aud}, CertificateBinding: BindAlways},
		Client{ID: "never", Audiences: []string{aud}, Certificate: cc, CertificateBinding: BindNever},
	)
	defer s.Close()
	withSecret := func(id string) url.Values { f := certForm(id); f.Set("client_secret", "pw"); return f }
	c := s.CertificateClient(mine)
	for _, tt := range []struct {
		name  string
		form  url.Values
		bound bool
	}{
		{"default, by certificate", certForm("default"), true},
		{"default, by secret over mTLS", withSecret("default"), false},
		{"always, by secret over mTLS", withSecret("always"), true},
		{"never, by certificate", certForm("never"), false},
	} {
		a := post(t, c, s.MTLSTokenURL(), tt.form)
		if a.status != 200 {
			t.Fatalf("%s: %d %v", tt.name, a.status, a.body)
		}
		if got := cnfOf(t, a)["x5t#S256"] == x5t(mine); got != tt.bound {
			t.Errorf("%s: bound %v, want %v", tt.name, got, tt.bound)
		}
	}
	a := post(t, s.Client(), s.TokenURL(), withSecret("always"))
	wantRefused(t, "always, without a certificate", a, 400, "invalid_request", `Client "always" gets certificate-bound tokens: send the token request over mTLS, with a client certificate`)
}

// TestDPoPAndCertificateBound: a DPoP proof sent over mTLS binds the token
// to both the proof's key and the certificate; the API wants both.
func TestDPoPAndCertificateBound(t *testing.T) {
	mine, theirs := issue(t, nil, subject("svc")), issue(t, nil, subject("svc"))
	s := NewMTLSAliasServer(nil, Client{ID: "svc", Audiences: []string{aud}, Certificate: ClientCertificate{SelfSigned: mine.Leaf}})
	defer s.Close()
	k, _ := dpopKey(t)
	proof, err := k.Proof("POST", s.MTLSTokenURL(), "", "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", s.MTLSTokenURL(), strings.NewReader(certForm("svc").Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("DPoP", proof)
	resp, err := s.CertificateClient(mine).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	a := answer{resp.StatusCode, resp.Header, body}
	cnf := cnfOf(t, a)
	if a.status != 200 || body["token_type"] != "DPoP" || cnf["jkt"] != k.Thumbprint() || cnf["x5t#S256"] != x5t(mine) {
		t.Fatalf("%d %v cnf %v", a.status, body, cnf)
	}
	tok := body["access_token"].(string)
	api := protectedTLS(t, s)
	for _, tt := range []struct {
		name  string
		cert  *tls.Certificate
		want  int
		chall string
	}{
		{"both", &mine, 200, ""},
		{"the proof, no certificate", nil, 401, "presented none"},
		{"the proof, another certificate", &theirs, 401, "presented another"},
	} {
		c := api.Client()
		if tt.cert != nil {
			c = s.CertificateClient(*tt.cert)
		}
		p, _ := k.Proof("GET", api.URL, "", dpop.ATH(tok), time.Now())
		code, chall := call(t, c, api.URL, "DPoP", tok, "DPoP", p)
		if code != tt.want || !strings.Contains(chall, tt.chall) {
			t.Errorf("%s: %d %q, want %d %q", tt.name, code, chall, tt.want, tt.chall)
		}
	}
	if code, chall := call(t, s.CertificateClient(mine), api.URL, "Bearer", tok); code != 401 || !strings.Contains(chall, "DPoP-bound") {
		t.Errorf("as Bearer: %d %q", code, chall)
	}
}
