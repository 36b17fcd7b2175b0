package m2mtoken

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// nxdomainResolver answers every DNS query with NXDOMAIN, from a real DNS
// server on loopback, so that the resolver's own error reaches the source
// whatever the machine's DNS is like.
func nxdomainResolver(t *testing.T) (*net.Resolver, *atomic.Int64) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	var queries atomic.Int64
	go func() {
		buf := make([]byte, 1500)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 12 {
				continue
			}
			queries.Add(1)
			resp := append([]byte(nil), buf[:n]...)
			flags := binary.BigEndian.Uint16(resp[2:])
			flags |= 1 << 15       // a response
			flags |= 1 << 7        // recursion available
			flags = flags&^0xF | 3 // NXDOMAIN
			binary.BigEndian.PutUint16(resp[2:], flags)
			pc.WriteTo(resp, addr)
		}
	}()
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
	return r, &queries
}

// TestPermanentNetworkErrors: a name that does not exist and a
// certificate that does not verify are not retried, say what to check,
// and are remembered for ErrorCacheTTL.
func TestPermanentNetworkErrors(t *testing.T) {
	t.Run("no such host", func(t *testing.T) {
		r, queries := nxdomainResolver(t)
		tr := &http.Transport{DialContext: (&net.Dialer{Resolver: r}).DialContext}
		e := newEndpoint(t)
		s, clk := testSource(t, e, func(c *Config) {
			c.TokenURL = ""
			c.Domain = "no-such-tenant.example.test"
			c.HTTPClient = &http.Client{Transport: tr}
		})
		_, err := s.Token()
		var te *TokenError
		if !errors.As(err, &te) || te.Temporary || !strings.Contains(err.Error(), "the host name does not exist: check Config.Domain") {
			t.Fatalf("err = %v", err)
		}
		if len(clk.Slept()) != 0 || te.Attempts != 0 || s.Stats().TokenRequests != 1 {
			t.Fatalf("retried: slept %v, %d attempts, stats %+v", clk.Slept(), te.Attempts, s.Stats())
		}
		q := queries.Load()
		if _, err2 := s.Token(); err2 != err || queries.Load() != q {
			t.Fatalf("not remembered: %v, %d queries then %d", err2, q, queries.Load())
		}
		clk.Advance(6 * time.Second)
		s.Token()
		if queries.Load() == q {
			t.Fatal("still remembered after ErrorCacheTTL")
		}
	})
	t.Run("plain http server", func(t *testing.T) {
		// https:// to a server that answers in plain http.
		e := newEndpoint(t)
		s, clk := testSource(t, e, func(c *Config) { c.TokenURL = "https://" + e.Listener.Addr().String() + "/oauth/token" })
		_, err := s.Token()
		var te *TokenError
		if !errors.As(err, &te) || te.Temporary || !strings.Contains(err.Error(), "the server does not speak TLS") {
			t.Fatalf("err = %v", err)
		}
		if len(clk.Slept()) != 0 || e.count() != 0 {
			t.Fatalf("retried: slept %v", clk.Slept())
		}
	})
	t.Run("certificate", func(t *testing.T) {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake
		srv.StartTLS()
		defer srv.Close()
		e := newEndpoint(t)
		s, clk := testSource(t, e, func(c *Config) { c.TokenURL = srv.URL + "/oauth/token" })
		_, err := s.Token()
		var te *TokenError
		if !errors.As(err, &te) || te.Temporary || !strings.Contains(err.Error(), "certificate does not verify") {
			t.Fatalf("err = %v", err)
		}
		if len(clk.Slept()) != 0 || s.Stats().TokenRequests != 1 {
			t.Fatalf("retried: slept %v", clk.Slept())
		}
	})
}

// TestRefusedIsRetriedAndCounted: a refused connection (a server still
// starting) is retried, and the final error says how often and how long.
func TestRefusedIsRetriedAndCounted(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	e := newEndpoint(t)
	s, clk := testSource(t, e, func(c *Config) { c.TokenURL = "http://" + addr + "/oauth/token"; c.MaxAttempts = 4 })
	s.c.rand = func() float64 { return 1 }
	_, err = s.Token()
	var te *TokenError
	if !errors.As(err, &te) || !te.Temporary || te.Attempts != 4 {
		t.Fatalf("err = %#v", err)
	}
	// 250 ms + 500 ms + 1 s of backoff on the fake clock.
	if te.Elapsed != 1750*time.Millisecond || !strings.Contains(err.Error(), "failed 4 times over 1.75s: ") {
		t.Fatalf("elapsed %v, message %q; slept %v", te.Elapsed, err, clk.Slept())
	}
	if !strings.Contains(err.Error(), "refused") {
		t.Fatalf("message %q does not say why", err)
	}
	if !strings.Contains(te.Hint, "check the host and port") {
		t.Fatalf("hint %q does not say what to check", te.Hint)
	}
}

