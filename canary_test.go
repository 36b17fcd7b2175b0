package m2mtoken

import (
	"context"
	"crypto/elliptic"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// canaryToken is the access token the canary endpoint issues.
const canaryToken = "CANARY-TOKEN-5e1f0c9a7b"

// TestSecretCanary drives every public path with a known secret, a known
// token and a DPoP key, collects everything the library prints, logs,
// returns or stores, and asserts that neither the secret, the token nor
// the private key appears anywhere. (TestDPoPKeyCanary does the same over
// the DPoP-only paths: nonces, DPoP tokens, proofs.)
func TestSecretCanary(t *testing.T) {
	dpopKey := ecKey(t, elliptic.P256())
	d, dDecimal := privateScalar(t, dpopKey)
	logs := &logBuffer{}
	e := newEndpoint(t)
	dir := t.TempDir()
	var outputs []string
	collect := func(vs ...any) {
		for _, v := range vs {
			for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
				outputs = append(outputs, fmt.Sprintf(verb, v))
			}
		}
	}
	// An observer sees every event; each is printed like the rest.
	var obsMu sync.Mutex
	var observed []any
	see := func(v any) { obsMu.Lock(); observed = append(observed, v); obsMu.Unlock() }
	observer := &Observer{
		FetchStart:   func(ctx context.Context, i FetchStartInfo) context.Context { see(i); return ctx },
		FetchDone:    func(_ context.Context, i FetchDoneInfo) { see(i) },
		AttemptStart: func(ctx context.Context, i AttemptStartInfo) context.Context { see(i); return ctx },
		AttemptDone:  func(_ context.Context, i AttemptDoneInfo) { see(i) },
		Wait:         func(_ context.Context, i WaitInfo) { see(i) },
		Invalidate:   func(i InvalidateInfo) { see(i) },
		CacheError:   func(i CacheErrorInfo) { see(i) },
		Limits:       func(i LimitsInfo) { see(i); see(i.RateLimit); see(i.Quotas) },
		Closed:       func(i ClosedInfo) { see(i) },
	}
	answers := []func(w http.ResponseWriter){
		func(w http.ResponseWriter) { w.WriteHeader(500) },
		func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "1")
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.WriteHeader(429)
			io.WriteString(w, `{"error":"too_many_requests","error_description":"Rate limit exceeded."}`)
		},
		func(w http.ResponseWriter) {
			w.Header().Set("Auth0-Client-Quota-Limit", "b=per_hour;q=10;r=0;t=3540")
			w.WriteHeader(429)
			io.WriteString(w, `{"error":"too_many_requests","error_description":"Client quota exceeded"}`)
		},
		func(w http.ResponseWriter) {
			io.WriteString(w, `{"access_token":"`+canaryToken+`","token_type":"mac"}`)
		},
		func(w http.ResponseWriter) { io.WriteString(w, `{"access_token":"`+canaryToken+`","tok`) },
		func(w http.ResponseWriter) { io.WriteString(w, `<html>`+canaryToken+`</html>`) },
		func(w http.ResponseWriter) {
			io.WriteString(w, `{"error":"invalid_client","access_token":"`+canaryToken+`"}`)
		},
		func(w http.ResponseWriter) {
			w.Header().Set("Location", "https://elsewhere.example/")
			w.WriteHeader(307)
		},
	}
	permanent := []struct {
		status     int
		code, desc string
	}{
		{400, "invalid_request", "Missing required parameter: grant_type"},
		{401, "access_denied", "Unauthorized"},
		{403, "unauthorized_client", "Grant type 'client_credentials' not allowed for the client."},
		{403, "access_denied", "Service not enabled within domain: https://api/"},
	}
	for _, p := range permanent {
		answers = append(answers, func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(p.status)
			fmt.Fprintf(w, `{"error":%q,"error_description":%q}`, p.code, p.desc)
		})
	}
	var current func(w http.ResponseWriter)
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
		if current != nil {
			current(w)
			return true
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":100,"scope":"read"}`, canaryToken)
		return true
	})
	for _, method := range []AuthMethod{ClientSecretPost, ClientSecretBasic} {
		for _, answer := range answers {
			current = answer
			s, _ := testSource(t, e, func(c *Config) {
				c.Logger = logs.logger()
				c.AuthMethod = method
				c.MaxAttempts = 2
				c.Cache = NewFileCache(dir)
				c.DPoPKey = dpopKey
				c.Observer = observer
			})
			_, err := s.Token()
			if err == nil {
				t.Fatal("a failing answer gave a token")
			}
			var te *TokenError
			var re *oauth2.RetrieveError
			errors.As(err, &te)
			errors.As(err, &re)
			collect(err, te, s.Stats())
			if re != nil {
				outputs = append(outputs, re.Error())
			}
		}
	}
	// Success, 401 recovery, a stale refresh and a cancelled wait.
	current = nil
	s, clk := testSource(t, e, func(c *Config) {
		c.Logger = logs.logger()
		c.Cache = NewFileCache(dir)
		c.DPoPKey = dpopKey
		c.Observer = observer
	})
	tok, err := s.Token()
	if err != nil || tok.AccessToken != canaryToken {
		t.Fatalf("%v %v", tok, err)
	}
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(401) }))
	defer api.Close()
	tr := &Transport{Source: s}
	if resp, err := (&http.Client{Transport: tr}).Get(api.URL); err == nil {
		resp.Body.Close()
	}
	clk.Advance(85 * time.Second)
	s.Token()
	waitBackground(s)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.Invalidate(tok)
	_, werr := s.TokenContext(ctx)
	st := s.Stats()
	collect(s.c.cfg, &s.c.cfg, s, &Entry{AccessToken: canaryToken}, st, st.RateLimit, s.c.cfg.AuthMethod, tr, werr, NewFileCache(dir))
	slog.New(slog.NewJSONHandler(logs, nil)).Info("values", "config", s.c.cfg, "entry", &Entry{AccessToken: canaryToken}, "stats", st)
	outputs = append(outputs, logs.String())
	s.Close()
	obsMu.Lock()
	if len(observed) < 50 {
		t.Fatalf("the observer saw only %d events", len(observed))
	}
	collect(observed...)
	obsMu.Unlock()

	all := strings.Join(outputs, "\n")
	for _, canary := range []string{testSecret, canaryToken, fmt.Sprintf("%x", testSecret), fmt.Sprintf("%x", canaryToken),
		fmt.Sprintf("%x", d), base64.RawURLEncoding.EncodeToString(d), base64.StdEncoding.EncodeToString(d), dDecimal} {
		if i := strings.Index(all, canary); i >= 0 {
			t.Fatalf("output reveals %q:\n...%s...", canary, all[max(0, i-300):min(len(all), i+100)])
		}
	}
	if !strings.Contains(logs.String(), Fingerprint(canaryToken)) {
		t.Error("the debug log shows no fingerprint of the token")
	}
	// Cache files hold the token (that is their job) but never the secret.
	files, _ := os.ReadDir(dir)
	for _, f := range files {
		b, _ := os.ReadFile(filepath.Join(dir, f.Name()))
		if strings.Contains(string(b), testSecret) || strings.Contains(f.Name(), "client-1") {
			t.Fatalf("cache file %s reveals the secret or client", f.Name())
		}
	}
	if len(outputs) < 100 {
		t.Fatalf("only %d outputs collected", len(outputs))
	}
}
