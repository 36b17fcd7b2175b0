package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

const audience = "https://quickstarts/api"

func TestProtectedAPI(t *testing.T) {
	iss := m2mtest.NewServer(
		m2mtest.Client{ID: "reader", Secret: "pw1", Audiences: []string{audience, "https://other/api"}, Scopes: []string{"read:messages"}},
		m2mtest.Client{ID: "noscope", Secret: "pw2", Audiences: []string{audience}},
	)
	defer iss.Close()
	api, err := newAPI(iss.Issuer(), audience)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	defer srv.Close()
	client := func(id, secret, aud string) *http.Client {
		src, err := m2mtoken.New(m2mtoken.Config{TokenURL: iss.TokenURL(), ClientID: id, ClientSecret: secret, Audience: aud})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { src.Close() })
		return src.Client()
	}
	expired, _ := iss.Sign(map[string]any{"iss": iss.Issuer(), "aud": audience, "sub": "x@clients", "exp": time.Now().Add(-time.Hour).Unix(), "iat": time.Now().Add(-2 * time.Hour).Unix()})
	tests := []struct {
		name   string
		client *http.Client
		bearer string
		path   string
		want   int
	}{
		{"public, no token", http.DefaultClient, "", "/api/public", 200},
		{"private, no token", http.DefaultClient, "", "/api/private", 401},
		{"private, valid token", client("reader", "pw1", audience), "", "/api/private", 200},
		{"scoped, valid token with scope", client("reader", "pw1", audience), "", "/api/private-scoped", 200},
		{"scoped, token without scope", client("noscope", "pw2", audience), "", "/api/private-scoped", 403},
		{"private, token for another audience", client("reader", "pw1", "https://other/api"), "", "/api/private", 401},
		{"private, expired token", http.DefaultClient, expired, "/api/private", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+tt.path, nil)
			if tt.bearer != "" {
				req.Header.Set("Authorization", "Bearer "+tt.bearer)
			}
			resp, err := tt.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
	// The token for another audience was refused by the API: the client
	// invalidated it once and gave up (the fresh one is refused too).
	if n := iss.TokensIssued("reader"); n > 4 {
		t.Errorf("%d tokens issued to reader", n)
	}
}
