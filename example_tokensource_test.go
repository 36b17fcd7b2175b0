package m2mtoken_test

import (
	"fmt"
	"log"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// Invalidate drops a token the API refused (revoked, say), so that the next
// call fetches a new one. It compares and swaps: a token that is no longer
// current is ignored, so many callers invalidating the same token cost one
// fetch. Client does this by itself on a 401.
func ExampleTokenSource_Invalidate() {
	issuer := m2mtest.NewServer(m2mtest.Client{ID: "svc", Secret: "s3cret", Audiences: []string{"https://api.example.com/"}})
	defer issuer.Close()
	src, err := m2mtoken.New(m2mtoken.Config{TokenURL: issuer.TokenURL(), ClientID: "svc", ClientSecret: "s3cret", Audience: "https://api.example.com/"})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()

	old, err := src.Token()
	if err != nil {
		log.Fatal(err)
	}
	src.Invalidate(old) // the API answered 401 to old
	src.Invalidate(old) // a second caller saw the same 401: no effect
	tok, err := src.Token()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("new token:", tok.AccessToken != old.AccessToken)
	fmt.Println("tokens issued:", issuer.TokensIssued("svc"))
	// Output:
	// new token: true
	// tokens issued: 2
}
