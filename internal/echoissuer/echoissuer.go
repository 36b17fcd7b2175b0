// Package echoissuer is a token endpoint for tests whose tokens spell out
// the request they answer: audience, scopes (as a set), organization and
// every other parameter. A caller checks with [Spelled] that it got the
// token of exactly what it asked, which is how the pool's keys are tested
// in one process and across a shared cache (Redis).
package echoissuer

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Issuer is the endpoint, serving at any path of its URL.
type Issuer struct {
	*httptest.Server
	issued atomic.Int64
}

// notEchoed are the parameters of client authentication and the ones
// Spell names itself.
var notEchoed = []string{"grant_type", "client_id", "client_secret", "client_assertion", "client_assertion_type", "audience", "scope", "organization"}

// New starts an Issuer, closed when the test ends.
func New(t testing.TB) *Issuer {
	i := &Issuer{}
	i.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		f := r.PostForm
		params := url.Values{}
		for k, vs := range f {
			if !slices.Contains(notEchoed, k) {
				params[k] = vs
			}
		}
		spelled := Spell(f.Get("audience"), strings.Fields(f.Get("scope")), f.Get("organization"), params)
		time.Sleep(2 * time.Millisecond) // widen the window in which concurrent fetches overlap
		w.Header().Set("Content-Type", "application/json")
		// base64url: a token is a header-safe RFC 6750 token.
		fmt.Fprintf(w, `{"access_token":"%s.%d","token_type":"Bearer","expires_in":3600}`,
			base64.RawURLEncoding.EncodeToString([]byte(spelled)), i.issued.Add(1))
	}))
	t.Cleanup(i.Close)
	return i
}

// TokenURL is the Issuer's token endpoint.
func (i *Issuer) TokenURL() string { return i.URL + "/oauth/token" }

// Issued returns how many tokens the Issuer has issued.
func (i *Issuer) Issued() int64 { return i.issued.Load() }

// Spell writes a token request out canonically, scopes as a set.
func Spell(audience string, scopes []string, organization string, params url.Values) string {
	sc := slices.Clone(scopes)
	slices.Sort(sc)
	sc = slices.Compact(sc)
	return fmt.Sprintf("aud=%s;scope=%s;org=%s;params=%s", audience, strings.Join(sc, " "), organization, params.Encode())
}

// Spelled returns the request an Issuer's token spells.
func Spelled(token string) string {
	enc, _, _ := strings.Cut(token, ".")
	b, _ := base64.RawURLEncoding.DecodeString(enc)
	return string(b)
}