// TestNotATokenAnswer: a 2xx that is a whole answer but not a token (a
// login page, JSON without access_token) is permanent; one cut short is not.
func TestNotATokenAnswer(t *testing.T) {
	for _, tt := range []struct {
		name, ct, body string
		temporary      bool
	}{
		{"html", "text/html", `<!doctype html><html><body>Log in</body></html>`, false},
		{"json without access_token", "application/json", `{"status":"ok","version":"1.2"}`, false},
		{"bearer without token", "application/json", `{"token_type":"Bearer","expires_in":60}`, false},
		{"cut short", "application/json", `{"access_token":"tok-x","tok`, true},
		{"empty", "application/json", ``, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEndpoint(t)
			s, clk := testSource(t, e, func(c *Config) { c.MaxAttempts = 3 })
			e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
				w.Header().Set("Content-Type", tt.ct)
				w.Write([]byte(tt.body))
				return true
			})
			_, err := s.Token()
			var te *TokenError
			if !errors.As(err, &te) || te.Temporary != tt.temporary {
				t.Fatalf("err = %v, want temporary %v", err, tt.temporary)
			}
			if tt.temporary {
				if e.count() != 3 || te.Attempts != 3 {
					t.Fatalf("%d requests, %d attempts, want 3", e.count(), te.Attempts)
				}
				return
			}
			if e.count() != 1 || len(clk.Slept()) != 0 || !strings.Contains(err.Error(), "not as an OAuth 2.0 token endpoint") {
				t.Fatalf("%d requests, slept %v: %v", e.count(), clk.Slept(), err)
			}
			s.Token()
			if e.count() != 1 {
				t.Fatal("not remembered for ErrorCacheTTL")
			}
		})
	}
}

