package m2mtoken

import (
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// TestTokenWithControlCharactersRefused: an issuer's access token with
// CR/LF in it would become a header of its own in every request that
// carries it (m2mtoken token --header | curl -H @-, the agent's ?url=
// answer). It must be refused as a permanent error that names the field
// and quotes nothing of the token.
func TestTokenWithControlCharactersRefused(t *testing.T) {
	for name, tok := range map[string]string{
		"CRLF":  `tok\r\nX-Injected: 1`,
		"LF":    `tok\nX-Injected: 1`,
		"NUL":   `tok\u0000x`,
		"space": `tok X-Injected`,
		"DEL":   "tok\u007f",
	} {
		t.Run(name, func(t *testing.T) {
			e := newEndpoint(t)
			e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"access_token":"%s","token_type":"Bearer","expires_in":3600}`, tok)
				return true
			})
			s, _ := testSource(t, e, nil)
			got, err := s.Token()
			if err == nil {
				t.Fatalf("token %q accepted", got.AccessToken)
			}
			var te *TokenError
			if !errors.As(err, &te) || te.Temporary {
				t.Fatalf("error %v: want a permanent *TokenError", err)
			}
			if !strings.Contains(err.Error(), "access_token") || strings.Contains(err.Error(), "X-Injected") {
				t.Fatalf("error %q: want it to name access_token and quote none of it", err)
			}
			if _, err := s.Token(); err == nil || e.count() != 1 {
				t.Fatalf("asked again: %d requests, err %v; want the error remembered", e.count(), err)
			}
		})
	}
}

// TestRealIssuersTokensSent: the tokens real issuers send beyond RFC
// 6750's b64token (Salesforce's '!', X's percent-encoded '+' and '=',
// ':' and ',' of other opaque tokens, every visible ASCII character) are
// taken, go into the Authorization header unchanged, and are read back
// from a file cache.
func TestRealIssuersTokensSent(t *testing.T) {
	var every strings.Builder
	for c := byte(0x21); c <= 0x7e; c++ {
		every.WriteByte(c)
	}
	for name, tok := range map[string]string{
		"salesforce":    "00Dxx0000001gPL!AR8AQJXg5oj8jXSgxJfA0lBog.39AsX_KUYr0hbXLqWvvhDBH3aJdJfsVrIsS0dZcbuA2cDHtLHqMcGM3gM_3zjLu7B0yeR",
		"x app-only":    "AAAAAAAAAAAAAAAAAAAAAMLheAAAAAAA0%2BuSeid%2BULvsea4JtiGRiSDSJSI%3DEUifiRBkKG5E2XzMDjRfl76ZC9Ub0wnz4XsNiRVBChTYbJcE3F",
		"colon":         "a:b",
		"comma":         "a,b",
		"b64token":      "AZaz09-._~+/tok==",
		"every visible": every.String(),
	} {
		t.Run(name, func(t *testing.T) {
			e := newEndpoint(t)
			e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
				w.Header().Set("Content-Type", "application/json")
				json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3600})
				return true
			})
			dir := t.TempDir()
			s, _ := testSource(t, e, func(c *Config) { c.Cache = NewFileCache(dir) })
			var sent []string
			api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				sent = r.Header.Values("Authorization")
			}))
			defer api.Close()
			resp, err := (&http.Client{Transport: &Transport{Source: s}}).Get(api.URL)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			resp.Body.Close()
			if len(sent) != 1 || sent[0] != "Bearer "+tok {
				t.Fatalf("the API got %q, want %q", sent, "Bearer "+tok)
			}
			// Another source of the client reads it from the file cache.
			s2, _ := testSource(t, e, func(c *Config) { c.Cache = NewFileCache(dir) })
			if got, err := s2.Token(); err != nil || got.AccessToken != tok || e.count() != 1 {
				t.Fatalf("from the cache: %v, %d requests", err, e.count())
			}
		})
	}
}

// TestJWTExpiryClamped: an endpoint answers a JWT whose exp is in the
// year 9999, with no expires_in. The token must be kept no longer than an
// expires_in would be (366 days).
func TestJWTExpiryClamped(t *testing.T) {
	jwt := b64(`{"alg":"none"}`) + "." + b64(`{"exp":253402300799}`) + ".sig"
	e := newEndpoint(t)
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":"%s","token_type":"Bearer"}`, jwt)
		return true
	})
	s, clk := testSource(t, e, nil)
	tok, err := s.Token()
	if err != nil {
		t.Fatal(err)
	}
	if limit := clk.Now().Add(366 * 24 * time.Hour); tok.Expiry.After(limit) {
		t.Fatalf("expiry %v: taken unclamped (limit %v)", tok.Expiry, limit)
	}
}

