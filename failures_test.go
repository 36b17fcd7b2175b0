// Tests of who a token endpoint's error holds for (failures.go): the
// whole pool, one organization's tokens, or one token.

package m2mtoken

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// poolIssuer is an m2mtest issuer with two APIs for one client, scopes
// and two organizations, and a known API the client has no grant for.
func poolIssuer(t *testing.T) (*m2mtest.Server, Config) {
	iss := m2mtest.NewServer(m2mtest.Client{ID: "svc", Secret: testSecret, Audiences: []string{"https://billing/", "https://search/"},
		Scopes: []string{"read", "write"}, Organizations: []string{"org_a", "org_b"}})
	t.Cleanup(iss.Close)
	iss.AddAPI("https://admin/")
	return iss, Config{TokenURL: iss.TokenURL(), ClientID: "svc", ClientSecret: testSecret, Audience: "https://billing/"}
}

// TestPoolClientErrorsHoldForEveryToken: a wrong secret, or a client
// without the client-credentials grant, is learned once; the next token of
// another audience sends nothing.
func TestPoolClientErrorsHoldForEveryToken(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mod    func(*Config)
		status int
	}{
		{"wrong secret", func(c *Config) { c.ClientSecret = "wrong" }, http.StatusUnauthorized},
		{"no client-credentials grant", func(c *Config) { c.ClientID = "nogrant" }, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			iss, cfg := poolIssuer(t)
			iss.AddClient(m2mtest.Client{ID: "nogrant", Secret: testSecret, Audiences: []string{"https://billing/", "https://search/"}, NoClientCredentials: true})
			tc.mod(&cfg)
			p, err := NewPool(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			ctx := context.Background()
			_, err = p.Token(ctx, TokenRequest{Audience: "https://billing/"})
			var te *TokenError
			if !errors.As(err, &te) || te.StatusCode != tc.status {
				t.Fatalf("got %v, want a %d", err, tc.status)
			}
			for _, r := range []TokenRequest{{Audience: "https://search/"}, {Audience: "https://billing/", Organization: "org_a"}} {
				if _, err2 := p.Token(ctx, r); err2 == nil || err2.Error() != err.Error() {
					t.Errorf("%+v: got %v, want the client's error %v", r, err2, err)
				}
			}
			if n := iss.Requests(); n != 1 {
				t.Fatalf("%d token requests, want 1: the client's error holds for every token", n)
			}
		})
	}
}

// TestPoolRequestErrorsHoldForOneToken: an audience without a grant, an
// unknown scope or organization fail that token alone.
func TestPoolRequestErrorsHoldForOneToken(t *testing.T) {
	iss, cfg := poolIssuer(t)
	p, err := NewPool(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	bad := []TokenRequest{
		{Audience: "https://admin/"},                               // known API, no grant
		{Audience: "https://nowhere/"},                             // Service not enabled within domain
		{Audience: "https://billing/", Scopes: []string{"delete"}}, // scope not granted
		{Audience: "https://billing/", Organization: "org_z"},      // not a member
	}
	for _, r := range bad {
		if _, err := p.Token(ctx, r); err == nil {
			t.Fatalf("%+v: got a token", r)
		}
	}
	before := iss.Requests()
	for _, r := range bad {
		if _, err := p.Token(ctx, r); err == nil {
			t.Fatalf("%+v: got a token", r)
		}
	}
	if n := iss.Requests(); n != before {
		t.Errorf("%d more requests: a request's permanent error should be remembered for its token", n-before)
	}
	for _, r := range []TokenRequest{{Audience: "https://billing/"}, {Audience: "https://search/", Scopes: []string{"read"}}, {Audience: "https://billing/", Organization: "org_a"}} {
		tok, err := p.Token(ctx, r)
		if err != nil {
			t.Fatalf("%+v: %v: another request's error stopped it", r, err)
		}
		claims, err := iss.Verify(tok.AccessToken, r.Audience)
		if err != nil {
			t.Fatalf("%+v: %v", r, err)
		}
		if org, _ := claims["org_id"].(string); org != r.Organization {
			t.Errorf("%+v: token for organization %q", r, org)
		}
	}
}

// TestPoolQuotaScopes: an organization's exhausted quota stops that
// organization's tokens alone; the client's stops every token.
func TestPoolQuotaScopes(t *testing.T) {
	iss, cfg := poolIssuer(t)
	iss.SetOrganizationQuota("org_a", m2mtest.Quota{Bucket: "per_hour", Limit: 1})
	p, err := NewPool(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	if _, err := p.Token(ctx, TokenRequest{Audience: "https://billing/", Organization: "org_a"}); err != nil {
		t.Fatal(err)
	}
	_, err = p.Token(ctx, TokenRequest{Audience: "https://search/", Organization: "org_a"})
	var qe *QuotaError
	if !errors.As(err, &qe) || qe.Scope != "organization" {
		t.Fatalf("got %v, want an organization QuotaError", err)
	}
	before := iss.Requests()
	if _, err := p.Token(ctx, TokenRequest{Audience: "https://billing/", Organization: "org_a", Scopes: []string{"read"}}); !errors.As(err, &qe) {
		t.Fatalf("another org_a token: got %v, want the QuotaError", err)
	}
	if n := iss.Requests(); n != before {
		t.Fatalf("%d requests for org_a while its quota is exhausted", n-before)
	}
	for _, r := range []TokenRequest{{Audience: "https://billing/", Organization: "org_b"}, {Audience: "https://search/"}} {
		if _, err := p.Token(ctx, r); err != nil {
			t.Fatalf("%+v: %v: org_a's quota stopped it", r, err)
		}
	}

	iss.SetClientQuota("svc", m2mtest.Quota{Bucket: "per_hour", Limit: 1})
	if _, err := p.Token(ctx, TokenRequest{Audience: "https://billing/", Scopes: []string{"read"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Token(ctx, TokenRequest{Audience: "https://billing/", Scopes: []string{"write"}}); !errors.As(err, &qe) || qe.Scope != "client" {
		t.Fatalf("got %v, want a client QuotaError", err)
	}
	before = iss.Requests()
	for _, r := range []TokenRequest{{Audience: "https://search/", Scopes: []string{"read"}}, {Audience: "https://billing/", Organization: "org_b", Scopes: []string{"read"}}} {
		if _, err := p.Token(ctx, r); !errors.As(err, &qe) || qe.Scope != "client" {
			t.Fatalf("%+v: got %v, want the client QuotaError", r, err)
		}
	}
	if n := iss.Requests(); n != before {
		t.Fatalf("%d requests while the client's quota is exhausted", n-before)
	}
}

// TestPoolDropsLeastRecentlyUsed: beyond MaxTokens the token not used
