package main

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// TestRetryLinesFromTheObserver: the retry lines come from the source's
// Observer, not from its log text: with no logger at all, each retried
// attempt is a line, and the last attempt (it got the token) none.
func TestRetryLinesFromTheObserver(t *testing.T) {
	s := issuer(t)
	s.FailNext(2, m2mtest.Fault{Status: 503})
	var out strings.Builder
	rep := &attemptReporter{w: &out}
	src, err := m2mtoken.New(m2mtoken.Config{TokenURL: s.TokenURL(), ClientID: "cli", ClientSecret: secret, Audience: aud, Observer: rep.observer()})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, err := src.Token(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "m2mtoken: attempt 1 of 8 failed, retrying in ") ||
		!strings.HasPrefix(lines[1], "m2mtoken: attempt 2 of 8 failed, retrying in ") || !strings.Contains(lines[1], "503 Service Unavailable") {
		t.Fatalf("lines %q", lines)
	}
}

// TestWarningLines: the library's warnings are a line each, with their
// errors; a warning about a failed token request is not (the retry lines
// and the final error say it), nor is anything below a warning.
func TestWarningLines(t *testing.T) {
	var out strings.Builder
	log := slog.New(newWarningPrinter(&out))
	log.Warn("cache get failed; fetching from the token endpoint", slog.Any("error", errors.New("m2mtoken: file cache: bad entry")))
	log.Warn("Auth0 quota exhausted; no token request until it resets", slog.String("scope", "client"))
	log.Warn("token request failed", slog.Any("error", &m2mtoken.TokenError{StatusCode: 503}))
	log.Info("token received")
	want := "m2mtoken: warning: cache get failed; fetching from the token endpoint: file cache: bad entry\n" +
		"m2mtoken: warning: Auth0 quota exhausted; no token request until it resets\n"
	if out.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", out.String(), want)
	}
}
