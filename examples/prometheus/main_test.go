package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// TestScrape takes tokens through an instrumented source (the first, one
// after a 503, one after an invalidation), scrapes /metrics like
// Prometheus, and checks the series.
func TestScrape(t *testing.T) {
	const audience = "https://metrics.local/"
	iss := m2mtest.NewServer(m2mtest.Client{ID: "metrics-demo", Secret: "pw", Audiences: []string{audience}})
	defer iss.Close()
	iss.SetClientQuota("metrics-demo", m2mtest.Quota{Bucket: "per_hour", Limit: 100}, m2mtest.Quota{Bucket: "per_day", Limit: 1000})
	src, handler, closeAll, err := instrumented(m2mtoken.Config{TokenURL: iss.TokenURL(), ClientID: "metrics-demo",
		ClientSecret: "pw", Audience: audience, MinBackoff: 1e6})
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	iss.FailNext(1, m2mtest.Fault{Status: 503})
	tok, err := src.Token()
	if err != nil {
		t.Fatal(err)
	}
	src.Invalidate(tok)
	if _, err := src.Token(); err != nil {
		t.Fatal(err)
	}

	srv := httptest.NewServer(handler)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	scrape := string(body)
	t.Logf("scrape:\n%s", m2mtokenLines(scrape))

	labels := `m2mtoken_audience="https://metrics.local/",m2mtoken_client_id="metrics-demo",`
	for _, want := range []string{
		`m2mtoken_token_requests_total{http_response_status_code="200",` + labels + `m2mtoken_outcome="success",otel_scope_name="github.com/m2mtoken/m2mtoken/m2mtokenotel",otel_scope_schema_url="",otel_scope_version="",server_address="127.0.0.1"} 2`,
		`m2mtoken_token_requests_total{http_response_status_code="503",` + labels + `m2mtoken_outcome="failure",`,
		`m2mtoken_tokens_total{` + labels + `m2mtoken_origin="endpoint",`,
		`m2mtoken_fetch_duration_seconds_count{` + labels + `m2mtoken_origin="endpoint",m2mtoken_outcome="success",m2mtoken_reason="first",`,
		`m2mtoken_fetch_duration_seconds_count{` + labels + `m2mtoken_origin="endpoint",m2mtoken_outcome="success",m2mtoken_reason="invalidated",`,
		`m2mtoken_fetch_duration_seconds_bucket{`,
		`m2mtoken_waits_total{` + labels + `m2mtoken_outcome="success",`,
		`m2mtoken_wait_duration_seconds_count{`,
		`m2mtoken_invalidations_total{m2mtoken_applied="true",` + labels,
		`m2mtoken_quota_remaining{` + labels + `m2mtoken_quota_bucket="per_hour",m2mtoken_quota_scope="client",`,
		`m2mtoken_quota_limit{` + labels + `m2mtoken_quota_bucket="per_day",m2mtoken_quota_scope="client",`,
		`m2mtoken_token_remaining_lifetime_seconds{`,
		`# TYPE m2mtoken_fetch_duration_seconds histogram`,
		`# TYPE m2mtoken_quota_remaining gauge`,
	} {
		if !strings.Contains(scrape, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	for _, re := range []string{
		`m2mtoken_tokens_total\{[^}]*\} 2\n`,
		`m2mtoken_quota_remaining\{[^}]*m2mtoken_quota_bucket="per_hour"[^}]*\} 98\n`,
		`m2mtoken_quota_remaining\{[^}]*m2mtoken_quota_bucket="per_day"[^}]*\} 998\n`,
		`m2mtoken_token_remaining_lifetime_seconds\{[^}]*\} 8[0-9]{4}(\.[0-9]+)?(e\+[0-9]+)?\n`,
	} {
		if !regexp.MustCompile(re).MatchString(scrape) {
			t.Errorf("scrape does not match %s", re)
		}
	}
	if strings.Contains(scrape, "pw") || strings.Contains(scrape, tok.AccessToken[:20]) {
		t.Error("scrape shows the secret or a token")
	}
}

func m2mtokenLines(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "m2mtoken_") && !strings.Contains(l, "_bucket{") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
