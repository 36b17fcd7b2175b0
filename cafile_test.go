package m2mtoken

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/m2mtoken/m2mtoken/m2mtest"
)

const testAudience = "https://api.example.com/"

// TestCAFileTrustedEverywhere: a private CA given once, as
// M2MTOKEN_CA_FILE, is trusted by token requests and by Client(), as a
// user reads it with ConfigFromEnv; the system's CAs stay trusted too.
func TestCAFileTrustedEverywhere(t *testing.T) {
	iss := m2mtest.NewTLSServer(m2mtest.Client{ID: "cli", Secret: testSecret, Audiences: []string{testAudience}})
	defer iss.Close()
	api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ey") {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		w.Write([]byte("hello"))
	}))
	defer api.Close()
	// Both servers present httptest's certificate: it is the private CA.
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: api.Certificate().Raw}), 0o600)

	t.Setenv("AUTH0_DOMAIN", "")
	t.Setenv("M2MTOKEN_TOKEN_URL", iss.TokenURL())
	t.Setenv("AUTH0_CLIENT_ID", "cli")
	t.Setenv("AUTH0_CLIENT_SECRET", testSecret)
	t.Setenv("AUTH0_AUDIENCE", testAudience)
	t.Setenv("M2MTOKEN_CA_FILE", caFile)
	cfg, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CAFile != caFile || cfg.HTTPClient != nil {
		t.Fatalf("CAFile %q, HTTPClient %v", cfg.CAFile, cfg.HTTPClient)
	}
	src, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	resp, err := src.Client().Get(api.URL)
	if err != nil {
		t.Fatalf("Client() to an API under the CA: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}

	t.Run("not given", func(t *testing.T) {
		t.Setenv("M2MTOKEN_CA_FILE", "")
		cfg, err := ConfigFromEnv()
		if err != nil {
			t.Fatal(err)
		}
		src, _ := New(cfg)
		defer src.Close()
		_, err = src.Token()
		if err == nil || !strings.Contains(err.Error(), "trust the CA that signed it with M2MTOKEN_CA_FILE") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("with HTTPClient", func(t *testing.T) {
		c := cfg
		c.HTTPClient = http.DefaultClient
		_, err := New(c)
		if err == nil || !strings.Contains(err.Error(), "M2MTOKEN_CA_FILE and Config.HTTPClient are both set") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("file gone", func(t *testing.T) {
		c := cfg
		c.CAFile, c.FieldNames = filepath.Join(t.TempDir(), "nope.pem"), nil
		_, err := New(c)
		if err == nil || !strings.Contains(err.Error(), "Config.CAFile: open ") {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestConfigFromEnvNamesTypos: a variable of our prefixes that is set but
// not read, and is a typo of one that is, is named beside the error for the
// missing one.
func TestConfigFromEnvNamesTypos(t *testing.T) {
	t.Setenv("AUTH0_DOMAIN", "tenant.eu.auth0.com")
	t.Setenv("AUTH0_CLIENTID", "abc")
	t.Setenv("AUTH0_CLIENT_SECRET", testSecret)
	t.Setenv("AUTH0_AUDIANCE", testAudience)
	t.Setenv("AUTH0_CLIENT_ID", "")
	t.Setenv("AUTH0_UNRELATED_THING", "x")
	_, err := ConfigFromEnv()
	want := "m2mtoken: AUTH0_CLIENT_ID is empty: set it to the application's Client ID; "
	if err == nil || !strings.HasPrefix(err.Error(), want) ||
		!strings.Contains(err.Error(), "AUTH0_CLIENTID is set but not read: did you mean AUTH0_CLIENT_ID?") ||
		!strings.Contains(err.Error(), "AUTH0_AUDIANCE is set but not read: did you mean AUTH0_AUDIENCE?") ||
		strings.Contains(err.Error(), "UNRELATED") {
		t.Fatalf("err = %v", err)
	}
}
