package m2mtoken

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// TestWrongSecretMissesTheCache: a token cached for the right secret is
// not handed to a source with a wrong one, which gets the endpoint's 401
// at once; sources with the same secret share one token; nothing stored
// holds the secret.
func TestWrongSecretMissesTheCache(t *testing.T) {
	const aud = "https://api.example.com/"
	iss := m2mtest.NewServer(m2mtest.Client{ID: "svc", Secret: testSecret, Audiences: []string{aud}})
	defer iss.Close()
	dir := t.TempDir()
	newSrc := func(secret string) *TokenSource {
		s, err := New(Config{TokenURL: iss.TokenURL(), ClientID: "svc", ClientSecret: secret, Audience: aud, Cache: NewFileCache(dir)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	right := newSrc(testSecret)
	tok, err := right.Token()
	if err != nil {
		t.Fatal(err)
	}
	fleet := newSrc(testSecret)
	if fleet.CacheKey() != right.CacheKey() {
		t.Fatal("two sources with the same credential have different keys")
	}
	if tok2, err := fleet.Token(); err != nil || tok2.AccessToken != tok.AccessToken || iss.TokensIssued("svc") != 1 {
		t.Fatalf("the fleet did not share the token: %v, %d issued", err, iss.TokensIssued("svc"))
	}
	wrong := newSrc(testSecret + "-typo")
	if wrong.CacheKey() == right.CacheKey() {
		t.Fatal("a wrong secret has the right secret's key")
	}
	_, err = wrong.Token()
	var te *TokenError
	if !errors.As(err, &te) || te.StatusCode != 401 {
		t.Fatalf("wrong secret: %v, want the endpoint's 401", err)
	}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			if bytes.Contains(b, []byte(testSecret)) || strings.Contains(p, testSecret) {
				t.Errorf("%s holds the secret", p)
			}
		}
		return nil
	})
}

// TestCredentialKey: the key changes with the secret, the private key and
// its ID, not with anything else; a source without a shared cache pays
// for no derivation.
func TestCredentialKey(t *testing.T) {
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cache := NewMemoryCache()
	key := func(mod func(*Config)) string {
		c := Config{Domain: "tenant.eu.auth0.com", ClientID: "id", ClientSecret: testSecret, Audience: "a", Cache: cache}
		mod(&c)
		s, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		return s.CacheKey()
	}
	secret := key(func(*Config) {})
	if secret != key(func(*Config) {}) {
		t.Fatal("the same secret gave two keys")
	}
	withKey := func(k *ecdsa.PrivateKey, kid string) func(*Config) {
		return func(c *Config) { c.ClientSecret, c.PrivateKey, c.KeyID = "", k, kid }
	}
	pk := key(withKey(k1, "kid-1"))
	if pk != key(withKey(k1, "kid-1")) {
		t.Fatal("the same private key gave two keys")
	}
	seen := map[string]string{"secret": secret, "key": pk}
	for name, k := range map[string]string{
		"other secret":       key(func(c *Config) { c.ClientSecret += "x" }),
		"other private key":  key(withKey(k2, "kid-1")),
		"other key id":       key(withKey(k1, "kid-2")),
		"no cache":           key(func(c *Config) { c.Cache = nil }),
		"no cache, other pw": key(func(c *Config) { c.Cache = nil; c.ClientSecret += "x" }),
	} {
		for other, v := range seen {
			if k == v && !(strings.HasPrefix(name, "no cache") && strings.HasPrefix(other, "no cache")) {
				t.Errorf("%s has the key of %s", name, other)
			}
		}
		seen[name] = k
	}
	if seen["no cache"] != seen["no cache, other pw"] {
		t.Error("a source without a shared cache derived a credential key")
	}
	if strings.Contains(secret, testSecret) {
		t.Error("the key shows the secret")
	}
}

func TestCacheKey(t *testing.T) {
	base := func() string {
		return cacheKey("https://t/oauth/token", "id", "aud", []string{"b", "a"}, "org", url.Values{"resource": {"r"}}, ClientSecretPost)
	}
	if base() != cacheKey("https://t/oauth/token", "id", "aud", []string{"a", "b"}, "org", url.Values{"resource": {"r"}}, ClientSecretPost) {
		t.Error("scope order changed the key")
	}
	others := []string{
		cacheKey("https://u/oauth/token", "id", "aud", []string{"a", "b"}, "org", url.Values{"resource": {"r"}}, ClientSecretPost),
		cacheKey("https://t/oauth/token", "id2", "aud", []string{"a", "b"}, "org", url.Values{"resource": {"r"}}, ClientSecretPost),
		cacheKey("https://t/oauth/token", "id", "aud2", []string{"a", "b"}, "org", url.Values{"resource": {"r"}}, ClientSecretPost),
		cacheKey("https://t/oauth/token", "id", "aud", []string{"a"}, "org", url.Values{"resource": {"r"}}, ClientSecretPost),
		cacheKey("https://t/oauth/token", "id", "aud", []string{"a", "b"}, "", url.Values{"resource": {"r"}}, ClientSecretPost),
		cacheKey("https://t/oauth/token", "id", "aud", []string{"a", "b"}, "org", nil, ClientSecretPost),
		cacheKey("https://t/oauth/token", "id", "aud", []string{"a", "b"}, "org", url.Values{"resource": {"r"}}, ClientSecretBasic),
		// Field boundaries matter: "id"+"aud" is not "ida"+"ud".
		cacheKey("https://t/oauth/token", "ida", "ud", []string{"a", "b"}, "org", url.Values{"resource": {"r"}}, ClientSecretPost),
	}
	for i, k := range others {
		if k == base() {
			t.Errorf("variant %d has the same key", i)
		}
		if strings.Contains(k, "aud") || strings.Contains(k, "id") {
			t.Errorf("key %q reveals its parts", k)
		}
	}
}

// TestCacheKeyIsStable pins two keys: a key that changes between versions
// makes every holder of a shared cache fetch a new token once after an
// upgrade, so a change must be deliberate (and said in the CHANGELOG).
func TestCacheKeyIsStable(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{TokenURL: "https://t.example/oauth/token", ClientID: "id", ClientSecret: "s3cret", Audience: "https://api/", Scopes: []string{"b", "a"}, Organization: "org_1"},
			"m2mtoken-38f69fe6dbcc16b18ca332435afa9615"},
		{Config{TokenURL: "https://t.example/oauth/token", ClientID: "id", ClientSecret: "s3cret", Audience: "https://api/", Cache: NewMemoryCache()},
			"m2mtoken-2cbcd7f3d69f75bd497fded68ae7610a"},
	} {
		s, err := New(c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.CacheKey(); got != c.want {
			t.Errorf("%v: key %s, want %s", s, got, c.want)
		}
		s.Close()
	}
}

// BenchmarkCredentialID is the derivation a source with Config.Cache pays
// once per process and credential, and a guesser of the secret behind a
// cache key pays per guess: a new secret each time, so that the process's
// memory of its derivations does not answer.
func BenchmarkCredentialID(b *testing.B) {
	for i := 0; b.Loop(); i++ {
		secretID("https://tenant.eu.auth0.com/oauth/token", "svc", fmt.Sprint("secret-", i))
	}
}
