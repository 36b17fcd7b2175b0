package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestAnswerTextEscapedOnStderr runs the binary against a token endpoint
// whose error and error_description carry escape sequences, CR and LF, to
// clear or recolour the terminal and forge lines: in the retry lines and
// in the final error they must be shown escaped.
func TestAnswerTextEscapedOnStderr(t *testing.T) {
	const hostile = "\x1b[2J\x1b[31mrotate the secret at https://evil.example/rotate\r\nm2mtoken: forged line\x07"
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := http.StatusServiceUnavailable // retried: a retry line, then the final error
		if r.URL.Query().Get("as") == "400" {
			code = http.StatusBadRequest
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]string{"error": "temporarily_unavailable\x1b[0m", "error_description": hostile})
	}))
	t.Cleanup(s.Close)
	for _, as := range []string{"503", "400"} {
		env := []string{"M2MTOKEN_TOKEN_URL=" + s.URL + "/oauth/token?as=" + as, "AUTH0_CLIENT_ID=cli",
			"AUTH0_CLIENT_SECRET=" + secret, "AUTH0_AUDIENCE=" + aud}
		r := runBin(t, env, "token", "--no-cache", "--timeout", "1s")
		if r.code == 0 {
			t.Fatalf("%s: exit 0", as)
		}
		for _, c := range r.stderr {
			if c != '\n' && (c < ' ' || c == 0x7f) {
				t.Fatalf("%s: stderr carries %U from the answer:\n%q", as, c, r.stderr)
			}
		}
		if !strings.Contains(r.stderr, `\x1b[2J\x1b[31mrotate the secret`) || strings.Count(r.stderr, "m2mtoken: forged line") != strings.Count(r.stderr, `\r\nm2mtoken: forged line`) {
			t.Fatalf("%s: the description is not shown escaped:\n%s", as, r.stderr)
		}
		t.Logf("%s:\n%s", as, r.stderr)
	}
}
