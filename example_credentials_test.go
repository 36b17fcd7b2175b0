package m2mtoken_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// A client secret in a file is followed: read again for each token
// request, so that a secret rotated in the file (a Kubernetes Secret, a
// Vault Agent template) is used without a restart. Here the secret is
// rotated the way Auth0's rotate-secret does it, at the issuer first (the
// old secret is refused at once), then in the file.
func ExampleConfig_clientSecretFile() {
	issuer := m2mtest.NewServer(m2mtest.Client{ID: "svc", Secret: "old-secret", Audiences: []string{"https://api.example.com/"}})
	defer issuer.Close()
	dir, cleanup := exampleDir()
	defer cleanup()
	file := filepath.Join(dir, "client-secret") // in a pod: /etc/svc/auth0/client-secret
	replaceFile(file, "old-secret\n")

	src, err := m2mtoken.New(m2mtoken.Config{
		TokenURL:         issuer.TokenURL(), // or Domain: "tenant.eu.auth0.com"
		ClientID:         "svc",
		ClientSecretFile: file, // or AUTH0_CLIENT_SECRET_FILE with ConfigFromEnv
		Audience:         "https://api.example.com/",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	before, err := src.Token()
	if err != nil {
		log.Fatal(err)
	}

	if err := issuer.RotateSecret("svc", "new-secret", m2mtest.Rotation{}); err != nil {
		log.Fatal(err)
	}
	replaceFile(file, "new-secret\n") // as the kubelet updates a mounted Secret
	src.Invalidate(before)            // here, in place of the refresh the token's age starts
	after, err := src.Token()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(after.AccessToken != before.AccessToken, issuer.TokensIssued("svc"), issuer.Requests())
	// Output: true 2 2
}

// A Private Key JWT key in a file is followed too. Auth0 keeps two
// credentials per application, so a key is rotated in three steps: add
// the new public key, switch the file to the new private key, remove the
// old public key. KeyID names the key the file held first: assertions
// signed with a later key carry no key ID (Auth0 then tries each of the
// application's credentials), and a warning says so.
func ExampleConfig_privateKeyFile() {
	oldKey, newKey := newP256(), newP256()
	issuer := m2mtest.NewServer(m2mtest.Client{ID: "svc", Audiences: []string{"https://api.example.com/"}})
	defer issuer.Close()
	if err := issuer.AddKey("svc", m2mtest.Key{ID: "k1", PublicKey: &oldKey.PublicKey}); err != nil {
		log.Fatal(err)
	}
	dir, cleanup := exampleDir()
	defer cleanup()
	file := filepath.Join(dir, "auth0-key.pem")
	replaceFile(file, keyPEM(oldKey))

	src, err := m2mtoken.New(m2mtoken.Config{
		TokenURL:       issuer.TokenURL(),
		ClientID:       "svc",
		PrivateKeyFile: file, // or M2MTOKEN_PRIVATE_KEY_FILE
		KeyID:          "k1", // optional on Auth0; names the key the file holds now
		Audience:       "https://api.example.com/",
		Logger:         stdoutWarnings(),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	before, err := src.Token()
	if err != nil {
		log.Fatal(err)
	}

	// 1. Add the new public key: both keys work.
	if err := issuer.AddKey("svc", m2mtest.Key{ID: "k2", PublicKey: &newKey.PublicKey}); err != nil {
		log.Fatal(err)
	}
	// 2. Switch the file to the new private key.
	replaceFile(file, keyPEM(newKey))
	src.Invalidate(before) // here, in place of the refresh the token's age starts
	if _, err := src.Token(); err != nil {
		log.Fatal(err)
	}
	// 3. Remove the old public key.
	if err := issuer.RemoveKey("svc", &oldKey.PublicKey); err != nil {
		log.Fatal(err)
	}
	fmt.Println(issuer.TokensIssued("svc"), len(issuer.Keys("svc")))
	// Output:
	// level=WARN msg="the private key in the file changed, and the key ID set names the one it held before: assertions now carry no key ID (Auth0 then tries each of the application's credentials); set the key ID to the new key's, or leave it empty"
	// 2 1
}

// A client assertion in a file is the platform's token, sent instead of a
// secret to a server that trusts the platform (federated credentials):
// here a Kubernetes projected service-account token, which the kubelet
// rewrites before it expires. The file is read for each token request.
// The cache key names the identity the assertion proves (its issuer and
// subject), not its bytes: two pods of one service account, each with a
// token of its own, share one access token through a shared cache.
func ExampleConfig_clientAssertionFile() {
	cluster := m2mtest.NewPlatform("https://kubernetes.default.svc.cluster.local")
	const sa = "system:serviceaccount:prod:billing"
	issuer := m2mtest.NewServer(m2mtest.Client{ID: "svc", Audiences: []string{"https://api.example.com/"}})
	defer issuer.Close()
	if err := issuer.Trust("svc", cluster.Trust(sa)); err != nil {
		log.Fatal(err)
	}
	dir, cleanup := exampleDir()
	defer cleanup()

	cache := m2mtoken.NewMemoryCache() // in a fleet: rediscache
	for _, pod := range []string{"pod-a", "pod-b"} {
		assertion, err := cluster.Token(sa, "", time.Hour) // aud api://AzureADTokenExchange
		if err != nil {
			log.Fatal(err)
		}
		file := filepath.Join(dir, pod+"-token") // in a pod: /var/run/secrets/tokens/auth0
		replaceFile(file, assertion)
		src, err := m2mtoken.New(m2mtoken.Config{
			TokenURL:            issuer.TokenURL(),
			ClientID:            "svc",
			ClientAssertionFile: file, // or M2MTOKEN_CLIENT_ASSERTION_FILE
			Audience:            "https://api.example.com/",
			Cache:               cache,
		})
		if err != nil {
			log.Fatal(err)
		}
		defer src.Close()
		tok, err := src.Token()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(pod, tok.Type(), issuer.TokensIssued("svc"))
	}
	// Output:
	// pod-a Bearer 1
	// pod-b Bearer 1
}

// exampleDir returns a new directory for an example's files, and a
// function that removes it.
func exampleDir() (string, func()) {
	dir, err := os.MkdirTemp("", "m2mtoken-example-")
	if err != nil {
		log.Fatal(err)
	}
	return dir, func() { os.RemoveAll(dir) }
}

// replaceFile writes content to a new file and renames it over path, as
// Vault Agent renders a template (a Kubernetes Secret volume swaps a
// directory link instead; the library reads both the same way).
func replaceFile(path, content string) {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		log.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		log.Fatal(err)
	}
}

// newP256 returns a new P-256 key, as openssl genpkey -algorithm EC
// -pkeyopt ec_paramgen_curve:P-256 makes one.
func newP256() *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	return key
}

// keyPEM is key as a PKCS#8 PEM file holds it.
func keyPEM(key *ecdsa.PrivateKey) string {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		log.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// stdoutWarnings is a logger of the library's warnings to stdout, with
// the message alone, so that an example's output can show one.
func stdoutWarnings() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		Level: slog.LevelWarn,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key != slog.LevelKey && a.Key != slog.MessageKey {
				return slog.Attr{}
			}
			return a
		},
	}))
}