// echoSecret is a client secret with characters that form, JSON and
// Basic encoding each change.
const echoSecret = `p@ss w/rd+CANARY&="<%é>-0123456789`

// TestEchoingEndpointShowsNoSecret: a token endpoint copies the request
// into its answer (error_description, a Location header, a 5xx body, a
// 200's fields), to get the secret or the client assertion into errors,
// logs and caches. Everything taken from an answer must be scrubbed of the
// credential in every form the request carried it: raw, form-encoded,
// JSON-escaped, inside the Basic header, and cut short by truncation.
func TestEchoingEndpointShowsNoSecret(t *testing.T) {
	type echo func(w http.ResponseWriter, body, auth string, form url.Values)
	answers := map[string]echo{
		"error_description": func(w http.ResponseWriter, body, auth string, form url.Values) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(400)
			json.NewEncoder(w).Encode(map[string]string{"error": "invalid_request", "error_description": "you sent " + body + " with " + auth,
				"error_uri": "https://x/?" + body})
		},
		"decoded form": func(w http.ResponseWriter, body, auth string, form url.Values) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(401)
			json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client", "error_description": fmt.Sprintf("bad %q %q", form.Get("client_secret"), form.Get("client_assertion"))})
		},
		"cut at 300": func(w http.ResponseWriter, body, auth string, form url.Values) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(403)
			sec := form.Get("client_secret") + form.Get("client_assertion")
			if auth != "" {
				sec = auth
			}
			json.NewEncoder(w).Encode(map[string]string{"error": "access_denied", "error_description": strings.Repeat("x", 290) + sec})
		},
		"Location": func(w http.ResponseWriter, body, auth string, form url.Values) {
			w.Header().Set("Location", "https://elsewhere.example/?"+body+"&a="+auth)
			w.Header().Set("X-Echo", auth)
			w.WriteHeader(302)
		},
		"5xx body": func(w http.ResponseWriter, body, auth string, form url.Values) {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(502)
			fmt.Fprintf(w, "upstream said: %s %s %s", body, auth, form.Get("client_secret"))
		},
		"200 error": func(w http.ResponseWriter, body, auth string, form url.Values) {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]string{"error": "server_error", "error_description": body + auth})
		},
		"200 token": func(w http.ResponseWriter, body, auth string, form url.Values) {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{"access_token": "tok", "token_type": "Bearer", "expires_in": 3600,
				"echo": body, "nested": map[string]any{"auth": auth, "list": []any{form.Get("client_secret"), form.Get("client_assertion")}}})
		},
	}
	key := ecKey(t, elliptic.P256())
	methods := map[string]func(*Config){
		"post":  func(c *Config) {},
		"basic": func(c *Config) { c.AuthMethod = ClientSecretBasic },
		"json":  func(c *Config) { c.JSONBody = true },
		"private_key_jwt": func(c *Config) {
			c.AuthMethod, c.ClientSecret, c.PrivateKey, c.AssertionAudience = PrivateKeyJWT, "", key, "https://issuer.example/"
		},
	}
	for mname, mod := range methods {
		for aname, answer := range answers {
			t.Run(mname+"/"+aname, func(t *testing.T) {
				var mu sync.Mutex
				var forms []string // every form of the credential that was sent
				e := newEndpoint(t)
				e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
					return false
				})
				e.Server.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					raw, _ := io.ReadAll(r.Body)
					form, _ := url.ParseQuery(string(raw))
					if r.Header.Get("Content-Type") == "application/json" {
						var m map[string]string
						json.Unmarshal(raw, &m)
						form = url.Values{}
						for k, v := range m {
							form.Set(k, v)
						}
					}
					auth := r.Header.Get("Authorization")
					mu.Lock()
					for _, v := range []string{form.Get("client_secret"), form.Get("client_assertion"), strings.TrimPrefix(auth, "Basic ")} {
						if v != "" {
							forms = append(forms, v, url.QueryEscape(v), v[:len(v)/2])
						}
					}
					mu.Unlock()
					answer(w, string(raw), auth, form)
				})
				logs := &logBuffer{}
				dir := t.TempDir()
				s, _ := testSource(t, e, func(c *Config) {
					c.ClientSecret = echoSecret
					c.MaxAttempts = 1
					c.Logger = logs.logger()
					c.Cache = NewFileCache(dir)
					mod(c)
				})
				tok, err := s.Token()
				var shown []string
				shown = append(shown, logs.String(), fmt.Sprintf("%v|%+v|%#v", err, err, err))
				if tok != nil {
					shown = append(shown, fmt.Sprintf("%v", tok.Extra("echo")), fmt.Sprintf("%v", tok.Extra("nested")))
				}
				var re *oauth2.RetrieveError
				if errors.As(err, &re) {
					shown = append(shown, string(re.Body), re.ErrorDescription, re.ErrorURI, re.Error())
					if re.Response != nil {
						shown = append(shown, fmt.Sprint(re.Response.Header))
						if re.Response.Request != nil {
							shown = append(shown, fmt.Sprint(re.Response.Request.Header))
						}
					}
				}
				if st := s.Stats(); true {
					shown = append(shown, fmt.Sprintf("%+v", st))
				}
				files, _ := os.ReadDir(dir)
				for _, f := range files {
					b, _ := os.ReadFile(filepath.Join(dir, f.Name()))
					shown = append(shown, string(b))
				}
				mu.Lock()
				defer mu.Unlock()
				if len(forms) == 0 {
					t.Fatal("the endpoint saw no credential")
				}
				forms = append(forms, echoSecret, url.QueryEscape(echoSecret), url.PathEscape(echoSecret), echoSecret[:12])
				for _, out := range shown {
					for _, f := range forms {
						if len(f) >= 8 && strings.Contains(out, f) {
							t.Fatalf("the credential (%.12s...) appears in %.300q", f, out)
						}
					}
				}
			})
		}
	}
}

