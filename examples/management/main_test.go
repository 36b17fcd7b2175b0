package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// fakeManagementAPI answers GET /api/v2/clients like Auth0 for tokens from
// iss whose audience is https://HOST/api/v2/ and that carry read:clients.
func fakeManagementAPI(t *testing.T, iss *m2mtest.Server) *httptest.Server {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/api/v2/clients" {
			http.NotFound(w, r)
			return
		}
		audience := "https://" + strings.TrimPrefix(srv.URL, "http://") + "/api/v2/"
		claims, err := iss.Verify(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), audience)
		if err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(map[string]any{"statusCode": 401, "error": "Unauthorized", "message": err.Error()})
			return
		}
		if scope, _ := claims["scope"].(string); !strings.Contains(" "+scope+" ", " read:clients ") {
			w.WriteHeader(http.StatusForbidden)
			json.NewEncoder(w).Encode(map[string]any{"statusCode": 403, "error": "Forbidden", "message": "Insufficient scope, expected any of: read:clients", "errorCode": "insufficient_scope"})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		page := r.URL.Query().Get("page")
		clients := []map[string]string{{"client_id": "abc123", "name": "Billing API"}, {"client_id": "def456", "name": "Nightly Export"}}
		if page != "" && page != "0" && page != "1" {
			clients = nil
		}
		json.NewEncoder(w).Encode(map[string]any{"start": 0, "limit": 50, "total": 2, "clients": clients})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestListApplications(t *testing.T) {
	iss := m2mtest.NewServer()
	defer iss.Close()
	api := fakeManagementAPI(t, iss)
	domain := strings.TrimPrefix(api.URL, "http://")
	audience := "https://" + domain + "/api/v2/"
	iss.AddClient(m2mtest.Client{ID: "admin", Secret: "pw", Audiences: []string{audience}, Scopes: []string{"read:clients"}})
	iss.AddClient(m2mtest.Client{ID: "weak", Secret: "pw", Audiences: []string{audience}, Scopes: []string{"read:users"}})

	src := func(id string) *m2mtoken.TokenSource {
		s, err := m2mtoken.New(m2mtoken.Config{TokenURL: iss.TokenURL(), ClientID: id, ClientSecret: "pw", Audience: audience})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	var out bytes.Buffer
	admin := src("admin")
	for i := 0; i < 3; i++ { // three calls, one token
		out.Reset()
		if err := listApplications(context.Background(), &out, domain, admin, true); err != nil {
			t.Fatal(err)
		}
	}
	if got := out.String(); got != "abc123\tBilling API\ndef456\tNightly Export\n" {
		t.Fatalf("listed %q", got)
	}
	if n := iss.TokensIssued("admin"); n != 1 {
		t.Fatalf("%d tokens for three calls", n)
	}
	err := listApplications(context.Background(), &out, domain, src("weak"), true)
	if err == nil || !strings.Contains(err.Error(), "403") && !strings.Contains(err.Error(), "scope") {
		t.Fatalf("without read:clients: %v", err)
	}
}
