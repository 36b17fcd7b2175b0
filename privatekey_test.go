package m2mtoken

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"

	"github.com/m2mtoken/m2mtoken/m2mtest"
)

func rsaKey(t testing.TB, bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func ecKey(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestPrivateKeyJWTValidation(t *testing.T) {
	rk, ek := rsaKey(t, 2048), ecKey(t, elliptic.P256())
	_, edk, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string
	}{
		{"rsa default", func(c *Config) { c.PrivateKey = rk }, ""},
		{"ec default", func(c *Config) { c.PrivateKey = ek }, ""},
		{"ps256", func(c *Config) { c.PrivateKey = rk; c.SigningAlgorithm = "PS256" }, ""},
		{"no key", func(c *Config) { c.AuthMethod = PrivateKeyJWT }, "needs Config.PrivateKey"},
		{"secret and key", func(c *Config) { c.PrivateKey = rk; c.ClientSecret = "s" }, "both set"},
		{"secret with PrivateKeyJWT", func(c *Config) { c.AuthMethod = PrivateKeyJWT; c.PrivateKey = rk; c.ClientSecret = "s" }, "a secret and a key together"},
		{"ed25519", func(c *Config) { c.PrivateKey = edk }, "unsupported key type"},
		{"p384", func(c *Config) { c.PrivateKey = ecKey(t, elliptic.P384()) }, "only P-256"},
		{"small rsa", func(c *Config) { c.PrivateKey = rsaKey(t, 1024) }, "at least 2048"},
		{"es256 with rsa", func(c *Config) { c.PrivateKey = rk; c.SigningAlgorithm = "ES256" }, "does not fit an RSA key"},
		{"rs256 with ec", func(c *Config) { c.PrivateKey = ek; c.SigningAlgorithm = "RS256" }, "does not fit a P-256 key"},
		{"long assertion", func(c *Config) { c.PrivateKey = rk; c.AssertionLifetime = 10 * time.Minute }, "at most 5 minutes"},
		{"bad mtls url", func(c *Config) { c.PrivateKey = rk; c.MTLSTokenURL = "http://mtls.example.com/oauth/token" }, "MTLSTokenURL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Domain: "tenant.auth0.com", ClientID: "id"}
			tt.mod(&cfg)
			s, err := New(cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				s.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestAssertionsVerifyIndependently checks each assertion with go-jose.
func TestAssertionsVerifyIndependently(t *testing.T) {
	for _, tt := range []struct {
		alg string
		key crypto.Signer
	}{{"RS256", rsaKey(t, 2048)}, {"PS256", rsaKey(t, 2048)}, {"ES256", ecKey(t, elliptic.P256())}} {
		t.Run(tt.alg, func(t *testing.T) {
			e := newEndpoint(t)
			s, clk := testSource(t, e, func(c *Config) {
				c.TokenURL = ""
				c.Domain = e.URL // http to loopback is allowed
				c.ClientSecret = ""
				c.PrivateKey = tt.key
				c.KeyID = "key-1"
				c.SigningAlgorithm = tt.alg
				c.MaxAttempts = 2
				c.MinInvalidateInterval = -1
			})
			e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
				if n == 1 {
					w.WriteHeader(503) // the retry must sign a new assertion
					return true
				}
				return false
			})
			for i := 0; i < 20; i++ {
				tok, err := s.Token()
				if err != nil {
					t.Fatal(err)
				}
				s.Invalidate(tok)
			}
			seen := map[string]bool{}
			for i := 0; i < int(e.count()); i++ {
				f := e.form(i)
				if f.Has("client_secret") || f.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" || f.Get("client_id") != "client-1" {
					t.Fatalf("request %d form: %v", i, f)
				}
				parsed, err := josejwt.ParseSigned(f.Get("client_assertion"), []jose.SignatureAlgorithm{jose.SignatureAlgorithm(tt.alg)})
				if err != nil {
					t.Fatal(err)
				}
				if parsed.Headers[0].KeyID != "key-1" {
					t.Errorf("kid %q", parsed.Headers[0].KeyID)
				}
				var cl josejwt.Claims
				if err := parsed.Claims(tt.key.Public(), &cl); err != nil {
					t.Fatalf("signature: %v", err)
				}
				if err := cl.Validate(josejwt.Expected{Issuer: "client-1", Subject: "client-1", AnyAudience: josejwt.Audience{e.URL + "/"}, Time: clk.Now()}); err != nil {
					t.Fatalf("claims: %v", err)
				}
				if life := cl.Expiry.Time().Sub(cl.IssuedAt.Time()); life != time.Minute {
					t.Errorf("assertion lifetime %v", life)
				}
				if seen[cl.ID] || cl.ID == "" {
					t.Fatalf("jti %q repeated or empty", cl.ID)
				}
				seen[cl.ID] = true
			}
			if len(seen) != 21 {
				t.Fatalf("%d assertions, want 21 (20 tokens and one retry)", len(seen))
			}
		})
	}
}

func TestPrivateKeyJWTAgainstIssuer(t *testing.T) {
	key := ecKey(t, elliptic.P256())
	iss := m2mtest.NewServer(m2mtest.Client{ID: "pkjwt", PublicKey: key.Public(), Audiences: []string{"https://api/"}})
	defer iss.Close()
	s, err := New(Config{TokenURL: iss.TokenURL(), AssertionAudience: iss.Issuer(), ClientID: "pkjwt", PrivateKey: key, Audience: "https://api/"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Token(); err != nil {
		t.Fatal(err)
	}
	wrong, _ := New(Config{TokenURL: iss.TokenURL(), AssertionAudience: iss.Issuer(), ClientID: "pkjwt", PrivateKey: ecKey(t, elliptic.P256()), Audience: "https://api/"})
	defer wrong.Close()
	_, err = wrong.Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_client" || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("wrong key: %v", err)
	}
}

func TestParsePrivateKeyPEM(t *testing.T) {
	rk, ek := rsaKey(t, 2048), ecKey(t, elliptic.P256())
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(ek)
	sec1, _ := x509.MarshalECPrivateKey(ek)
	pub, _ := x509.MarshalPKIXPublicKey(rk.Public())
	enc := func(typ string, b []byte, h map[string]string) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b, Headers: h})
	}
	good := map[string][]byte{
		"pkcs1": enc("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk), nil),
		"pkcs8": enc("PRIVATE KEY", pkcs8, nil),
		"sec1":  enc("EC PRIVATE KEY", sec1, nil),
	}
	for name, data := range good {
		if k, err := ParsePrivateKeyPEM(data); err != nil || k == nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	bad := map[string]struct {
		data []byte
		want string
	}{
		"encrypted pkcs8": {enc("ENCRYPTED PRIVATE KEY", []byte{1, 2}, nil), "encrypted"},
		"encrypted pkcs1": {enc("RSA PRIVATE KEY", []byte{1, 2}, map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00"}), "encrypted"},
		"public key":      {enc("PUBLIC KEY", pub, nil), "not a private key"},
		"certificate":     {enc("CERTIFICATE", []byte{1}, nil), "not a private key"},
		"not pem":         {[]byte("hello"), "no PEM block found: want a PEM private key (-----BEGIN PRIVATE KEY-----"},
		"corrupt":         {enc("PRIVATE KEY", []byte{1, 2, 3}, nil), "parsing"},
		"openssh":         {enc("OPENSSH PRIVATE KEY", []byte{1}, nil), "unsupported PEM block"},
	}
	for name, tt := range bad {
		if _, err := ParsePrivateKeyPEM(tt.data); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tt.want)
		}
	}
}

// TestMTLS: the token endpoint requires a client certificate; the source
// presents one through HTTPClient, sending to a separate mTLS token URL.
func TestMTLS(t *testing.T) {
	pool, cert := mtlsCerts(t)

	iss := m2mtest.NewMTLSServer(pool, m2mtest.Client{ID: "svc", Secret: "pw", Audiences: []string{"https://api/"}})
	defer iss.Close()
	roots := x509.NewCertPool()
	roots.AddCert(iss.Certificate())
	withCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots,
		Certificates: []tls.Certificate{cert}}}}
	withoutCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}

	cfg := Config{Domain: "tenant.example.com", MTLSTokenURL: iss.TokenURL(), ClientID: "svc", ClientSecret: "pw", Audience: "https://api/", HTTPClient: withCert}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Token(); err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}
	cfg.HTTPClient, cfg.MaxAttempts = withoutCert, 1
	s2, _ := New(cfg)
	defer s2.Close()
	if _, err := s2.Token(); err == nil {
		t.Fatal("token endpoint answered a client without a certificate")
	}
	if iss.TokensIssued("svc") != 1 {
		t.Fatalf("%d issued", iss.TokensIssued("svc"))
	}
}
