// Command cronjob is a scheduled job that calls an API once per run. Each
// run is a new process with a new token source; the file cache carries the
// token from run to run, so a job that runs every minute costs one M2M
// token per token lifetime, not one per run.
//
//   - * * * * AUTH0_DOMAIN=... AUTH0_CLIENT_ID=... AUTH0_CLIENT_SECRET=... AUTH0_AUDIENCE=... API_URL=... cronjob
//
// With no settings it simulates 10 runs against a local issuer and API.
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// runJob is one run of the job: get a token (from the cache in cacheDir if
// a fresh one is there), call the API, exit.
func runJob(ctx context.Context, cfg m2mtoken.Config, cacheDir, apiURL string) (string, error) {
	cfg.Cache = m2mtoken.NewFileCache(cacheDir)
	src, err := m2mtoken.New(cfg)
	if err != nil {
		return "", err
	}
	defer src.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, apiURL, nil)
	if err != nil {
		return "", err
	}
	resp, err := src.Client().Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("API answered %s", resp.Status)
	}
	return string(body), nil
}

func main() {
	dir, err := m2mtoken.DefaultCacheDir()
	if err != nil {
		log.Fatal(err)
	}
	if d := os.Getenv("AUTH0_DOMAIN"); d != "" {
		cfg := m2mtoken.Config{Domain: d, ClientID: os.Getenv("AUTH0_CLIENT_ID"), ClientSecret: os.Getenv("AUTH0_CLIENT_SECRET"), Audience: os.Getenv("AUTH0_AUDIENCE")}
		out, err := runJob(context.Background(), cfg, dir, os.Getenv("API_URL"))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(out)
		return
	}
	const audience = "https://jobs.local/"
	iss := m2mtest.NewServer(m2mtest.Client{ID: "job", Secret: "local-secret", Audiences: []string{audience}})
	defer iss.Close()
	api := httptest.NewServer(iss.Protect(audience, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "synced") })))
	defer api.Close()
	tmp, _ := os.MkdirTemp("", "cronjob")
	defer os.RemoveAll(tmp)
	cfg := m2mtoken.Config{TokenURL: iss.TokenURL(), ClientID: "job", ClientSecret: "local-secret", Audience: audience}
	for run := 1; run <= 10; run++ {
		if _, err := runJob(context.Background(), cfg, tmp, api.URL); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Printf("10 runs, %d token request(s)\n", iss.TokensIssued("job"))
}
