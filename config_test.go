package m2mtoken

// Tests of Config: validation in New, defaults, the token URL it resolves to.

import (
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNewValidates(t *testing.T) {
	ok := Config{Domain: "tenant.eu.auth0.com", ClientID: "id", ClientSecret: testSecret}
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string // substring; "" means no error
	}{
		{"ok", func(*Config) {}, ""},
		{"no client id", func(c *Config) { c.ClientID = "" }, "m2mtoken: Config.ClientID is empty"},
		{"no secret", func(c *Config) { c.ClientSecret = "" }, "ClientSecret is empty"},
		{"no endpoint", func(c *Config) { c.Domain = "" }, "no endpoint"},
		{"both endpoints", func(c *Config) { c.TokenURL = "https://x/oauth/token" }, "only one"},
		{"unparsable", func(c *Config) { c.Domain = ""; c.TokenURL = "https://exa mple.com/%zz" }, "does not parse"},
		{"no host", func(c *Config) { c.Domain = ""; c.TokenURL = "https:///oauth/token" }, "no host"},
		{"no scheme", func(c *Config) { c.Domain = ""; c.TokenURL = "tenant.eu.auth0.com" }, `Config.TokenURL "tenant.eu.auth0.com" has no scheme: a token URL is a full URL, such as "https://tenant.eu.auth0.com/oauth/token"; or give the bare domain in Config.Domain`},
		{"no scheme with path", func(c *Config) { c.Domain = ""; c.TokenURL = "auth.example.com/oauth2/token" }, `did you mean "https://auth.example.com/oauth2/token"?`},
		{"no scheme loopback", func(c *Config) { c.Domain = ""; c.TokenURL = "127.0.0.1:8080/oauth/token" }, `did you mean "http://127.0.0.1:8080/oauth/token"?`},
		{"mtls no scheme", func(c *Config) { c.MTLSTokenURL = "mtls.example.com" }, `Config.MTLSTokenURL "mtls.example.com" has no scheme`},
		{"plain http", func(c *Config) { c.Domain = ""; c.TokenURL = "http://auth.example.com/oauth/token" }, "plain http"},
		{"http loopback", func(c *Config) { c.Domain = ""; c.TokenURL = "http://127.0.0.1:8080/oauth/token" }, ""},
		{"http localhost", func(c *Config) { c.Domain = "http://localhost:9000" }, ""},
		{"http ipv6 loopback", func(c *Config) { c.Domain = ""; c.TokenURL = "http://[::1]:1/token" }, ""},
		{"ftp", func(c *Config) { c.Domain = ""; c.TokenURL = "ftp://example.com/token" }, `m2mtoken: Config.TokenURL "ftp://example.com/token": the scheme must be https, or http to a loopback address`},
		{"htp to loopback", func(c *Config) { c.Domain = ""; c.TokenURL = "htp://127.0.0.1:8080/oauth/token" },
			`m2mtoken: Config.TokenURL "htp://127.0.0.1:8080/oauth/token": did you mean "http://127.0.0.1:8080/oauth/token"? (the scheme must be https, or http to a loopback address)`},
		{"htps", func(c *Config) { c.Domain = "htps://tenant.eu.auth0.com" },
			`m2mtoken: Config.Domain "htps://tenant.eu.auth0.com": did you mean "https://tenant.eu.auth0.com"? (the scheme must be https, or http to a loopback address)`},
		{"htp off loopback", func(c *Config) { c.Domain = ""; c.TokenURL = "HTP://auth.example.com/token" },
			`did you mean "https://auth.example.com/token"?`},
		{"userinfo", func(c *Config) { c.Domain = ""; c.TokenURL = "https://u:p@example.com/token" }, "credentials in it"},
		{"domain with path", func(c *Config) { c.Domain = "tenant.auth0.com/oauth/token" }, "path or query"},
		{"reserved param", func(c *Config) { c.EndpointParams = url.Values{"audience": {"x"}} }, `may not set "audience"`},
		{"negative timeout", func(c *Config) { c.FetchTimeout = -1 }, "FetchTimeout is negative"},
		{"negative attempts", func(c *Config) { c.MaxAttempts = -1 }, "MaxAttempts is negative"},
		{"bad method", func(c *Config) { c.AuthMethod = 7 }, "not supported"},
		{"jitter over 1", func(c *Config) { c.RefreshJitter = 2 }, "RefreshJitter"},
		{"nothing set", func(c *Config) { *c = Config{} }, `m2mtoken: missing settings: set Config.ClientID (the application's Client ID), Config.ClientSecret (its Client Secret, or Config.PrivateKey for Private Key JWT) and Config.Domain (for example "tenant.eu.auth0.com") or Config.TokenURL`},
		{"two missing", func(c *Config) { c.ClientSecret = ""; c.Domain = " " }, `m2mtoken: missing settings: set Config.ClientSecret (its Client Secret, or Config.PrivateKey for Private Key JWT) and Config.Domain (for example "tenant.eu.auth0.com") or Config.TokenURL`},
		{"key instead of secret", func(c *Config) { c.ClientID = ""; c.ClientSecret = ""; c.PrivateKey = ed25519Key(t) }, "m2mtoken: Config.ClientID is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mod(&cfg)
			s, err := New(cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				s.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want it to contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Fatalf("error reveals the secret: %v", err)
			}
		})
	}
}

func TestDomainNormalization(t *testing.T) {
	for _, d := range []string{"tenant.eu.auth0.com", "https://tenant.eu.auth0.com", "https://tenant.eu.auth0.com/", " tenant.eu.auth0.com "} {
		got, err := endpointURL(d, "")
		if err != nil {
			t.Fatalf("%q: %v", d, err)
		}
		if diff := cmp.Diff("https://tenant.eu.auth0.com/oauth/token", got); diff != "" {
			t.Errorf("%q (-want +got):\n%s", d, diff)
		}
	}
}