// TestEchoedSecretNotInLeaseStatus: the fetch lease's status, which a
// fleet's Redis (in plain text, even with WithEncryptionKey) or the file
// cache's lock file holds, is the last failed attempt: an endpoint that
// echoes the secret into its 503 must not put it there.
func TestEchoedSecretNotInLeaseStatus(t *testing.T) {
	e := newEndpoint(t)
	gate := make(chan struct{})
	e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
		if n == 1 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			json.NewEncoder(w).Encode(map[string]string{"error": "temporarily_unavailable", "error_description": "busy; you sent " + r.PostForm.Encode()})
			return true
		}
		<-gate
		return false
	})
	s, clk := testSource(t, e, func(c *Config) { c.ClientSecret = echoSecret })
	k := newMemLeaser(clk.Now)
	s.c.cache = k
	s.c.cfg.LeaseTTL = 900 * time.Millisecond
	done := make(chan error, 1)
	go func() { _, err := s.Token(); done <- err }()
	eventually(t, "the second attempt", func() bool { return e.count() == 2 })
	for range 5 {
		clk.Advance(300 * time.Millisecond)
	}
	k.mu.Lock()
	keeps := append([]string(nil), k.keeps...)
	k.mu.Unlock()
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(keeps) == 0 || !strings.Contains(keeps[len(keeps)-1], "busy; you sent") {
		t.Fatalf("statuses %q: want the failed attempt in them", keeps)
	}
	for _, st := range keeps {
		for _, f := range []string{echoSecret, url.QueryEscape(echoSecret), echoSecret[:12]} {
			if strings.Contains(st, f) {
				t.Fatalf("the lease status holds the secret: %q", st)
			}
		}
	}
	t.Logf("lease status: %s", keeps[len(keeps)-1])
}

