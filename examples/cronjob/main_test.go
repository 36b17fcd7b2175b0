package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

func TestScheduledRunsShareOneToken(t *testing.T) {
	const audience = "https://jobs.local/"
	iss := m2mtest.NewServer(m2mtest.Client{ID: "job", Secret: "pw", Audiences: []string{audience}})
	defer iss.Close()
	iss.SetTokenLifetime(3 * time.Second)
	api := httptest.NewServer(iss.Protect(audience, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "synced") })))
	defer api.Close()
	dir := t.TempDir()
	cfg := m2mtoken.Config{TokenURL: iss.TokenURL(), ClientID: "job", ClientSecret: "pw", Audience: audience}
	for run := 0; run < 25; run++ {
		out, err := runJob(context.Background(), cfg, dir, api.URL)
		if err != nil || out != "synced" {
			t.Fatalf("run %d: %q %v", run, out, err)
		}
	}
	if n := iss.TokensIssued("job"); n != 1 {
		t.Fatalf("25 runs within a token lifetime made %d token requests, want 1", n)
	}
	// Past the token's refresh window, the next run fetches once more.
	time.Sleep(3 * time.Second)
	for run := 0; run < 5; run++ {
		if _, err := runJob(context.Background(), cfg, dir, api.URL); err != nil {
			t.Fatal(err)
		}
	}
	if n := iss.TokensIssued("job"); n != 2 {
		t.Fatalf("after a lifetime: %d token requests, want 2", n)
	}
}
