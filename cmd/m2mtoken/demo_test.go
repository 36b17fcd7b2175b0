package main

import (
	"strconv"
	"strings"
	"testing"

	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// demoRow returns the values of the demo's result row that starts with
// label, one per column.
func demoRow(t *testing.T, out, label string) []string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), label); ok {
			return strings.Fields(rest)
		}
	}
	t.Fatalf("no %q row in\n%s", label, out)
	return nil
}

// TestDemoCountsWaitsFromTheSource: the m2mtoken column's waits come from
// Stats (none, with refreshes keeping up); the timing rule is said to be
// for the comparison column only; with stderr not a terminal, progress is
// plain lines, never redrawn with \r.
func TestDemoCountsWaitsFromTheSource(t *testing.T) {
	r := runBin(t, nil, "demo", "--duration", "2s", "--ttl", "4s", "--token-latency", "50ms", "--callers", "8", "--compare", "--progress-every", "600ms")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if w := demoRow(t, r.stdout, "calls that waited on refresh"); len(w) != 2 || w[0] != "0" {
		t.Fatalf("waits %v\n%s", w, r.stdout)
	}
	if !strings.Contains(r.stdout, "counted by the source (Stats().Waits)") || !strings.Contains(r.stdout, "x/oauth2 has no such counter: there it is a timing rule") {
		t.Fatalf("the demo does not say how it counts:\n%s", r.stdout)
	}
	if strings.Contains(r.stderr, "\r") {
		t.Fatalf("progress redrawn on a pipe: %q", r.stderr)
	}
	for _, impl := range []string{"m2mtoken", "x/oauth2"} {
		if n := strings.Count(r.stderr, "  "+impl+" "); n < 2 || n > 10 {
			t.Fatalf("%d progress lines for %s in 2 s at one per 600 ms:\n%s", n, impl, r.stderr)
		}
	}
}

// TestDemoRemoteNormalizedURL: with AUTH0_DOMAIN in a form the library
// accepts (a scheme, a trailing slash), both columns reach the server.
func TestDemoRemoteNormalizedURL(t *testing.T) {
	const demoAud = "https://api.demo.test/"
	s := m2mtest.NewServer(m2mtest.Client{ID: "demo", Secret: secret, Audiences: []string{demoAud}})
	defer s.Close()
	env := []string{"AUTH0_DOMAIN=" + s.URL + "/", "AUTH0_CLIENT_ID=demo", "AUTH0_CLIENT_SECRET=" + secret, "AUTH0_AUDIENCE=" + demoAud}
	r := runBin(t, env, "demo", "--duration", "1s", "--callers", "4", "--compare", "--quiet")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "demo against "+s.TokenURL()) {
		t.Fatalf("not the normalized URL:\n%s", r.stdout)
	}
	failed := demoRow(t, r.stdout, "failed calls")
	reqs := demoRow(t, r.stdout, "token requests")
	if len(failed) != 2 || failed[0] != "0" || failed[1] != "0" {
		t.Fatalf("failed calls %v\n%s", failed, r.stdout)
	}
	for i, v := range reqs {
		if n, _ := strconv.Atoi(v); n < 1 {
			t.Fatalf("column %d made no token request\n%s", i, r.stdout)
		}
	}
	if n := s.TokensIssued("demo"); n < 2 {
		t.Fatalf("%d tokens issued, want one per column at least", n)
	}
}

func TestDemoExitsZero(t *testing.T) {
	r := runBin(t, nil, "demo", "--duration", "3s", "--ttl", "1s", "--token-latency", "50ms", "--callers", "8", "--quiet")
	if r.code != 0 || !strings.Contains(r.stdout, "API calls") || !strings.Contains(r.stdout, "token requests") {
		t.Fatalf("demo: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

// TestDemoSaysWhereItsEndpointCameFrom: the variables of a 'm2mtoken
// serve' that has stopped, left in the shell, send the demo to a closed
// port; the error says which variable to unset. (The whole run, against a
// closed port, is about 10 s of retries: the message is tested alone.)
func TestDemoSaysWhereItsEndpointCameFrom(t *testing.T) {
	failed := loadResult{calls: 32, failed: 32}
	for _, tc := range []struct {
		remote bool
		env    map[string]string
		want   string
	}{
		{false, nil, "32 of 32 API calls through m2mtoken failed"},
		{true, map[string]string{"AUTH0_DOMAIN": "http://127.0.0.1:1"}, "32 of 32 API calls through m2mtoken failed; the demo took its endpoint from AUTH0_DOMAIN in the environment: unset it to run the demo against its own local issuer"},
		{true, map[string]string{"M2MTOKEN_TOKEN_URL": "http://127.0.0.1:1/token"}, "32 of 32 API calls through m2mtoken failed; the demo took its endpoint from M2MTOKEN_TOKEN_URL in the environment: unset it to run the demo against its own local issuer"},
	} {
		err := demoFailed(failed, tc.remote, func(k string) string { return tc.env[k] })
		if err == nil || err.Error() != tc.want {
			t.Errorf("remote %v, env %v: got %v, want %q", tc.remote, tc.env, err, tc.want)
		}
	}
	if err := demoFailed(loadResult{calls: 32}, true, func(string) string { return "x" }); err != nil {
		t.Errorf("no failed call: %v", err)
	}
}

// TestDemoAgainstServeTLS: the demo against 'm2mtoken serve --tls', with
// its exports (M2MTOKEN_CA_FILE among them), both columns. A demo that
// sends the library's token requests through an http.Client of its own
// fails at once there: the library refuses a client of the caller's
// beside a CA file.
func TestDemoAgainstServeTLS(t *testing.T) {
	served, _ := startServe(t, "--tls", "--client-secret", secret)
	r := runBin(t, envList(served), "demo", "--duration", "1s", "--callers", "4", "--compare", "--quiet")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if failed := demoRow(t, r.stdout, "failed calls"); len(failed) != 2 || failed[0] != "0" || failed[1] != "0" {
		t.Fatalf("failed calls %v\n%s", failed, r.stdout)
	}
	for i, v := range demoRow(t, r.stdout, "token requests") {
		if n, _ := strconv.Atoi(v); n < 1 {
			t.Fatalf("column %d made no token request\n%s", i, r.stdout)
		}
	}
}
