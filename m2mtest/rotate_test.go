package m2mtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/jwt"
)

// fakeNow is a clock a test moves by hand, for a Server's and a
// Platform's SetClock.
type fakeNow struct{ t time.Time }

func (f *fakeNow) now() time.Time          { return f.t }
func (f *fakeNow) advance(d time.Duration) { f.t = f.t.Add(d) }
func newFakeNow() *fakeNow                 { return &fakeNow{time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }
func secretForm(secret string) url.Values  { f := good(); f.Set("client_secret", secret); return f }

// TestRotateSecret: a rotation in both orders, by the server's clock: the
// previous secret refused at once or after OldFor, the new one accepted at
// once or after NewAfter; a refused secret is answered as any wrong one.
func TestRotateSecret(t *testing.T) {
	type at struct {
		after    time.Duration // since the rotation
		old, new bool          // accepted
	}
	for _, tt := range []struct {
		name   string
		r      Rotation
		checks []at
	}{
		{"at once", Rotation{}, []at{{0, false, true}, {time.Hour, false, true}}},
		{"grace for the old", Rotation{OldFor: 10 * time.Second}, []at{{0, true, true}, {9 * time.Second, true, true}, {10 * time.Second, false, true}}},
		{"new delayed, as Auth0", Rotation{NewAfter: 30 * time.Second}, []at{{0, false, false}, {29 * time.Second, false, false}, {30 * time.Second, false, true}}},
		{"handed over", Rotation{OldFor: 30 * time.Second, NewAfter: 30 * time.Second}, []at{{0, true, false}, {29 * time.Second, true, false}, {30 * time.Second, false, true}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := testServer(t)
			clk := newFakeNow()
			s.SetClock(clk.now)
			c := s.Client()
			if err := s.RotateSecret("svc", "pw-2", tt.r); err != nil {
				t.Fatal(err)
			}
			var elapsed time.Duration
			for _, ch := range tt.checks {
				clk.advance(ch.after - elapsed)
				elapsed = ch.after
				for secret, want := range map[string]bool{"pw": ch.old, "pw-2": ch.new} {
					a := post(t, c, s.TokenURL(), secretForm(secret))
					if got := a.status == 200; got != want {
						t.Errorf("%v after: %s accepted %v, want %v (%d %v)", ch.after, secret, got, want, a.status, a.body)
					}
					if a.status != 200 && (a.status != 401 || a.body["error"] != "access_denied" || a.body["error_description"] != "Unauthorized") {
						t.Errorf("%v after: %s refused with %d %v, want Auth0's 401 access_denied Unauthorized", ch.after, secret, a.status, a.body)
					}
					basic := url.Values{"grant_type": {"client_credentials"}, "audience": {aud}}
					if got := post(t, c, s.TokenURL(), basic, "svc", secret).status == 200; got != want {
						t.Errorf("%v after: %s in Basic accepted %v, want %v", ch.after, secret, got, want)
					}
				}
			}
		})
	}
}

// TestRotateSecretAgain: a rotation before the previous one's new secret
// started ends that one too; rotations pile up no secrets.
func TestRotateSecretAgain(t *testing.T) {
	s := testServer(t)
	clk := newFakeNow()
	s.SetClock(clk.now)
	c := s.Client()
	if err := s.RotateSecret("svc", "pw-2", Rotation{OldFor: time.Minute, NewAfter: time.Minute}); err != nil {
		t.Fatal(err)
	}
	clk.advance(10 * time.Second)
	if err := s.RotateSecret("svc", "pw-3", Rotation{OldFor: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	check := func(when string, want map[string]bool) {
		t.Helper()
		for secret, ok := range want {
			if got := post(t, c, s.TokenURL(), secretForm(secret)).status == 200; got != ok {
				t.Errorf("%s: %s accepted %v, want %v", when, secret, got, ok)
			}
		}
	}
	check("in the second's grace", map[string]bool{"pw": true, "pw-2": false, "pw-3": true})
	clk.advance(time.Hour)
	check("an hour later", map[string]bool{"pw": false, "pw-2": false, "pw-3": true})
	for range 100 {
		s.RotateSecret("svc", "pw-3", Rotation{})
	}
	if n := len(s.clients["svc"].secrets); n != 1 {
		t.Errorf("%d secret windows kept after 100 rotations", n)
	}
	for _, tt := range []struct {
		id, secret string
		r          Rotation
		want       string
	}{
		{"ghost", "x", Rotation{}, `no client "ghost"`},
		{"svc", "", Rotation{}, "the new secret is empty"},
		{"svc", "x", Rotation{OldFor: -time.Second}, "cannot be negative"},
	} {
		if err := s.RotateSecret(tt.id, tt.secret, tt.r); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("RotateSecret(%q, %q, %+v) = %v, want %q", tt.id, tt.secret, tt.r, err, tt.want)
		}
	}
}

// TestRotateKey: Auth0's Private Key JWT rotation: at most two
// credentials; add the new one, both work, remove the old one; a kid
// selects the credential, and none tries each.
func TestRotateKey(t *testing.T) {
	s := NewServer(Client{ID: "pk", Audiences: []string{aud}})
	defer s.Close()
	c := s.Client()
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	k3, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	assert := func(key crypto.Signer, alg, kid string) url.Values {
		now := time.Now()
		tok, err := jwt.Sign(key, alg, kid, map[string]any{"iss": "pk", "sub": "pk", "aud": s.Issuer(), "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": randomID()})
		if err != nil {
			t.Fatal(err)
		}
		return url.Values{"grant_type": {"client_credentials"}, "client_id": {"pk"}, "audience": {aud},
			"client_assertion_type": {jwtBearer}, "client_assertion": {tok}}
	}
	try := func(step string, form url.Values, want string) {
		t.Helper()
		a := post(t, c, s.TokenURL(), form)
		if want == "" {
			if a.status != 200 {
				t.Errorf("%s: %d %v, want 200", step, a.status, a.body)
			}
			return
		}
		desc, _ := a.body["error_description"].(string)
		if a.status != 401 || a.body["error"] != "invalid_client" || !strings.Contains(desc, want) {
			t.Errorf("%s: %d %v, want 401 invalid_client %q", step, a.status, a.body, want)
		}
	}
	try("no key yet", assert(k1, "ES256", ""), "no registered public key")
	if err := s.AddKey("pk", Key{ID: "k1", PublicKey: k1.Public()}); err != nil {
		t.Fatal(err)
	}
	try("k1", assert(k1, "ES256", "k1"), "")
	try("k1 without kid", assert(k1, "ES256", ""), "")
	try("k2 before it is added", assert(k2, "RS256", ""), `algorithm "RS256" does not fit the key`)

	// Add: both work, each by its kid or with none.
	if err := s.AddKey("pk", Key{ID: "k2", PublicKey: k2.Public()}); err != nil {
		t.Fatal(err)
	}
	try("k1 beside k2", assert(k1, "ES256", "k1"), "")
	try("k2", assert(k2, "RS256", "k2"), "")
	try("k2 (PS256) without kid", assert(k2, "PS256", ""), "")
	try("k1 under k2's kid", assert(k1, "ES256", "k2"), `algorithm "ES256" does not fit the key`)
	try("an unknown kid", assert(k1, "ES256", "k9"), `kid "k9" names none of the client's credentials`)
	try("a third key", assert(k3, "ES256", ""), "does not verify with any of the client's credentials (2 keys)")
	for _, tt := range []struct {
		k    Key
		want string
	}{
		{Key{ID: "k3", PublicKey: k3.Public()}, "already holds 2 credentials, Auth0's limit"},
		{Key{ID: "k9", PublicKey: k1.Public()}, "already holds this key"},
		{Key{ID: "k1", PublicKey: k3.Public()}, `already holds a key with kid "k1"`},
		{Key{PublicKey: "not a key"}, "unsupported key type string"},
		{Key{}, "no PublicKey"},
	} {
		if err := s.AddKey("pk", tt.k); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("AddKey(%+v) = %v, want %q", tt.k, err, tt.want)
		}
	}

	// Remove the old one: it is refused from then on.
	if err := s.RemoveKey("pk", k1.Public()); err != nil {
		t.Fatal(err)
	}
	try("k1 after removal", assert(k1, "ES256", "k1"), `kid "k1" names none`)
	try("k1 after removal, no kid", assert(k1, "ES256", ""), `algorithm "ES256" does not fit the key`)

	try("k2 after k1's removal", assert(k2, "RS256", "k2"), "")
	if err := s.RemoveKey("pk", k1.Public()); err == nil {
		t.Error("a removed key was removed again")
	}
	if ks := s.Keys("pk"); len(ks) != 1 || ks[0].ID != "k2" {
		t.Errorf("Keys = %+v", ks)
	}
	if err := s.AddKey("pk", Key{ID: "k3", PublicKey: k3.Public()}); err != nil {
		t.Errorf("a second key after a removal: %v", err)
	}
	try("k3", assert(k3, "ES256", "k3"), "")
	try("k1 under k3's kid", assert(k1, "ES256", "k3"), "signature does not verify")

	// Client.PublicKey has no ID: an assertion with any kid is checked with it.
	legacy := NewServer(Client{ID: "pk", PublicKey: k1.Public(), Audiences: []string{aud}})
	defer legacy.Close()
	s = legacy
	try("Client.PublicKey, any kid", assert(k1, "ES256", "kid-123"), "")
}