// TestHints: the endpoint's well-known terse answers say what to check,
// and never the secret.
func TestHints(t *testing.T) {
	const aud = "https://api.example.com/"
	iss := m2mtest.NewServer(
		m2mtest.Client{ID: "good", Secret: testSecret, Audiences: []string{aud}},
		m2mtest.Client{ID: "nogrant", Secret: testSecret, Audiences: []string{aud}, NoClientCredentials: true},
		m2mtest.Client{ID: "noapi", Secret: testSecret},
		m2mtest.Client{ID: "dpop", Secret: testSecret, Audiences: []string{aud}, RequireDPoP: true},
	)
	defer iss.Close()
	for _, tt := range []struct {
		name            string
		cfg             Config
		status          int
		wantInMsg, hint string
	}{
		{"wrong secret", Config{ClientID: "good", ClientSecret: testSecret + "x", Audience: aud}, 401, "access_denied: Unauthorized", "check the client ID, the client secret, and that the application's token endpoint authentication method is client_secret_post: Config.ClientID, Config.ClientSecret and Config.AuthMethod"},
		{"wrong client", Config{ClientID: "nobody", ClientSecret: testSecret, Audience: aud, AuthMethod: ClientSecretBasic}, 401, "Unauthorized", "method is client_secret_basic"},
		{"unknown audience", Config{ClientID: "good", ClientSecret: testSecret, Audience: "https://typo.example.com/"}, 403, "Service not enabled within domain", "the audience is not the identifier of an API in this tenant: check Config.Audience against"},
		{"no grant type", Config{ClientID: "nogrant", ClientSecret: testSecret, Audience: aud}, 403, "unauthorized_client", "enable Client Credentials"},
		{"not authorized for API", Config{ClientID: "noapi", ClientSecret: testSecret, Audience: aud}, 403, "is not authorized to access resource server", "authorize the application for this API"},
		{"no audience", Config{ClientID: "good", ClientSecret: testSecret}, 403, "No audience parameter was provided", "set the audience to the API's identifier: Config.Audience"},
		{"DPoP required, no key", Config{ClientID: "dpop", ClientSecret: testSecret, Audience: aud}, 400, "DPoP proof is required", "give it a DPoP key with Config.DPoPKey"},
		{"not in the organization", Config{ClientID: "good", ClientSecret: testSecret, Audience: aud, Organization: "acme"}, 400, `is not a member of organization "acme"`,
			"the application may not get tokens for this organization: check Config.Organization (the organization's ID, org_..., or its name as the tenant spells it), " +
				"and give the application access for this API in Auth0: Organizations, the organization, Machine-to-Machine Access"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.TokenURL = iss.TokenURL()
			s, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			_, err = s.Token()
			var te *TokenError
			if !errors.As(err, &te) || te.StatusCode != tt.status || te.Temporary {
				t.Fatalf("err = %v", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.wantInMsg) || !strings.Contains(te.Hint, tt.hint) || !strings.Contains(msg, tt.hint) {
				t.Fatalf("message %q, hint %q, want %q and %q", msg, te.Hint, tt.wantInMsg, tt.hint)
			}
			if strings.Contains(msg, testSecret) {
				t.Fatal("the message shows the secret")
			}
		})
	}
	t.Run("certificate refused", func(t *testing.T) {
		// A client that authenticates with its certificate has no secret:
		// the hint says what the server checks of the certificate, and
		// where a server that wants it at an alias takes it.
		m := newMTLSServer(t)
		for _, tt := range []struct {
			method AuthMethod
			hint   string
		}{
			{TLSClientAuth, "check the client ID, that the server trusts the CA that issued the certificate and that its subject (or SAN) is the one registered for the client, and that the application's token endpoint authentication method is tls_client_auth: Config.ClientID, Config.ClientCertFile and Config.AuthMethod"},
			{SelfSignedTLSClientAuth, "check the client ID, that this certificate is the one registered for the client (in its JWKS, as x5c), and that the application's token endpoint authentication method is self_signed_tls_client_auth: Config.ClientID, Config.ClientCertFile and Config.AuthMethod"},
		} {
			// Self-signed, and not registered: refused either way.
			certPEM, keyPEM := (*testCA)(nil).issue(t, "svc", time.Now().Add(-time.Hour), time.Now().Add(time.Hour), false)
			s, _, _ := m.source(t, certPEM, keyPEM, func(c *Config) { c.AuthMethod = tt.method })
			_, err := s.Token()
			var te *TokenError
			if !errors.As(err, &te) || te.Code != "invalid_client" {
				t.Fatalf("err = %v", err)
			}
			if !strings.Contains(te.Hint, tt.hint) || strings.Contains(te.Hint, "secret") || !strings.Contains(te.Hint, "mTLS alias") || !strings.Contains(te.Hint, "Config.MTLSTokenURL") {
				t.Errorf("%v: hint %q, want %q and Config.MTLSTokenURL, and no secret", tt.method, te.Hint, tt.hint)
			}
		}
	})
	t.Run("wrong path", func(t *testing.T) {
		e := newEndpoint(t)
		s, _ := testSource(t, e, nil)
		e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool { http.NotFound(w, r); return true })
		_, err := s.Token()
		if err == nil || !strings.Contains(err.Error(), "404 Not Found (the URL is not a token endpoint") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("401 without an OAuth error", func(t *testing.T) {
		// A domain that points at a protected API rather than a token
		// endpoint: 401 and a bearer challenge, no OAuth error body.
		e := newEndpoint(t)
		s, _ := testSource(t, e, nil)
		e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
			w.Header().Set("WWW-Authenticate", `Bearer realm="api"`)
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return true
		})
		_, err := s.Token()
		if err == nil || !strings.Contains(err.Error(), "401 Unauthorized (a 401 with no OAuth error: the URL may not be a token endpoint") ||
			!strings.Contains(err.Error(), "check Config.TokenURL; Auth0's is https://TENANT/oauth/token") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("names from the environment", func(t *testing.T) {
		// A Config from ConfigFromEnv hears the variables, not Config
		// fields: the variable that was set, of those that set a field.
		f := filepath.Join(t.TempDir(), "secret")
		os.WriteFile(f, []byte(testSecret+"x\n"), 0o600)
		for secretVar, value := range map[string]string{"AUTH0_CLIENT_SECRET": testSecret + "x", "AUTH0_CLIENT_SECRET_FILE": f} {
			env := map[string]string{"M2MTOKEN_TOKEN_URL": iss.TokenURL(), "AUTH0_CLIENT_ID": "good", secretVar: value, "AUTH0_AUDIENCE": aud}
			cfg, err := ConfigFromLookup(lookupIn(env), nil)
			if err != nil {
				t.Fatal(err)
			}
			s, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			_, err = s.Token()
			if want := "client_secret_post: AUTH0_CLIENT_ID, " + secretVar + " and M2MTOKEN_AUTH_METHOD)"; err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("%s: err = %v, want %q", secretVar, err, want)
			}
		}
	})
	t.Run("a pool request's audience", func(t *testing.T) {
		// The default request's audience is Config.Audience; another
		// request's is its own.
		p, err := NewPool(Config{TokenURL: iss.TokenURL(), ClientID: "good", ClientSecret: testSecret, Audience: "https://typo.example.com/"})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		for req, want := range map[*TokenRequest]string{
			{Audience: "https://typo.example.com/"}:                        "check Config.Audience against the API's Identifier",
			{Audience: "https://other.example.com/"}:                       "check TokenRequest.Audience against the API's Identifier",
			{Audience: aud, Organization: "acme"}:                          "check TokenRequest.Organization (the organization's ID",
			{Audience: "https://typo.example.com/", Scopes: []string{"x"}}: "check TokenRequest.Audience against",
		} {
			_, err := p.Token(context.Background(), *req)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%+v: %v, want %q", *req, err, want)
			}
		}
	})
	t.Run("invalid_client", func(t *testing.T) {
		e := newEndpoint(t)
		s, _ := testSource(t, e, nil)
		e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("WWW-Authenticate", `Basic realm="oauth"`)
			w.WriteHeader(401)
			w.Write([]byte(`{"error":"invalid_client"}`))
			return true
		})
		_, err := s.Token()
		if err == nil || !strings.Contains(err.Error(), "invalid_client (check the client ID, the client secret") {
			t.Fatalf("err = %v", err)
		}
	})
}
