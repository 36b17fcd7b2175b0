package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// TestFirstToken runs the program as the README does: the variables
// `m2mtoken serve` prints, then the protected API.
func TestFirstToken(t *testing.T) {
	const audience = "https://api.local/"
	iss := m2mtest.NewServer(m2mtest.Client{ID: "m2mtoken-local", Secret: "dev", Audiences: []string{audience}})
	defer iss.Close()
	api := httptest.NewServer(iss.Protect(audience, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from a private endpoint")
	})))
	defer api.Close()
	t.Setenv("AUTH0_DOMAIN", iss.URL)
	t.Setenv("AUTH0_CLIENT_ID", "m2mtoken-local")
	t.Setenv("AUTH0_CLIENT_SECRET", "dev")
	t.Setenv("AUTH0_AUDIENCE", audience)
	var out strings.Builder
	if err := run(&out, api.URL); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if !strings.HasPrefix(got, "token sha256:") || !strings.Contains(got, "200 OK hello from a private endpoint") {
		t.Fatalf("output:\n%s", got)
	}
	if strings.Contains(got, "eyJ") {
		t.Fatalf("output shows the token itself, not its fingerprint:\n%s", got)
	}
	if n := iss.TokensIssued("m2mtoken-local"); n != 1 {
		t.Fatalf("%d token requests, want 1", n)
	}
}

// TestFirstTokenSaysWhatToSet: with nothing set, the error names the
// variable to set.
func TestFirstTokenSaysWhatToSet(t *testing.T) {
	for _, v := range []string{"AUTH0_DOMAIN", "M2MTOKEN_TOKEN_URL", "AUTH0_CLIENT_ID", "AUTH0_CLIENT_SECRET", "AUTH0_AUDIENCE"} {
		t.Setenv(v, "")
	}
	err := run(io.Discard, "")
	if err == nil || !strings.Contains(err.Error(), "AUTH0_") {
		t.Fatalf("got %v, want an error naming a variable", err)
	}
}
