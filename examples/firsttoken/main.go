// Command firsttoken is the README's first program: it takes its settings
// from the environment, and calls an API with a token. Run it beside
// `m2mtoken serve` (paste the export lines it prints, API_URL among them)
// with go run ./examples/firsttoken, or with your tenant's values and
// API_URL set to your API.
package main

import (
	"fmt"
	"io"
	"log"
	"os"
	"strings"

	"github.com/m2mtoken/m2mtoken"
)

func main() {
	cfg, err := m2mtoken.ConfigFromEnv() // AUTH0_DOMAIN, AUTH0_CLIENT_ID, AUTH0_CLIENT_SECRET, AUTH0_AUDIENCE
	if err != nil {
		log.Fatal(err) // names the variable to fix
	}
	src, err := m2mtoken.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()

	resp, err := src.Client().Get(os.Getenv("API_URL")) // every request carries a valid token
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status, strings.TrimSpace(string(body)))
}
