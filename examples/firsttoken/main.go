// Command firsttoken is the README's first program: it takes its settings
// from the environment, gets a token, and calls an API with it. Run it
// beside `m2mtoken serve` (paste the export lines it prints) or with your
// tenant's values:
//
//	API_URL=$AUTH0_DOMAIN/api/private go run ./examples/firsttoken
package main

import (
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"github.com/m2mtoken/m2mtoken"
)

func main() {
	if err := run(os.Stdout, os.Getenv("API_URL")); err != nil {
		log.Fatal(err)
	}
}

func run(stdout io.Writer, apiURL string) error {
	// AUTH0_DOMAIN, AUTH0_CLIENT_ID, AUTH0_CLIENT_SECRET, AUTH0_AUDIENCE, ...
	cfg, err := m2mtoken.ConfigFromEnv()
	if err != nil {
		return err // names the variable to fix
	}
	src, err := m2mtoken.New(cfg)
	if err != nil {
		return err
	}
	defer src.Close()

	tok, err := src.Token() // cached, refreshed in the background
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "token", m2mtoken.Fingerprint(tok.AccessToken), "expires in", time.Until(tok.Expiry).Round(time.Second))
	if apiURL == "" {
		return nil
	}

	resp, err := src.Client().Get(apiURL) // every request carries a valid token
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	fmt.Fprintln(stdout, resp.Status, string(body))
	return err
}
