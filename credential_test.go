package m2mtoken

// Tests of credentials that change while the source runs (credential.go):
// files followed the three ways they change, a refusal that ends with
// the file's change, the previous credential after a rotation, client
// assertions from a platform, and the cache key of an identity.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/clock"
	"github.com/m2mtoken/m2mtoken/internal/follow/followtest"
	"github.com/m2mtoken/m2mtoken/m2mtest"
	"golang.org/x/oauth2"
)

const credAudience = "https://api.example.com/"

// credIssuer is a local issuer with one client, svc, whose secret is
// secret-1.
func credIssuer(t testing.TB) *m2mtest.Server {
	t.Helper()
	iss := m2mtest.NewServer(m2mtest.Client{ID: "svc", Secret: "secret-1", Audiences: []string{credAudience}})
	t.Cleanup(iss.Close)
	return iss
}

// credSource is a source of cfg (to iss, for svc and credAudience) on a
// fake clock, with its log.
func credSource(t testing.TB, iss *m2mtest.Server, mod func(*Config)) (*TokenSource, *clock.Fake, *bytes.Buffer) {
	t.Helper()
	var log bytes.Buffer
	cfg := Config{TokenURL: iss.TokenURL(), ClientID: "svc", Audience: credAudience, Logger: slog.New(slog.NewTextHandler(&log, nil))}
	mod(&cfg)
	clk := clock.NewFake(time.Now())
	s, err := newSource(cfg, clk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, clk, &log
}

// TestSecretFileFollowed: a secret rotated at the issuer and then in its
// file, whichever way the file changes, is sent by the next token
// request; no restart, no other request.
func TestSecretFileFollowed(t *testing.T) {
	for _, way := range followtest.Ways {
		t.Run(way, func(t *testing.T) {
			iss := credIssuer(t)
			f := followtest.New(t, way, "client-secret", "secret-1\n")
			s, _, log := credSource(t, iss, func(c *Config) { c.ClientSecretFile = f.Path })
			tok1, err := s.Token()
			if err != nil {
				t.Fatal(err)
			}
			if err := iss.RotateSecret("svc", "secret-2", m2mtest.Rotation{}); err != nil {
				t.Fatal(err)
			}
			f.Change("secret-2\n")
			s.Invalidate(tok1)
			tok2, err := s.Token()
			if err != nil {
				t.Fatalf("after the rotation: %v", err)
			}
			if tok2.AccessToken == tok1.AccessToken || s.Stats().TokenRequests != 2 {
				t.Errorf("%d token requests, new token %v; want 2, a new token", s.Stats().TokenRequests, tok2.AccessToken != tok1.AccessToken)
			}
			if strings.Contains(log.String(), "secret-") {
				t.Errorf("the log shows a secret:\n%s", log)
			}
		})
	}
}

// TestRefusalEndsWhenTheFileChanges: a refused secret is remembered (no
// second request), and the file's change ends the refusal at once, not
// after ErrorCacheTTL.
func TestRefusalEndsWhenTheFileChanges(t *testing.T) {
	iss := credIssuer(t)
	f := followtest.New(t, "kubernetes", "client-secret", "wrong-secret\n")
	s, clk, _ := credSource(t, iss, func(c *Config) { c.ClientSecretFile = f.Path; c.ErrorCacheTTL = time.Hour })
	_, err := s.Token()
	var te *TokenError
	if !errors.As(err, &te) || te.StatusCode != 401 {
		t.Fatalf("err %v, want the endpoint's 401", err)
	}
	if !strings.Contains(te.Hint, "ClientSecretFile") {
		t.Errorf("hint %q does not name the file's field", te.Hint)
	}
	clk.Advance(credentialLook)
	if _, err := s.Token(); err == nil || s.Stats().TokenRequests != 1 {
		t.Fatalf("asked again while the file is unchanged: %d requests, err %v", s.Stats().TokenRequests, err)
	}
	f.Change("secret-1\n")
	clk.Advance(credentialLook)
	if _, err := s.Token(); err != nil {
		t.Fatalf("the file changed, and the refusal still holds: %v", err)
	}
	if n := s.Stats().TokenRequests; n != 2 {
		t.Errorf("%d token requests, want 2", n)
	}
}

// rotation is a source following a secret file, and its issuer, whose
// clock is now.
type rotation struct {
	s     *TokenSource
	clk   *clock.Fake
	log   *bytes.Buffer
	f     *followtest.File
	now   atomic.Pointer[time.Time]
	start time.Time
	tok   *oauth2.Token
}

// changeBeforeTaken: a source following the secret file (secret-1) gets
// a token; the issuer takes secret-2 a minute from now on its clock and
// keeps secret-1 for two; the file changes to next before that, and the
// source gets a token again (r.tok), with the previous secret.
func changeBeforeTaken(t *testing.T, next string, mod func(*Config)) *rotation {
	t.Helper()
	iss := credIssuer(t)
	r := &rotation{start: time.Now()}
	r.now.Store(&r.start)
	iss.SetClock(func() time.Time { return *r.now.Load() })
	r.f = followtest.New(t, "rename", "client-secret", "secret-1\n")
	r.s, r.clk, r.log = credSource(t, iss, func(c *Config) {
		c.ClientSecretFile = r.f.Path
		if mod != nil {
			mod(c)
		}
	})
	tok1, err := r.s.Token()
	if err != nil {
		t.Fatal(err)
	}
	if err := iss.RotateSecret("svc", "secret-2", m2mtest.Rotation{OldFor: 2 * time.Minute, NewAfter: time.Minute}); err != nil {
		t.Fatal(err)
	}
	r.f.Change(next)
	r.s.Invalidate(tok1)
	if r.tok, err = r.s.Token(); err != nil {
		t.Fatalf("the previous secret still works: %v", err)
	}
	return r
}

// TestNewSecretRefusedPreviousUsed: the file changes before the issuer
// takes the new secret (Auth0: up to thirty seconds); the refused new
// secret is asked again at once with the previous one, and the next
// request after the issuer takes it ends on the new one.
func TestNewSecretRefusedPreviousUsed(t *testing.T) {
	r := changeBeforeTaken(t, "secret-2\n", nil)
	s, log, tok2 := r.s, r.log, r.tok
	if n := s.Stats().TokenRequests; n != 3 {
		t.Errorf("%d token requests, want 3 (the first, the new secret refused, the previous one)", n)
	}
	if !strings.Contains(log.String(), "the one before it was accepted") {
		t.Errorf("no warning of the fallback:\n%s", log)
	}
	later := r.start.Add(90 * time.Second)
	r.now.Store(&later)
	r.clk.Advance(s.c.cfg.MinInvalidateInterval)
	s.Invalidate(tok2)
	if _, err := s.Token(); err != nil {
		t.Fatal(err)
	}
	if n := s.Stats().TokenRequests; n != 4 {
		t.Errorf("%d token requests, want 4: the new secret, taken by now", n)
	}
	if s.c.cred.previous(s.c.cred.last()) != nil {
		t.Error("the previous secret is kept after the new one was accepted")
	}
}

// TestRotationNotTakenUpYetIsRetried: the issuer refuses the old secret at
// once and takes the new one only after a while; for a minute after the
// file changed, the refusal of both is asked again with backoff rather
// than remembered, and the fetch ends with a token.
func TestRotationNotTakenUpYetIsRetried(t *testing.T) {
	iss := credIssuer(t)
	f := followtest.New(t, "in place", "client-secret", "secret-1\n")
	cfg := Config{TokenURL: iss.TokenURL(), ClientID: "svc", Audience: credAudience, ClientSecretFile: f.Path, MinBackoff: 50 * time.Millisecond}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tok1, err := s.Token()
	if err != nil {
		t.Fatal(err)
	}
	if err := iss.RotateSecret("svc", "secret-2", m2mtest.Rotation{NewAfter: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	f.Change("secret-2\n")
	s.Invalidate(tok1)
	if _, err := s.Token(); err != nil {
		t.Fatalf("the new secret is taken 300 ms after the rotation, and the fetch gave up: %v", err)
	}
}

// TestFileTroubleKeepsTheLastGoodSecret: a secret file that vanishes,
// turns empty or holds only a line break is not a refusal: the last good
// secret goes on, with a warning that names the file.
func TestFileTroubleKeepsTheLastGoodSecret(t *testing.T) {
	for _, trouble := range []string{"vanished", "empty", "only a line break"} {
		t.Run(trouble, func(t *testing.T) {
			iss := credIssuer(t)
			f := followtest.New(t, "rename", "client-secret", "secret-1\n")
			s, clk, log := credSource(t, iss, func(c *Config) { c.ClientSecretFile = f.Path })
			tok1, err := s.Token()
			if err != nil {
				t.Fatal(err)
			}
			switch trouble {
			case "vanished":
				if err := os.Remove(f.Path); err != nil {
					t.Fatal(err)
				}
			case "empty":
				followtest.RewriteInPlace(t, f.Path, "")
			default:
				followtest.RewriteInPlace(t, f.Path, "\n")
			}
			clk.Advance(time.Minute)
			s.Invalidate(tok1)
			if _, err := s.Token(); err != nil {
				t.Fatalf("the last good secret was not used: %v", err)
			}
			if !strings.Contains(log.String(), "cannot be read; the last good one is used") || !strings.Contains(log.String(), f.Path) {
				t.Errorf("no warning naming the file:\n%s", log)
			}
		})
	}
}

// TestKeyFileFollowed: a Private Key JWT key rotated at the issuer (the
// new key added, the old removed) and then in its file is used by the next
// token request; the key ID set for the first key is not sent with the
// new one, and a warning says so.
func TestKeyFileFollowed(t *testing.T) {
	k1, k2 := ecKey(t, elliptic.P256()), ecKey(t, elliptic.P256())
	iss := m2mtest.NewServer(m2mtest.Client{ID: "svc", Audiences: []string{credAudience}})
	t.Cleanup(iss.Close)
	if err := iss.AddKey("svc", m2mtest.Key{ID: "kid-1", PublicKey: k1.Public()}); err != nil {
		t.Fatal(err)
	}
	f := followtest.New(t, "kubernetes", "key.pem", pemKey(t, k1))
	s, _, log := credSource(t, iss, func(c *Config) { c.PrivateKeyFile = f.Path; c.KeyID = "kid-1" })
	tok1, err := s.Token()
	if err != nil {
		t.Fatal(err)
	}
	if err := iss.AddKey("svc", m2mtest.Key{PublicKey: k2.Public()}); err != nil {
		t.Fatal(err)
	}
	if err := iss.RemoveKey("svc", k1.Public()); err != nil {
		t.Fatal(err)
	}
	f.Change(pemKey(t, k2))
	s.Invalidate(tok1)
	if _, err := s.Token(); err != nil {
		t.Fatalf("after the key's rotation: %v", err)
	}
	if !strings.Contains(log.String(), "assertions now carry no key ID") {
		t.Errorf("no warning about the key ID:\n%s", log)
	}
}

// TestAssertionFile: a platform's token in a file is the client
// assertion; a new one from the same identity is read for the next
// token request and keeps the cache key; an expired one is not sent.
func TestAssertionFile(t *testing.T) {
	iss := credIssuer(t)
	p := m2mtest.NewPlatform("https://kubernetes.default.svc")
	if err := iss.Trust("svc", p.Trust("system:serviceaccount:prod:billing")); err != nil {
		t.Fatal(err)
	}
	a1, err := p.Token("system:serviceaccount:prod:billing", m2mtest.DefaultAssertionAudience, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f := followtest.New(t, "kubernetes", "token", a1)
	s, clk, log := credSource(t, iss, func(c *Config) { c.ClientAssertionFile = f.Path; c.Cache = NewMemoryCache() })
	if s.c.cfg.AuthMethod != ClientAssertion {
		t.Fatalf("AuthMethod %v, want client_assertion", s.c.cfg.AuthMethod)
	}
	key1 := s.CacheKey()
	tok1, err := s.Token()
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := p.Token("system:serviceaccount:prod:billing", m2mtest.DefaultAssertionAudience, time.Hour)
	f.Change(a2)
	clk.Advance(time.Minute)
	s.Invalidate(tok1)
	if _, err := s.Token(); err != nil {
		t.Fatal(err)
	}
	if s.CacheKey() != key1 {
		t.Error("a new assertion for the same identity changed the cache key")
	}
	if strings.Contains(log.String(), a1) || strings.Contains(log.String(), a2) {
		t.Error("the log shows an assertion")
	}

	// The platform stops writing: the assertion runs out, and is not sent.
	sent := iss.Requests()
	clk.Advance(2 * time.Hour)
	s.Invalidate(s.cur.Load().tok)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = s.TokenContext(ctx)
	if err == nil || !strings.Contains(err.Error(), "is the process that writes it running?") || !strings.Contains(err.Error(), f.Path) {
		t.Fatalf("err %v, want the expired assertion named, with its file", err)
	}
	if !strings.HasPrefix(err.Error(), "m2mtoken: no token request sent to ") || strings.Contains(err.Error(), "failed") {
		t.Errorf("err %v, want it to say that no request was sent", err)
	}
	if n := strings.Count(log.String(), "no token request is sent until a new client assertion is read"); n != 1 {
		t.Errorf("the expired assertion was warned about %d times, want once:\n%s", n, log.String())
	}
	if iss.Requests() != sent {
		t.Errorf("%d requests sent with an expired assertion", iss.Requests()-sent)
	}
}

// TestAssertionIdentityShared: two sources that read different assertions
// for one identity (the same issuer and subject) share one token through
// a cache; another subject does not.
func TestAssertionIdentityShared(t *testing.T) {
	iss := credIssuer(t)
	p := m2mtest.NewPlatform("spiffe://example.org")
	for _, sub := range []string{"spiffe://example.org/billing", "spiffe://example.org/search"} {
		if err := iss.Trust("svc", p.Trust(sub)); err != nil {
			t.Fatal(err)
		}
	}
	cache := NewMemoryCache()
	src := func(sub string) *TokenSource {
		a, err := p.Token(sub, m2mtest.DefaultAssertionAudience, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		f := followtest.New(t, "rename", "svid", a)
		s, _, _ := credSource(t, iss, func(c *Config) { c.ClientAssertionFile = f.Path; c.ClientAssertionType = "jwt-spiffe"; c.Cache = cache })
		return s
	}
	a, b, other := src("spiffe://example.org/billing"), src("spiffe://example.org/billing"), src("spiffe://example.org/search")
	for _, s := range []*TokenSource{a, b, other} {
		if _, err := s.Token(); err != nil {
			t.Fatal(err)
		}
	}
	if n := a.Stats().TokenRequests + b.Stats().TokenRequests; n != 1 || b.Stats().CacheHits != 1 {
		t.Errorf("one identity: %d token requests, %d cache hits; want 1 and 1", n, b.Stats().CacheHits)
	}
	if other.CacheKey() == a.CacheKey() || other.Stats().TokenRequests != 1 {
		t.Error("another subject shares the token")
	}
}

// TestGetClientAssertion: the function is called for each token request;
// its error is retried as a network error is, and nothing is sent until
// it gives an assertion.
func TestGetClientAssertion(t *testing.T) {
	iss := credIssuer(t)
	p := m2mtest.NewPlatform("https://token.actions.githubusercontent.com")
	if err := iss.Trust("svc", p.Trust("repo:example/app:ref:refs/heads/main")); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	get := func(ctx context.Context) (string, error) {
		if calls.Add(1) == 1 {
			return "", errors.New("metadata server unreachable")
		}
		return p.Token("repo:example/app:ref:refs/heads/main", m2mtest.DefaultAssertionAudience, 5*time.Minute)
	}
	s, _, _ := credSource(t, iss, func(c *Config) { c.GetClientAssertion = get })
	if _, err := s.Token(); err != nil {
		t.Fatalf("the function's error was not retried: %v", err)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("the function was called %d times, want 2", n)
	}
	if n := s.Stats().TokenRequests; n != 1 {
		t.Errorf("%d token requests, want 1: nothing is sent without an assertion", n)
	}
}

// TestCredentialSettings: one credential at a time, and the assertion's
// type only with an assertion.
func TestCredentialSettings(t *testing.T) {
	for _, tt := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"secret and its file", func(c *Config) { c.ClientSecret = "s"; c.ClientSecretFile = "f" }, "Config.ClientSecret and Config.ClientSecretFile are both set"},
		{"file and assertion", func(c *Config) { c.ClientSecretFile = "f"; c.ClientAssertionFile = "a" }, "Config.ClientSecretFile and Config.ClientAssertionFile are both set"},
		{"type without assertion", func(c *Config) { c.ClientSecret = "s"; c.ClientAssertionType = "jwt-spiffe" }, "Config.ClientAssertionType is set without Config.ClientAssertionFile"},
		{"bad type", func(c *Config) { c.ClientAssertionFile = "a"; c.ClientAssertionType = "spiffe" }, `Config.ClientAssertionType "spiffe": use jwt-bearer`},
		{"typo in the URN", func(c *Config) {
			c.ClientAssertionFile = "a"
			c.ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-spifee"
		}, `Config.ClientAssertionType "urn:ietf:params:oauth:client-assertion-type:jwt-spifee": did you mean "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe"?`},
		{"missing file", func(c *Config) { c.ClientSecretFile = "/nonexistent/secret" }, "Config.ClientSecretFile: /nonexistent/secret"},
		{"key method with a secret file", func(c *Config) { c.ClientSecretFile = "f"; c.AuthMethod = PrivateKeyJWT }, "a secret and a key together are refused"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{TokenURL: "https://tenant.example.com/oauth/token", ClientID: "svc"}
			tt.mod(&cfg)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
}

func pemKey(t testing.TB, k *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// TestPreviousIsTheLastAccepted: the file changes twice before the server
// takes the new secret (a template rendered twice, a value fixed after a
// mistake): the credential to fall back on stays the one the server last
// accepted, not the one in between it never accepted.
func TestPreviousIsTheLastAccepted(t *testing.T) {
	r := changeBeforeTaken(t, "secret-2-mistyped\n", func(c *Config) { c.MaxAttempts = 2 })
	r.f.Change("secret-2\n")
	r.clk.Advance(r.s.c.cfg.MinInvalidateInterval)
	r.s.Invalidate(r.tok)
	if _, err := r.s.Token(); err != nil {
		t.Fatalf("secret-1, the last secret the issuer accepted, still works, but the fetch failed: %v", err)
	}
}
