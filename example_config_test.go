package m2mtoken_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"log"
	"os"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/internal/settings"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// ConfigFromEnv reads the same variables as the m2mtoken command, and its
// errors name the variable to fix. Here a local m2mtest issuer stands in for
// the tenant (AUTH0_DOMAIN accepts http:// to loopback); in real use the
// variables come from the service's environment.
func ExampleConfigFromEnv() {
	issuer := m2mtest.NewServer(m2mtest.Client{ID: "svc", Secret: "s3cret", Audiences: []string{"https://api.example.com/"}})
	defer issuer.Close()
	defer setenv(map[string]string{
		"AUTH0_DOMAIN":        issuer.URL, // tenant.eu.auth0.com
		"AUTH0_CLIENT_SECRET": "s3cret",
		"AUTH0_AUDIENCE":      "https://api.example.com/",
	})()

	_, err := m2mtoken.ConfigFromEnv()
	fmt.Println(err) // AUTH0_CLIENT_ID is not set yet

	os.Setenv("AUTH0_CLIENT_ID", "svc")
	cfg, err := m2mtoken.ConfigFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	src, err := m2mtoken.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	tok, err := src.Token()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tok.Type(), cfg.ClientID, cfg.Audience)
	// Output:
	// m2mtoken: AUTH0_CLIENT_ID is empty: set it to the application's Client ID
	// Bearer svc https://api.example.com/
}

// setenv sets the variables ConfigFromEnv reads to vars (the others unset)
// and returns a function that puts them back as they were.
func setenv(vars map[string]string) (restore func()) {
	old := map[string]*string{}
	for _, v := range settings.Names() {
		if s, ok := os.LookupEnv(v); ok {
			old[v] = &s
		} else {
			old[v] = nil
		}
		os.Unsetenv(v)
	}
	for k, v := range vars {
		os.Setenv(k, v)
	}
	return func() {
		for k, v := range old {
			if v == nil {
				os.Unsetenv(k)
			} else {
				os.Setenv(k, *v)
			}
		}
	}
}

// With Private Key JWT no secret is shared: each token request carries an
// assertion signed with the client's key. Here the m2mtest issuer knows the
// client by its public key.
func ExampleConfig_privateKeyJWT() {
	// In real use: key, err := m2mtoken.LoadPrivateKey("/etc/svc/auth0-key.pem"),
	// an RSA (RS256, PS256) or P-256 (ES256) key.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	issuer := m2mtest.NewServer(m2mtest.Client{ID: "svc", PublicKey: &key.PublicKey, Audiences: []string{"https://api.example.com/"}})
	defer issuer.Close()

	src, err := m2mtoken.New(m2mtoken.Config{
		TokenURL:   issuer.TokenURL(), // or Domain: "tenant.eu.auth0.com"
		ClientID:   "svc",
		PrivateKey: key,       // AuthMethod becomes PrivateKeyJWT
		KeyID:      "kid-123", // the credential's Key ID in Auth0
		Audience:   "https://api.example.com/",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	tok, err := src.Token()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tok.Type(), issuer.TokensIssued("svc"))
	// Output: Bearer 1
}
