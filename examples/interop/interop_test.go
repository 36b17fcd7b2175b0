package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/m2mtoken/m2mtoken"
)

const resource = "https://api.interop.test/"

// skipped records that a test skipped because the server cannot run here.
var skipped atomic.Bool

// TestMain makes a run whose tests skipped for want of node or the npm
// packages impossible to miss: go test prints a passing package as a bare
// "ok", and this turns it into "ok ... [no tests to run]" (the go command's
// own marker), with why under -v.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 && skipped.Load() {
		fmt.Println("examples/interop: the interop tests did not run: node and the packages of npm ci in examples/interop are needed")
		fmt.Println("testing: warning: no tests to run")
	}
	os.Exit(code)
}

// startOrSkip starts oidc-provider; it skips when node or the npm
// packages are missing, and fails instead when CI is set.
func startOrSkip(t *testing.T, ttl time.Duration, env ...string) *provider {
	t.Helper()
	p, err := startProvider(".", "interop-secret", ttl, resource, env...)
	if (errors.Is(err, errNoNode) || errors.Is(err, errNoModules)) && os.Getenv("CI") == "" {
		skipped.Store(true)
		t.Skipf("skipping the oidc-provider interop tests: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	return p
}

func claims(t *testing.T, tok string) map[string]any {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %.20q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	json.Unmarshal(b, &c)
	return c
}

// TestInteropOverSeveralLifetimes fetches and refreshes 2-second tokens
// from oidc-provider for 7 s through both client authentication methods.
func TestInteropOverSeveralLifetimes(t *testing.T) {
	p := startOrSkip(t, 2*time.Second)
	for _, id := range []string{"interop-post", "interop-basic"} {
		t.Run(id, func(t *testing.T) {
			src, err := m2mtoken.New(config(p.tokenURL, id, "interop-secret", resource))
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			seen := map[string]bool{}
			for stop := time.Now().Add(7 * time.Second); time.Now().Before(stop); time.Sleep(20 * time.Millisecond) {
				tok, err := src.Token()
				if err != nil {
					t.Fatal(err)
				}
				if !tok.Expiry.After(time.Now()) {
					t.Fatalf("handed out a token that expired at %v", tok.Expiry)
				}
				if !seen[tok.AccessToken] {
					seen[tok.AccessToken] = true
					c := claims(t, tok.AccessToken)
					if c["aud"] != resource || c["client_id"] != id {
						t.Fatalf("claims %v", c)
					}
				}
			}
			st := src.Stats()
			t.Logf("%s: %d distinct tokens, %d token requests, %d background refreshes", id, len(seen), st.TokenRequests, st.BackgroundRefreshes)
			if len(seen) < 3 || st.Failures != 0 {
				t.Fatalf("%d tokens over 3.5 lifetimes, %d failures", len(seen), st.Failures)
			}
			if st.TokenRequests > uint64(len(seen))+1 {
				t.Fatalf("%d requests for %d tokens", st.TokenRequests, len(seen))
			}
		})
	}
}

func TestInteropErrors(t *testing.T) {
	p := startOrSkip(t, time.Minute)
	for _, id := range []string{"interop-post", "interop-basic"} {
		src, err := m2mtoken.New(config(p.tokenURL, id, "wrong-secret", resource))
		if err != nil {
			t.Fatal(err)
		}
		_, err = src.Token()
		src.Close()
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != "invalid_client" || re.Response.StatusCode != 401 {
			t.Fatalf("%s with a wrong secret: %v", id, err)
		}
	}
	// A resource the server does not serve: invalid_target.
	_, err := fetch(t.Context(), p.tokenURL, "interop-post", "interop-secret", "https://unknown.test/")
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_target" {
		t.Fatalf("unknown resource: %v", err)
	}
}
