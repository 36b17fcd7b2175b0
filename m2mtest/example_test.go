package m2mtest_test

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"time"

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

// A secret rotated the way Auth0 rotates one, with its propagation delay:
// the old secret is refused at once and the new one works thirty seconds
// later, by the server's clock, so that a test steps through it without
// sleeping.
func ExampleServer_RotateSecret() {
	iss := m2mtest.NewServer(m2mtest.Client{ID: "svc", Secret: "old", Audiences: []string{"https://api.example.com/"}})
	defer iss.Close()
	now := time.Now()
	iss.SetClock(func() time.Time { return now })
	status := func(secret string) int {
		resp, err := http.PostForm(iss.TokenURL(), url.Values{"grant_type": {"client_credentials"},
			"client_id": {"svc"}, "client_secret": {secret}, "audience": {"https://api.example.com/"}})
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	if err := iss.RotateSecret("svc", "new", m2mtest.Rotation{NewAfter: 30 * time.Second}); err != nil {
		log.Fatal(err)
	}
	fmt.Println(status("old"), status("new"))
	now = now.Add(30 * time.Second)
	fmt.Println(status("old"), status("new"))
	// Output:
	// 401 401
	// 401 200
}

// A workload identity: the client accepts a Kubernetes service account's
// token as its client assertion. A test writes the platform's token to
// the file a client reads, as the kubelet would.
func ExamplePlatform() {
	cluster := m2mtest.NewPlatform("https://kubernetes.default.svc.cluster.local")
	iss := m2mtest.NewServer(m2mtest.Client{ID: "svc", Audiences: []string{"https://api.example.com/"}})
	defer iss.Close()
	if err := iss.Trust("svc", cluster.Trust("system:serviceaccount:prod:billing")); err != nil {
		log.Fatal(err)
	}
	tok, err := cluster.Token("system:serviceaccount:prod:billing", "", time.Hour) // aud api://AzureADTokenExchange
	if err != nil {
		log.Fatal(err)
	}
	resp, err := http.PostForm(iss.TokenURL(), url.Values{"grant_type": {"client_credentials"}, "client_id": {"svc"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {tok}, "audience": {"https://api.example.com/"}})
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, iss.TokensIssued("svc"))
	// Output: 200 1
}
