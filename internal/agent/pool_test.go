package agent

import (
	"context"
	"testing"

	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// TestAgentSourcesOfOneClientShareAPool: config-file sources that differ
// only in audience, scopes or organization share one pool (one connection
// pool, quota view and error memory); a source of another client has its
// own.
func TestAgentSourcesOfOneClientShareAPool(t *testing.T) {
	iss := m2mtest.NewServer(
		m2mtest.Client{ID: "cli", Secret: secret, Audiences: []string{"https://billing/", "https://search/"}, Organizations: []string{"org_a"}},
		m2mtest.Client{ID: "other", Secret: secret, Audiences: []string{"https://billing/"}})
	defer iss.Close()
	file := `{"sources": [
	  {"name": "billing", "token_url": "` + iss.TokenURL() + `", "client_id": "cli", "client_secret_env": "S", "audience": "https://billing/"},
	  {"name": "search", "token_url": "` + iss.TokenURL() + `", "client_id": "cli", "client_secret_env": "S", "audience": "https://search/"},
	  {"name": "tenant-a", "token_url": "` + iss.TokenURL() + `", "client_id": "cli", "client_secret_env": "S", "audience": "https://billing/", "organization": "org_a"},
	  {"name": "other", "token_url": "` + iss.TokenURL() + `", "client_id": "other", "client_secret_env": "S", "audience": "https://billing/"}
	]}`
	specs, err := parseConfigFile("agent.json", []byte(file), func(k string) string {
		if k == "S" {
			return secret
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{Sources: specs, Listeners: []Listener{{"127.0.0.1:0"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.closeSources()
	pool := a.byName["billing"].src.Pool()
	for _, name := range []string{"search", "tenant-a"} {
		if a.byName[name].src.Pool() != pool {
			t.Errorf("source %s has a pool of its own", name)
		}
	}
	if a.byName["other"].src.Pool() == pool {
		t.Error("another client's source shares the pool")
	}
	for name, want := range map[string][2]string{"billing": {"https://billing/", ""}, "search": {"https://search/", ""}, "tenant-a": {"https://billing/", "org_a"}} {
		tok, err := a.byName[name].src.TokenContext(context.Background())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		claims, err := iss.Verify(tok.AccessToken, want[0])
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if org, _ := claims["org_id"].(string); org != want[1] {
			t.Errorf("%s: organization %q, want %q", name, org, want[1])
		}
	}
	if st := pool.Stats(); st.Tokens != 3 || st.TokenRequests != 3 {
		t.Errorf("pool: %d tokens, %d requests; want 3 and 3", st.Tokens, st.TokenRequests)
	}
}