// TestAnswerTextIsEscaped: an endpoint's error and error_description
// carry ESC sequences that clear or recolour a terminal, CR and LF that
// forge log lines, a right-to-left override that reverses what follows,
// for TokenError.Error(), the log and stderr to show. Everything taken
// from an answer must be shown with its control characters escaped.
func TestAnswerTextIsEscaped(t *testing.T) {
	hostile := "\x1b[2J\x1b[31mrotate the secret at https://evil.example/rotate\r\nlevel=ERROR msg=forged\u202eexe.txt\x07"
	for name, answer := range map[string]func(w http.ResponseWriter){
		"error_description": func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(400)
			json.NewEncoder(w).Encode(map[string]string{"error": "invalid_request\x1b[0m", "error_description": hostile})
		},
		"200 error": func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]string{"error": "server_error", "error_description": hostile})
		},
		"form-encoded": func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/x-www-form-urlencoded")
			w.WriteHeader(403)
			io.WriteString(w, url.Values{"error": {"access_denied\r\nX: y"}, "error_description": {hostile}}.Encode())
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEndpoint(t)
			e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool { answer(w); return true })
			logs := &logBuffer{}
			s, _ := testSource(t, e, func(c *Config) { c.Logger = logs.logger() })
			_, err := s.Token()
			var te *TokenError
			if !errors.As(err, &te) {
				t.Fatalf("got %v, want a *TokenError", err)
			}
			for what, text := range map[string]string{"Error()": err.Error(), "Code": te.Code, "Description": te.Description,
				"%+v": fmt.Sprintf("%+v", err), "log": strings.ReplaceAll(logs.String(), "\n", "")} {
				for _, r := range text {
					if r < ' ' || r == 0x7f || r == '\u202e' {
						t.Fatalf("%s carries %U from the answer: %q", what, r, text)
					}
				}
			}
			if !strings.Contains(err.Error(), `\x1b[2J\x1b[31mrotate the secret`) || !strings.Contains(err.Error(), `\r\nlevel=ERROR`) {
				t.Fatalf("the description is not shown escaped: %s", err)
			}
			t.Logf("%s", err)
		})
	}
}

// TestEchoedSecretInHexOrPercentScrubbed: an endpoint that echoed the
// secret in hex, or with every byte percent-encoded, got it past the
// scrubber, which knew only the encodings a request uses.
func TestEchoedSecretInHexOrPercentScrubbed(t *testing.T) {
	allPercent := func(s, digits string) string {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			b.WriteString("%" + string(digits[s[i]>>4]) + string(digits[s[i]&15]))
		}
		return b.String()
	}
	hexOf := func(s string) string { return fmt.Sprintf("%x", s) }
	forms := map[string]string{
		"hex":                   hexOf(echoSecret),
		"HEX":                   strings.ToUpper(hexOf(echoSecret)),
		"%XX":                   allPercent(echoSecret, "0123456789ABCDEF"),
		"%xx":                   allPercent(echoSecret, "0123456789abcdef"),
		"hex of the form body":  hexOf(url.QueryEscape(echoSecret)),
		"%XX then form-encoded": url.QueryEscape(allPercent(echoSecret, "0123456789ABCDEF")),
	}
	for name, form := range forms {
		t.Run(name, func(t *testing.T) {
			e := newEndpoint(t)
			e.setHandler(func(w http.ResponseWriter, r *http.Request, n int64) bool {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(400)
				json.NewEncoder(w).Encode(map[string]string{"error": "invalid_request", "error_description": "you sent " + form})
				return true
			})
			s, _ := testSource(t, e, func(c *Config) { c.ClientSecret = echoSecret })
			_, err := s.Token()
			if err == nil || strings.Contains(err.Error(), form) || strings.Contains(err.Error(), form[:len(form)/2]) {
				t.Fatalf("the secret's %s form is shown: %v", name, err)
			}
			if !strings.Contains(err.Error(), "you sent [REDACTED]") {
				t.Fatalf("%v: want the form scrubbed", err)
			}
		})
	}
}
