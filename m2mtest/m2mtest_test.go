package m2mtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"

	"github.com/m2mtoken/m2mtoken/internal/jwt"
)

const aud = "https://api.example.com/"

func testServer(t *testing.T) *Server {
	s := NewServer(
		Client{ID: "svc", Secret: "pw", Audiences: []string{aud}, Scopes: []string{"read:messages", "write:messages"}, Organizations: []string{"org_1"}},
		Client{ID: "spa", Secret: "pw2", Audiences: []string{aud}, NoClientCredentials: true},
	)
	s.AddAPI("https://other.example.com/")
	t.Cleanup(s.Close)
	return s
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
}

func post(t *testing.T, c *http.Client, u string, form url.Values, basic ...string) answer {
	t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if len(basic) == 2 {
		req.SetBasicAuth(basic[0], basic[1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return answer{resp.StatusCode, resp.Header, body}
}

func good() url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "client_id": {"svc"}, "client_secret": {"pw"}, "audience": {aud}}
}

// verify checks tok against the server's published JWKS with go-jose, an
// independent verifier, and returns its claims.
func verify(t *testing.T, s *Server, c *http.Client, tok string) map[string]any {
	t.Helper()
	resp, err := c.Get(s.URL + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var disc map[string]any
	json.NewDecoder(resp.Body).Decode(&disc)
	resp.Body.Close()
	issuer, jwksURI := disc["issuer"].(string), disc["jwks_uri"].(string)
	resp, err = c.Get(jwksURI)
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	parsed, err := josejwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	keys := set.Key(parsed.Headers[0].KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q not in JWKS", parsed.Headers[0].KeyID)
	}
	var std josejwt.Claims
	var all map[string]any
	if err := parsed.Claims(keys[0].Key, &std, &all); err != nil {
		t.Fatalf("signature: %v", err)
	}
	if err := std.Validate(josejwt.Expected{Issuer: issuer, AnyAudience: josejwt.Audience{aud}, Time: time.Now()}); err != nil {
		t.Fatalf("claims: %v", err)
	}
	return all
}

func TestIssuesVerifiableAuth0Tokens(t *testing.T) {
	for _, tls := range []bool{false, true} {
		s := NewServer(Client{ID: "svc", Secret: "pw", Audiences: []string{aud}, Scopes: []string{"read:messages"}, Organizations: []string{"org_1"}})
		if tls {
			s.Close()
			s = NewTLSServer(Client{ID: "svc", Secret: "pw", Audiences: []string{aud}, Scopes: []string{"read:messages"}, Organizations: []string{"org_1"}})
		}
		defer s.Close()
		c := s.Client()
		form := good()
		form.Set("organization", "org_1")
		a := post(t, c, s.TokenURL(), form)
		if a.status != 200 || a.body["token_type"] != "Bearer" || a.body["expires_in"] != float64(86400) {
			t.Fatalf("tls=%v: %d %v", tls, a.status, a.body)
		}
		claims := verify(t, s, c, a.body["access_token"].(string))
		for k, want := range map[string]any{"iss": s.URL + "/", "sub": "svc@clients", "aud": aud, "azp": "svc", "scope": "read:messages", "gty": "client-credentials", "org_id": "org_1"} {
			if claims[k] != want {
				t.Errorf("tls=%v claim %s = %v, want %v", tls, k, claims[k], want)
			}
		}
		if life := claims["exp"].(float64) - claims["iat"].(float64); life < 86400 || life > 86401 || claims["jti"] == "" {
			t.Errorf("exp/iat/jti: %v", claims)
		}
		if s.TokensIssued("svc") != 1 || s.Requests() != 1 {
			t.Errorf("counters %d %d", s.TokensIssued("svc"), s.Requests())
		}
	}
}

func TestAuthMethodsAndBodies(t *testing.T) {
	s := testServer(t)
	c := s.Client()
	basic := url.Values{"grant_type": {"client_credentials"}, "audience": {aud}}
	if a := post(t, c, s.TokenURL(), basic, "svc", "pw"); a.status != 200 {
		t.Fatalf("basic: %d %v", a.status, a.body)
	}
	j, _ := json.Marshal(map[string]string{"grant_type": "client_credentials", "client_id": "svc", "client_secret": "pw", "audience": aud})
	resp, err := c.Post(s.TokenURL(), "application/json", strings.NewReader(string(j)))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("json: %v %v", resp, err)
	}
	resp.Body.Close()
	if a := post(t, c, s.TokenURL(), good(), "svc", "pw"); a.status != 400 || a.body["error"] != "invalid_request" {
		t.Fatalf("two auth methods: %d %v", a.status, a.body)
	}
}

func TestAuth0Errors(t *testing.T) {
	s := testServer(t)
	c := s.Client()
	with := func(k, v string) url.Values {
		f := good()
		if v == "" {
			f.Del(k)
		} else {
			f.Set(k, v)
		}
		return f
	}
	tests := []struct {
		name       string
		form       url.Values
		status     int
		code, desc string
	}{
		{"wrong secret", with("client_secret", "nope"), 401, "access_denied", "Unauthorized"},
		{"unknown client", with("client_id", "ghost"), 401, "access_denied", "Unauthorized"},
		{"no secret", with("client_secret", ""), 401, "access_denied", "Unauthorized"},
		{"grant not allowed", url.Values{"grant_type": {"client_credentials"}, "client_id": {"spa"}, "client_secret": {"pw2"}, "audience": {aud}}, 403, "unauthorized_client", "Grant type 'client_credentials' not allowed for the client."},
		{"unknown audience", with("audience", "https://nope/"), 403, "access_denied", "Service not enabled within domain: https://nope/"},
		{"no grant for audience", with("audience", "https://other.example.com/"), 403, "access_denied", `Client "svc" is not authorized to access resource server "https://other.example.com/".`},
		{"no audience", with("audience", ""), 403, "access_denied", "No audience parameter was provided, and no default audience has been configured"},
		{"scope not granted", with("scope", "admin"), 403, "access_denied", "Client has not been granted scopes: admin"},
		{"no grant type", with("grant_type", ""), 400, "invalid_request", "Missing required parameter: grant_type"},
		{"wrong grant type", with("grant_type", "password"), 403, "unsupported_grant_type", "Unsupported grant type: password"},
		{"no client id", with("client_id", ""), 400, "invalid_request", "Missing required parameter: client_id"},
		{"wrong organization", with("organization", "org_9"), 400, "invalid_request", `Client "svc" is not a member of organization "org_9"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := post(t, c, s.TokenURL(), tt.form)
			got := []any{a.status, a.body["error"], a.body["error_description"]}
			if diff := cmp.Diff([]any{tt.status, tt.code, tt.desc}, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if s.TokensIssued("svc") != 0 {
		t.Error("a token was issued")
	}
}

func TestMethodsPathsAndLimits(t *testing.T) {
	s := testServer(t)
	c := s.Client()
	resp, _ := c.Get(s.TokenURL())
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("GET: %d", resp.StatusCode)
	}
	resp, _ = c.Post(s.URL+"/nope", "text/plain", nil)
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("unknown path: %d", resp.StatusCode)
	}
	big := good()
	big.Set("pad", strings.Repeat("x", 100<<10))
	if a := post(t, c, s.TokenURL(), big); a.status != 413 {
		t.Errorf("oversized: %d", a.status)
	}
	resp, _ = c.Post(s.TokenURL(), "text/xml", strings.NewReader("<x/>"))
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("xml: %d", resp.StatusCode)
	}
}

func TestListen(t *testing.T) {
	s, err := Listen("127.0.0.1:0", Client{ID: "svc", Secret: "pw", Audiences: []string{aud}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") {
		t.Fatal(s.URL)
	}
	if a := post(t, http.DefaultClient, s.TokenURL(), good()); a.status != 200 {
		t.Fatal(a.status)
	}
}

func TestVerifyAndProtect(t *testing.T) {
	s := testServer(t)
	c := s.Client()
	tok := post(t, c, s.TokenURL(), good()).body["access_token"].(string)
	if _, err := s.Verify(tok, aud); err != nil {
		t.Fatal(err)
	}
	other := NewServer(Client{ID: "svc", Secret: "pw", Audiences: []string{aud}})
	defer other.Close()
	foreign := post(t, other.Client(), other.TokenURL(), good()).body["access_token"].(string)
	expired, _ := s.Sign(map[string]any{"iss": s.Issuer(), "aud": aud, "exp": time.Now().Add(-time.Minute).Unix()})
	wrongAud, _ := s.Sign(map[string]any{"iss": s.Issuer(), "aud": "https://other/", "exp": time.Now().Add(time.Minute).Unix()})
	for name, bad := range map[string]string{"foreign key": foreign, "expired": expired, "audience": wrongAud, "garbage": "a.b.c", "tampered": tok[:len(tok)-4] + "AAAA"} {
		if _, err := s.Verify(bad, aud); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	api := httptestServer(t, s.Protect(aud, []string{"read:messages"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })))
	scoped := httptestServer(t, s.Protect(aud, []string{"admin"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	for _, tt := range []struct {
		url, tok string
		want     int
		chall    string
	}{
		{api, "", 401, `Bearer realm="api"`},
		{api, tok, 200, ""},
		{api, expired, 401, `error="invalid_token"`},
		{scoped, tok, 403, `error="insufficient_scope"`},
	} {
		req, _ := http.NewRequest("GET", tt.url, nil)
		if tt.tok != "" {
			req.Header.Set("Authorization", "Bearer "+tt.tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want || !strings.Contains(resp.Header.Get("WWW-Authenticate"), tt.chall) {
			t.Errorf("got %d %q, want %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), tt.want, tt.chall)
		}
	}
	s.setNow(func() time.Time { return time.Now().Add(25 * time.Hour) })
	if _, err := s.Verify(tok, aud); err == nil {
		t.Error("token accepted after its lifetime")
	}
}

func httptestServer(t *testing.T, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestPrivateKeyJWTClients(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s := NewServer(Client{ID: "pk", PublicKey: key.Public(), Audiences: []string{aud}})
	defer s.Close()
	c := s.Client()
	now := time.Now()
	sign := func(mod func(map[string]any), alg string) string {
		cl := map[string]any{"iss": "pk", "sub": "pk", "aud": s.Issuer(), "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": randomID()}
		if mod != nil {
			mod(cl)
		}
		tok, err := jwt.Sign(key, alg, "", cl)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	form := func(assertion string) url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "client_id": {"pk"}, "audience": {aud},
			"client_assertion_type": {jwtBearer}, "client_assertion": {assertion}}
	}
	good := sign(nil, "ES256")
	if a := post(t, c, s.TokenURL(), form(good)); a.status != 200 {
		t.Fatalf("good assertion: %d %v", a.status, a.body)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	foreign, _ := jwt.Sign(other, "ES256", "", map[string]any{"iss": "pk", "sub": "pk", "aud": s.Issuer(), "exp": now.Add(time.Minute).Unix(), "jti": "x"})
	tests := map[string]struct {
		assertion, want string
	}{
		"replay":       {good, "jti has been used before"},
		"foreign key":  {foreign, "does not verify"},
		"expired":      {sign(func(m map[string]any) { m["exp"] = now.Add(-time.Minute).Unix() }, "ES256"), "expired"},
		"too long":     {sign(func(m map[string]any) { m["exp"] = now.Add(time.Hour).Unix() }, "ES256"), "more than 5 minutes"},
		"wrong aud":    {sign(func(m map[string]any) { m["aud"] = "https://elsewhere/" }, "ES256"), "aud must be"},
		"iss mismatch": {sign(func(m map[string]any) { m["sub"] = "someone" }, "ES256"), "iss and sub"},
		"future iat":   {sign(func(m map[string]any) { m["iat"] = now.Add(time.Hour).Unix() }, "ES256"), "iat is in the future"},
		"no jti":       {sign(func(m map[string]any) { delete(m, "jti") }, "ES256"), "no jti"},
		"garbage":      {"not.a.jwt", "does not parse"},
	}
	for name, tt := range tests {
		a := post(t, c, s.TokenURL(), form(tt.assertion))
		if a.status != 401 || a.body["error"] != "invalid_client" || !strings.Contains(a.body["error_description"].(string), tt.want) {
			t.Errorf("%s: %d %v, want 401 invalid_client %q", name, a.status, a.body, tt.want)
		}
	}
	mixed := form(sign(nil, "ES256"))
	mixed.Set("client_secret", "x")
	if a := post(t, c, s.TokenURL(), mixed); a.status != 400 {
		t.Errorf("assertion and secret: %d", a.status)
	}
	if s.TokensIssued("pk") != 1 {
		t.Errorf("%d issued", s.TokensIssued("pk"))
	}
}

// TestQuotas: Auth0's per-client and per-organization token quotas, with
// their headers on every answer and 429 "quota exceeded" past them; the
// buckets refill at the end of their periods.
func TestQuotas(t *testing.T) {
	s := testServer(t)
	c := s.Client()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s.SetClock(func() time.Time { return now })
	s.SetClientQuota("svc", Quota{Bucket: "per_hour", Limit: 2}, Quota{Bucket: "per_day", Limit: 3})
	type got struct {
		Status                int
		Client, Org, Retry, E string
	}
	do := func(form url.Values) got {
		a := post(t, c, s.TokenURL(), form)
		e, _ := a.body["error_description"].(string)
		return got{a.status, a.header.Get("Auth0-Client-Quota-Limit"), a.header.Get("Auth0-Organization-Quota-Limit"), a.header.Get("Retry-After"), e}
	}
	want := []got{
		{200, "b=per_hour;q=2;r=1;t=3600,b=per_day;q=3;r=2;t=86400", "", "", ""},
		{200, "b=per_hour;q=2;r=0;t=3600,b=per_day;q=3;r=1;t=86400", "", "", ""},
		{429, "b=per_hour;q=2;r=0;t=3600,b=per_day;q=3;r=1;t=86400", "", "3600", "Client quota exceeded"},
	}
	for i, w := range want {
		if diff := cmp.Diff(w, do(good())); diff != "" {
			t.Errorf("request %d (-want +got):\n%s", i+1, diff)
		}
	}
	// A wrong audience is refused, with the headers, and counts nothing.
	bad := good()
	bad.Set("audience", "https://other.example.com/")
	if g := do(bad); g.Status != 403 || g.Client != "b=per_hour;q=2;r=0;t=3600,b=per_day;q=3;r=1;t=86400" {
		t.Errorf("403: %+v", g)
	}
	// An unknown client learns nothing about quotas.
	if g := do(url.Values{"grant_type": {"client_credentials"}, "client_id": {"svc"}, "client_secret": {"wrong"}, "audience": {aud}}); g.Status != 401 || g.Client != "" {
		t.Errorf("401: %+v", g)
	}
	now = now.Add(time.Hour) // per_hour refills; per_day has 1 left
	if diff := cmp.Diff(got{200, "b=per_hour;q=2;r=1;t=3600,b=per_day;q=3;r=0;t=82800", "", "", ""}, do(good())); diff != "" {
		t.Error(diff)
	}
	if g := do(good()); g.Status != 429 || g.Retry != "82800" {
		t.Errorf("per_day exhausted: %+v", g)
	}
	if s.TokensIssued("svc") != 3 {
		t.Errorf("issued %d, want 3", s.TokensIssued("svc"))
	}

	// Organizations: their own header and answer.
	s.SetClientQuota("svc")
	s.SetOrganizationQuota("org_1", Quota{Bucket: "per_hour", Limit: 1, Period: 10 * time.Minute})
	org := good()
	org.Set("organization", "org_1")
	if g := do(org); g.Status != 200 || g.Client != "" || g.Org != "b=per_hour;q=1;r=0;t=600" {
		t.Errorf("org: %+v", g)
	}
	if g := do(org); g.Status != 429 || g.E != "Organization quota exceeded" || g.Retry != "600" {
		t.Errorf("org exhausted: %+v", g)
	}
	if g := do(good()); g.Status != 200 || g.Org != "" {
		t.Errorf("without organization: %+v", g)
	}
}
