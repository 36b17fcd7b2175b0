package agent

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/m2mtoken/m2mtoken"
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
	a := agentOfFile(t, file)
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

// TestAgentManySourcesOfOneClient: a config file's sources are not a
// caller's requests, so a client's pool does not bound its new tokens:
// 150 sources of one client (more than a pool's default burst of new
// tokens) each get a token on the first try.
func TestAgentManySourcesOfOneClient(t *testing.T) {
	const n = 150
	orgs := make([]string, n)
	var sources []string
	for i := range orgs {
		orgs[i] = fmt.Sprintf("org_%03d", i)
	}
	iss := m2mtest.NewServer(m2mtest.Client{ID: "cli", Secret: secret, Audiences: []string{"https://billing/"}, Organizations: orgs})
	defer iss.Close()
	for _, org := range orgs {
		sources = append(sources, `{"name": "`+org+`", "token_url": "`+iss.TokenURL()+`", "client_id": "cli", "client_secret_env": "S", "audience": "https://billing/", "organization": "`+org+`"}`)
	}
	a := agentOfFile(t, `{"sources": [`+strings.Join(sources, ",")+`]}`)
	for _, org := range orgs {
		if _, err := a.byName[org].src.TokenContext(context.Background()); err != nil {
			t.Fatalf("%s: %v", org, err)
		}
	}
	if st := a.byName[orgs[0]].src.Pool().Stats(); st.Tokens != n || st.TokenRequests != n {
		t.Errorf("pool: %d tokens, %d requests; want %d and %d", st.Tokens, st.TokenRequests, n, n)
	}
}

// agentOfFile is an agent (not running) of the config file's sources,
// whose "client_secret_env" S holds the secret; its sources are closed
// when the test ends.
func agentOfFile(t *testing.T, file string) *Agent {
	t.Helper()
	specs, _, err := parseConfigFile("agent.json", []byte(file), func(k string) string {
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
	t.Cleanup(a.closeSources)
	return a
}

// TestAgentPoolDropsNoSource: a client's pool in the agent holds a token
// for each of its sources, however many: the bound on a pool's tokens
// (Config.MaxTokens, 10,000 by default), which drops the least recently
// used, would leave a source the agent serves with a closed library
// source (a 10,000-source file, reloaded to add one before the one it
// replaces is closed). Here the bound is 2, for 3 sources.
func TestAgentPoolDropsNoSource(t *testing.T) {
	iss := m2mtest.NewServer(m2mtest.Client{ID: "cli", Secret: secret, Audiences: []string{"https://a/", "https://b/", "https://c/"}})
	defer iss.Close()
	var specs []Source
	for _, name := range []string{"a", "b", "c"} {
		specs = append(specs, Source{Name: name, Client: "cli", Config: m2mtoken.Config{TokenURL: iss.TokenURL(), ClientID: "cli", ClientSecret: secret,
			Audience: "https://" + name + "/", MaxTokens: 2}})
	}
	a, err := New(Config{Sources: specs, Listeners: []Listener{{"127.0.0.1:0"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.closeSources()
	for _, name := range []string{"a", "b", "c", "a"} {
		if _, err := a.byName[name].src.TokenContext(context.Background()); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
