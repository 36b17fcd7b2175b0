package m2mtest_test

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// An issuer for a test, an API it protects, and faults on demand: the next
// two token requests fail with 503, and the client's retries get through.
func ExampleNewServer() {
	iss := m2mtest.NewServer(m2mtest.Client{ID: "svc", Secret: "pw",
		Audiences: []string{"https://api.example.com/"}, Scopes: []string{"read:messages"}})
	defer iss.Close()
	yourHandler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	api := httptest.NewServer(iss.Protect("https://api.example.com/", []string{"read:messages"}, yourHandler))
	defer api.Close()
	iss.FailNext(2, m2mtest.Fault{Status: 503}) // the next two token requests fail

	src, err := m2mtoken.New(m2mtoken.Config{TokenURL: iss.TokenURL(), ClientID: "svc", ClientSecret: "pw",
		Audience: "https://api.example.com/"})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	resp, err := src.Client().Get(api.URL) // 200, after two retries
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, iss.TokensIssued("svc"), iss.Requests())
	// Output: 200 1 3
}
