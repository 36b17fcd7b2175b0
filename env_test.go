package m2mtoken

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func lookupIn(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

func TestConfigFromEnv(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	os.WriteFile(secretFile, []byte(testSecret+"\n"), 0o600)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	keyFile := filepath.Join(dir, "key.pem")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	base := map[string]string{"AUTH0_DOMAIN": "https://tenant.eu.auth0.com/", "AUTH0_CLIENT_ID": "abc", "AUTH0_CLIENT_SECRET": testSecret, "AUTH0_AUDIENCE": "https://api.example.com/"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(m, kv[i])
			} else {
				m[kv[i]] = kv[i+1]
			}
		}
		return m
	}
	ignore := cmpopts.IgnoreFields(Config{}, "PrivateKey", "HTTPClient", "DPoPKey", "FieldNames")
	for _, tt := range []struct {
		name    string
		env     map[string]string
		want    Config
		wantErr string
	}{
		{"auth0", base, Config{Domain: "https://tenant.eu.auth0.com/", ClientID: "abc", ClientSecret: testSecret, Audience: "https://api.example.com/"}, ""},
		{"all", with("AUTH0_SCOPE", "read:a  write:b", "AUTH0_ORGANIZATION", "org_1", "M2MTOKEN_AUTH_METHOD", "basic"),
			Config{Domain: "https://tenant.eu.auth0.com/", ClientID: "abc", ClientSecret: testSecret, Audience: "https://api.example.com/",
				Scopes: []string{"read:a", "write:b"}, Organization: "org_1", AuthMethod: ClientSecretBasic}, ""},
		{"token url", with("AUTH0_DOMAIN", "", "M2MTOKEN_TOKEN_URL", "http://127.0.0.1:9/oauth/token"),
			Config{TokenURL: "http://127.0.0.1:9/oauth/token", ClientID: "abc", ClientSecret: testSecret, Audience: "https://api.example.com/"}, ""},
		{"secret file", with("AUTH0_CLIENT_SECRET", "", "AUTH0_CLIENT_SECRET_FILE", secretFile),
			Config{Domain: "https://tenant.eu.auth0.com/", ClientID: "abc", ClientSecretFile: secretFile, Audience: "https://api.example.com/"}, ""},
		{"key", with("AUTH0_CLIENT_SECRET", "", "M2MTOKEN_PRIVATE_KEY_FILE", keyFile, "M2MTOKEN_KEY_ID", "k1"),
			Config{Domain: "https://tenant.eu.auth0.com/", ClientID: "abc", PrivateKeyFile: keyFile, KeyID: "k1", AuthMethod: PrivateKeyJWT, Audience: "https://api.example.com/"}, ""},
		{"assertion", with("AUTH0_CLIENT_SECRET", "", "M2MTOKEN_CLIENT_ASSERTION_FILE", secretFile, "M2MTOKEN_CLIENT_ASSERTION_TYPE", "jwt-spiffe"),
			Config{Domain: "https://tenant.eu.auth0.com/", ClientID: "abc", ClientAssertionFile: secretFile, ClientAssertionType: "jwt-spiffe", AuthMethod: ClientAssertion, Audience: "https://api.example.com/"}, ""},
		{"assertion type without a file", with("M2MTOKEN_CLIENT_ASSERTION_TYPE", "jwt-spiffe"), Config{}, "M2MTOKEN_CLIENT_ASSERTION_TYPE is set without M2MTOKEN_CLIENT_ASSERTION_FILE"},
		{"assertion and secret", with("M2MTOKEN_CLIENT_ASSERTION_FILE", secretFile), Config{}, "both AUTH0_CLIENT_SECRET and M2MTOKEN_CLIENT_ASSERTION_FILE are set"},
		{"missing assertion file", with("AUTH0_CLIENT_SECRET", "", "M2MTOKEN_CLIENT_ASSERTION_FILE", filepath.Join(dir, "nope")), Config{}, "M2MTOKEN_CLIENT_ASSERTION_FILE: open "},
		{"no client id", with("AUTH0_CLIENT_ID", ""), Config{}, "m2mtoken: AUTH0_CLIENT_ID is empty: set it to the application's Client ID"},
		{"no secret", with("AUTH0_CLIENT_SECRET", ""), Config{}, "AUTH0_CLIENT_SECRET is empty: give the application's Client Secret, or authenticate another way (M2MTOKEN_PRIVATE_KEY_FILE for Private Key JWT, M2MTOKEN_CLIENT_ASSERTION_FILE for a platform's token, M2MTOKEN_CLIENT_CERT_FILE and M2MTOKEN_CLIENT_KEY_FILE for mTLS)"},
		{"no endpoint", with("AUTH0_DOMAIN", ""), Config{}, "no endpoint: set AUTH0_DOMAIN"},
		{"both endpoints", with("M2MTOKEN_TOKEN_URL", "https://x/oauth/token"), Config{}, "both AUTH0_DOMAIN and M2MTOKEN_TOKEN_URL are set"},
		{"token url without scheme", with("AUTH0_DOMAIN", "", "M2MTOKEN_TOKEN_URL", "tenant.eu.auth0.com"), Config{}, `M2MTOKEN_TOKEN_URL "tenant.eu.auth0.com" has no scheme: a token URL is a full URL, such as "https://tenant.eu.auth0.com/oauth/token"; or give the bare domain in AUTH0_DOMAIN`},
		{"plain http", with("AUTH0_DOMAIN", "http://tenant.eu.auth0.com"), Config{}, `AUTH0_DOMAIN "http://tenant.eu.auth0.com" uses plain http`},
		{"missing secret file", with("AUTH0_CLIENT_SECRET", "", "AUTH0_CLIENT_SECRET_FILE", filepath.Join(dir, "nope")), Config{}, "AUTH0_CLIENT_SECRET_FILE: open "},
		{"secret and file", with("AUTH0_CLIENT_SECRET_FILE", secretFile), Config{}, "both AUTH0_CLIENT_SECRET and AUTH0_CLIENT_SECRET_FILE are set"},
		{"secret and key", with("M2MTOKEN_PRIVATE_KEY_FILE", keyFile), Config{}, "both AUTH0_CLIENT_SECRET and M2MTOKEN_PRIVATE_KEY_FILE are set: authenticate with one"},
		{"secret file and key", with("AUTH0_CLIENT_SECRET", "", "AUTH0_CLIENT_SECRET_FILE", secretFile, "M2MTOKEN_PRIVATE_KEY_FILE", keyFile), Config{},
			"both AUTH0_CLIENT_SECRET_FILE and M2MTOKEN_PRIVATE_KEY_FILE are set"},
		{"key id without a key", with("M2MTOKEN_KEY_ID", "k1"), Config{}, "M2MTOKEN_KEY_ID is set without M2MTOKEN_PRIVATE_KEY_FILE"},
		{"require dpop", with("M2MTOKEN_DPOP_KEY_FILE", keyFile, "M2MTOKEN_REQUIRE_DPOP", "true"),
			Config{Domain: "https://tenant.eu.auth0.com/", ClientID: "abc", ClientSecret: testSecret, Audience: "https://api.example.com/", RequireDPoP: true}, ""},
		{"require dpop without a key", with("M2MTOKEN_REQUIRE_DPOP", "1"), Config{}, "M2MTOKEN_REQUIRE_DPOP is set without M2MTOKEN_DPOP_KEY_FILE"},
		{"require dpop not a bool", with("M2MTOKEN_DPOP_KEY_FILE", keyFile, "M2MTOKEN_REQUIRE_DPOP", "yes please"), Config{}, `M2MTOKEN_REQUIRE_DPOP "yes please": use true or false`},
		{"bad key file", with("AUTH0_CLIENT_SECRET", "", "M2MTOKEN_PRIVATE_KEY_FILE", secretFile), Config{}, "M2MTOKEN_PRIVATE_KEY_FILE: no PEM block found"},
		{"bad method", with("M2MTOKEN_AUTH_METHOD", "digest"), Config{}, `M2MTOKEN_AUTH_METHOD "digest": use post, basic, private_key_jwt, client_assertion, tls_client_auth or self_signed_tls_client_auth`},
		{"locahost", with("AUTH0_DOMAIN", "", "M2MTOKEN_TOKEN_URL", "http://locahost:8080/oauth/token"), Config{},
			`M2MTOKEN_TOKEN_URL "http://locahost:8080/oauth/token": "locahost" is not a loopback name: did you mean localhost?`},
		{"empty port", with("AUTH0_DOMAIN", "", "M2MTOKEN_TOKEN_URL", "http://127.0.0.1:/oauth/token"), Config{},
			`M2MTOKEN_TOKEN_URL "http://127.0.0.1:/oauth/token" has an empty port`},
		{"bad ca file", with("M2MTOKEN_CA_FILE", secretFile), Config{}, "M2MTOKEN_CA_FILE: no PEM certificate in"},
		{"bad dpop key file", with("M2MTOKEN_DPOP_KEY_FILE", secretFile), Config{}, "M2MTOKEN_DPOP_KEY_FILE: no PEM block found"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ConfigFromLookup(lookupIn(tt.env), nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), testSecret) || strings.Contains(err.Error(), "Config.") {
					t.Fatalf("err %q shows the secret or a Config field", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, ignore); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if got.PrivateKey != nil || got.ClientSecret != tt.want.ClientSecret {
				t.Error("a credential file was read into Config: it is followed by the source")
			}
		})
	}
	t.Run("dpop key", func(t *testing.T) {
		got, err := ConfigFromLookup(lookupIn(with("M2MTOKEN_DPOP_KEY_FILE", keyFile)), nil)
		if err != nil || got.DPoPKey == nil {
			t.Fatalf("DPoPKey %v, err %v", got.DPoPKey, err)
		}
	})
	t.Run("named by the caller", func(t *testing.T) {
		name := func(v string) string { return "--flag or " + v }
		_, err := ConfigFromLookup(lookupIn(with("AUTH0_CLIENT_ID", "")), name)
		var ce *ConfigError
		if !errors.As(err, &ce) || err.Error() != "m2mtoken: --flag or AUTH0_CLIENT_ID is empty: set it to the application's Client ID" {
			t.Fatalf("err = %v", err)
		}
		// A field is named by the variable that set it; one that no
		// variable sets is the program's, not its user's: "".
		cfg, err := ConfigFromLookup(lookupIn(with("AUTH0_CLIENT_SECRET", "", "AUTH0_CLIENT_SECRET_FILE", secretFile)), name)
		if err != nil {
			t.Fatal(err)
		}
		for field, want := range map[string]string{"ClientSecretFile": "--flag or AUTH0_CLIENT_SECRET_FILE", "Domain": "--flag or AUTH0_DOMAIN", "FetchTimeout": ""} {
			if got := cfg.FieldNames(field); got != want {
				t.Errorf("FieldNames(%q) = %q, want %q", field, got, want)
			}
		}
		if cfg, _ := ConfigFromLookup(lookupIn(base), nil); cfg.FieldNames("FetchTimeout") != "Config.FetchTimeout" {
			t.Errorf("without a name function: %q", cfg.FieldNames("FetchTimeout"))
		}
	})
}
