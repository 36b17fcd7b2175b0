// m2mtoken token with a DPoP key, against serve --require-dpop; and the
// demo with DPoP.

package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/m2mtoken/m2mtoken/m2mtest"
)

func dpopKeyFile(t *testing.T) string {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	f := filepath.Join(t.TempDir(), "dpop.pem")
	os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	return f
}

// TestDPoPServeTokenCurl: serve --require-dpop --dpop-nonce; token without
// a DPoP key is refused; with --dpop-key, --header --url prints both
// header lines, and curl -H @- reaches the protected API with them.
func TestDPoPServeTokenCurl(t *testing.T) {
	exports, lines := startServe(t, "--client-id", "local", "--client-secret", secret, "--audience", aud, "--require-dpop", "--dpop-nonce")
	apiURL := servedAPI(lines) + "/"
	if len(exports) != 5 || exports["API_URL"] != apiURL || !strings.Contains(lines[0], "DPoP required, with nonces") {
		t.Fatalf("serve printed %v %q", exports, lines)
	}
	env := envList(exports, "M2MTOKEN_CACHE_DIR="+t.TempDir())
	if r := runBin(t, env, "token"); r.code != 1 || !strings.Contains(r.stderr, "DPoP proof is required") {
		t.Fatalf("without a DPoP key: exit %d %q", r.code, r.stderr)
	}
	key := dpopKeyFile(t)
	if r := runBin(t, env, "token", "--dpop-key", key, "--header"); r.code != 1 || !strings.Contains(r.stderr, "--url") {
		t.Fatalf("--header without --url: exit %d %q", r.code, r.stderr)
	}
	if r := runBin(t, env, "token", "--dpop-key", key); r.code != 0 || !strings.Contains(r.stderr, "DPoP-bound") || strings.Count(r.stdout, ".") != 2 {
		t.Fatalf("plain: exit %d %q", r.code, r.stderr)
	}
	target := apiURL + "v1/things?page=1"
	for _, method := range []string{"GET", "POST"} {
		r := runBin(t, env, "token", "--dpop-key", key, "--header", "--url", target, "--method", method)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if r.code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "Authorization: DPoP ey") || !strings.HasPrefix(lines[1], "DPoP: ey") {
			t.Fatalf("--header --url: exit %d %q %q", r.code, r.stdout, r.stderr)
		}
		curl, err := exec.LookPath("curl")
		if err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("curl is missing")
			}
			t.Skip("curl is not installed")
		}
		c := exec.Command(curl, "-sS", "-X", method, "-H", "@-", "-o", "-", "-w", "\n%{http_code}", target)
		c.Stdin = strings.NewReader(r.stdout)
		out, err := c.CombinedOutput()
		if err != nil || string(out) != "ok local DPoP "+aud+"\n\n200" {
			t.Fatalf("curl %s: %v %q", method, err, out)
		}
		// The same headers again: the proof is spent.
		c = exec.Command(curl, "-sS", "-X", method, "-H", "@-", "-o", "/dev/null", "-w", "%{http_code}", target)
		c.Stdin = strings.NewReader(r.stdout)
		if out, err := c.CombinedOutput(); err != nil || string(out) != "401" {
			t.Fatalf("replayed headers: %v %q", err, out)
		}
	}
}

// TestDPoPTokenCache: the cache file serves the next run with the same
// DPoP key, and never a run with another key.
func TestDPoPTokenCache(t *testing.T) {
	s := m2mtest.NewServer(m2mtest.Client{ID: "cli", Secret: secret, Audiences: []string{aud}, RequireDPoP: true})
	defer s.Close()
	env := tokenEnv(s, t.TempDir())
	k1, k2 := dpopKeyFile(t), dpopKeyFile(t)
	var toks []string
	for _, k := range []string{k1, k1, k2} {
		r := runBin(t, env, "token", "--dpop-key", k, "--json")
		var out map[string]any
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || out["token_type"] != "DPoP" {
			t.Fatalf("exit %d %q %q", r.code, r.stdout, r.stderr)
		}
		toks = append(toks, out["access_token"].(string))
	}
	if toks[0] != toks[1] || toks[0] == toks[2] || s.TokensIssued("cli") != 2 {
		t.Fatalf("%d tokens issued; same key shared %v, other key shared %v", s.TokensIssued("cli"), toks[0] == toks[1], toks[0] == toks[2])
	}
	if r := runBin(t, env, "token", "--dpop-key", filepath.Join(t.TempDir(), "none.pem")); r.code != 1 || !strings.Contains(r.stderr, "--dpop-key") {
		t.Fatalf("missing key: exit %d %q", r.code, r.stderr)
	}
}

func TestDemoDPoP(t *testing.T) {
	r := runBin(t, nil, "demo", "--dpop", "--duration", "2s", "--ttl", "1s", "--token-latency", "50ms", "--callers", "4", "--quiet")
	if r.code != 0 || !strings.Contains(r.stdout, "DPoP-bound tokens") || !strings.Contains(r.stdout, "failed calls                              0") {
		t.Fatalf("demo --dpop: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if r := runBin(t, nil, "demo", "--dpop", "--compare"); r.code != 2 {
		t.Fatalf("--dpop --compare: exit %d", r.code)
	}
}
