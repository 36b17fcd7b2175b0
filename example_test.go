package m2mtoken_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"golang.org/x/oauth2"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// A service calls an API behind Auth0 through an http.Client that always
// carries a valid token. Here a local m2mtest issuer stands in for the
// tenant; with Auth0, set Domain instead of TokenURL.
func Example() {
	issuer := m2mtest.NewServer(m2mtest.Client{ID: "svc", Secret: "s3cret", Audiences: []string{"https://api.example.com/"}, Scopes: []string{"read:messages"}})
	defer issuer.Close()
	api := httptest.NewServer(issuer.Protect("https://api.example.com/", []string{"read:messages"},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello, machine") })))
	defer api.Close()

	src, err := m2mtoken.New(m2mtoken.Config{
		TokenURL:     issuer.TokenURL(), // or Domain: "tenant.eu.auth0.com"
		ClientID:     "svc",
		ClientSecret: "s3cret",
		Audience:     "https://api.example.com/",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()

	resp, err := src.Client().Get(api.URL)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body))
	// Output: 200 hello, machine
}

// TokenContext bounds the wait for a token with a context; the fetch itself
// goes on for other callers if this one gives up.
func ExampleTokenSource_TokenContext() {
	issuer := m2mtest.NewServer(m2mtest.Client{ID: "svc", Secret: "s3cret", Audiences: []string{"https://api.example.com/"}})
	defer issuer.Close()
	src, err := m2mtoken.New(m2mtoken.Config{TokenURL: issuer.TokenURL(), ClientID: "svc", ClientSecret: "s3cret", Audience: "https://api.example.com/"})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tok, err := src.TokenContext(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tok.Type(), time.Until(tok.Expiry).Round(time.Hour))
	// Output: Bearer 24h0m0s
}

// Errors from the token endpoint wrap *oauth2.RetrieveError with Auth0's
// error code and description.
func ExampleTokenError() {
	issuer := m2mtest.NewServer(m2mtest.Client{ID: "svc", Secret: "s3cret", Audiences: []string{"https://api.example.com/"}})
	defer issuer.Close()
	src, err := m2mtoken.New(m2mtoken.Config{TokenURL: issuer.TokenURL(), ClientID: "svc", ClientSecret: "wrong", Audience: "https://api.example.com/"})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()

	_, err = src.Token()
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		fmt.Println(re.Response.StatusCode, re.ErrorCode, re.ErrorDescription)
	}
	// Output: 401 access_denied Unauthorized
}

// A cron job keeps its token in a file between runs, so that running every
// minute costs one token per token lifetime, not one per run.
func ExampleNewFileCache() {
	issuer := m2mtest.NewServer(m2mtest.Client{ID: "job", Secret: "s3cret", Audiences: []string{"https://api.example.com/"}})
	defer issuer.Close()
	dir, _ := os.MkdirTemp("", "m2mtoken-example")
	defer os.RemoveAll(dir)

	for run := 0; run < 3; run++ { // three runs of the job
		src, err := m2mtoken.New(m2mtoken.Config{
			TokenURL: issuer.TokenURL(), ClientID: "job", ClientSecret: "s3cret", Audience: "https://api.example.com/",
			Cache: m2mtoken.NewFileCache(dir), // m2mtoken.DefaultCacheDir() in real use
		})
		if err != nil {
			log.Fatal(err)
		}
		if _, err := src.Token(); err != nil {
			log.Fatal(err)
		}
		src.Close()
	}
	fmt.Println("tokens issued:", issuer.TokensIssued("job"))
	// Output: tokens issued: 1
}

// Transport drops in where oauth2.Transport was, over an existing client's
// transport (keeping its timeouts, proxy and TLS settings).
func ExampleTransport() {
	issuer := m2mtest.NewServer(m2mtest.Client{ID: "svc", Secret: "s3cret", Audiences: []string{"https://api.example.com/"}})
	defer issuer.Close()
	api := httptest.NewServer(issuer.Protect("https://api.example.com/", nil,
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "authorized") })))
	defer api.Close()
	src, err := m2mtoken.New(m2mtoken.Config{TokenURL: issuer.TokenURL(), ClientID: "svc", ClientSecret: "s3cret", Audience: "https://api.example.com/"})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()

	existing := &http.Client{Timeout: 10 * time.Second}
	c := *existing
	c.Transport = &m2mtoken.Transport{Source: src, Base: existing.Transport}
	resp, err := c.Get(api.URL)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body))
	// Output: 200 authorized
}

// With Config.DPoPKey, tokens are bound to the key (DPoP, RFC 9449): a
// stolen token is useless without it. The client sends a new proof with
// every request, and follows the servers' nonce challenges. Here the
// issuer requires DPoP, and nonces at the token endpoint and the API.
func Example_dPoP() {
	issuer := m2mtest.NewServer(m2mtest.Client{ID: "svc", Secret: "s3cret", Audiences: []string{"https://api.example.com/"}, RequireDPoP: true})
	defer issuer.Close()
	issuer.RequireDPoPNonce(true, true)
	api := httptest.NewServer(issuer.Protect("https://api.example.com/", nil,
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "hello, "+r.Header.Get("Authorization")[:4])
		})))
	defer api.Close()

	// In real use: key, err := m2mtoken.LoadPrivateKey("dpop.pem"), a P-256
	// key made with
	//   openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out dpop.pem
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	src, err := m2mtoken.New(m2mtoken.Config{
		TokenURL: issuer.TokenURL(), ClientID: "svc", ClientSecret: "s3cret", Audience: "https://api.example.com/",
		DPoPKey:     key,
		RequireDPoP: true, // a Bearer token would be an error
	})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()

	resp, err := src.Client().Get(api.URL)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	tok, _ := src.Token()
	fmt.Println(resp.StatusCode, string(body), tok.Type())
	// Output: 200 hello, DPoP DPoP
}

// An Observer sees what the source does, without any dependency: here the
// fetches and the Auth0 quota they leave. The m2mtokenotel module provides
// one that records OpenTelemetry metrics and spans.
func ExampleObserver() {
	issuer := m2mtest.NewServer(m2mtest.Client{ID: "svc", Secret: "s3cret", Audiences: []string{"https://api.example.com/"}})
	defer issuer.Close()
	issuer.SetClientQuota("svc", m2mtest.Quota{Bucket: "per_hour", Limit: 10})
	src, err := m2mtoken.New(m2mtoken.Config{
		TokenURL: issuer.TokenURL(), ClientID: "svc", ClientSecret: "s3cret", Audience: "https://api.example.com/",
		Observer: &m2mtoken.Observer{
			FetchDone: func(_ context.Context, f m2mtoken.FetchDoneInfo) {
				fmt.Printf("fetch (%s): from the %s after %d request(s), err=%v\n", f.Reason, f.Origin, f.Attempts, f.Err)
			},
			Limits: func(l m2mtoken.LimitsInfo) {
				if l.Quotas == nil {
					return // only the tenant-wide rate limit
				}
				for _, q := range l.Quotas.Client {
					fmt.Printf("quota %s: %d of %d left\n", q.Bucket, q.Remaining, q.Limit)
				}
			},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	src.Token()
	src.Token() // fresh: the observer hears nothing
	// Output:
	// quota per_hour: 9 of 10 left
	// fetch (first): from the endpoint after 1 request(s), err=<nil>
}
