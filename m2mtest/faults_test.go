// Tests of fault injection and Auth0-style rate limiting (faults.go).

package m2mtest

import (
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestFaults(t *testing.T) {
	s := testServer(t)
	c := s.Client()
	s.FailNext(1, Fault{Status: 503})
	s.FailNext(1, Fault{Status: 429, RetryAfter: 2 * time.Second})
	s.FailNext(1, Fault{Malformed: true})
	s.FailNext(1, Fault{Truncated: true})
	s.FailNext(1, Fault{Drop: true})
	s.FailNext(1, Fault{Latency: 50 * time.Millisecond})

	if a := post(t, c, s.TokenURL(), good()); a.status != 503 || a.body["error"] != "server_error" {
		t.Errorf("503: %v", a)
	}
	a := post(t, c, s.TokenURL(), good())
	if a.status != 429 || a.header.Get("Retry-After") != "2" || a.header.Get("X-RateLimit-Remaining") != "0" || a.header.Get("X-RateLimit-Reset") == "" {
		t.Errorf("429: %d %v", a.status, a.header)
	}
	for _, want := range []string{"<html>", `{"access_token":"eyJ`} {
		resp, err := c.Post(s.TokenURL(), "application/x-www-form-urlencoded", strings.NewReader(good().Encode()))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(string(b), want) || json.Valid(b) {
			t.Errorf("want a bad 200 starting %q, got %d %q", want, resp.StatusCode, b)
		}
	}
	if _, err := c.Post(s.TokenURL(), "application/x-www-form-urlencoded", strings.NewReader(good().Encode())); err == nil {
		t.Error("dropped connection gave no error")
	}
	start := time.Now()
	if a := post(t, c, s.TokenURL(), good()); a.status != 200 || time.Since(start) < 50*time.Millisecond {
		t.Errorf("latency fault: %d after %v", a.status, time.Since(start))
	}
	if s.Requests() != 6 || s.TokensIssued("svc") != 1 {
		t.Errorf("requests %d issued %d", s.Requests(), s.TokensIssued("svc"))
	}
}

func TestRateLimit(t *testing.T) {
	s := testServer(t)
	c := s.Client()
	s.SetRateLimit(3, 0.001)
	var statuses []int
	for i := 0; i < 5; i++ {
		a := post(t, c, s.TokenURL(), good())
		statuses = append(statuses, a.status)
		if a.header.Get("X-RateLimit-Limit") != "3" {
			t.Errorf("no rate-limit headers: %v", a.header)
		}
	}
	if diff := cmp.Diff([]int{200, 200, 200, 429, 429}, statuses); diff != "" {
		t.Error(diff)
	}
}

func TestLifetimeAndRandomFaults(t *testing.T) {
	s := testServer(t)
	c := s.Client()
	s.SetTokenLifetime(3 * time.Second)
	if a := post(t, c, s.TokenURL(), good()); a.body["expires_in"] != float64(3) {
		t.Errorf("expires_in %v", a.body["expires_in"])
	}
	s.SetRandomFaults(1, Fault{Status: 500})
	if a := post(t, c, s.TokenURL(), good()); a.status != 500 {
		t.Errorf("random fault: %d", a.status)
	}
	s.SetRandomFaults(0)
	if a := post(t, c, s.TokenURL(), good()); a.status != 200 {
		t.Errorf("after faults off: %d", a.status)
	}
}
