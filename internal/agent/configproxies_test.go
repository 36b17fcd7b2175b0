package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigFileProxies: the config file's "proxies" are --proxy's, with
// "require_header" for --proxy-require-header; their mistakes name the
// file, the proxy and the field, and are not usage errors.
func TestConfigFileProxies(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "api.sock")
	file := func(proxies string) string {
		f := filepath.Join(t.TempDir(), "agent.json")
		os.WriteFile(f, []byte(`{"sources": [{"name": "api", "domain": "t.auth0.com", "client_id": "c", "client_secret_env": "S"}], "proxies": [`+proxies+`]}`), 0o600)
		return f
	}
	getenv := func(v string) string { return map[string]string{"S": "s"}[v] }
	_, proxies, err := LoadConfigFile(file(`{"source": "api", "listen": "unix:`+sock+`", "upstream": "https://api.example.com"},
		{"source": "api", "listen": "127.0.0.1:0", "upstream": "https://api.example.com/v1", "require_header": true}`), getenv)
	if err != nil {
		t.Fatal(err)
	}
	if len(proxies) != 2 || proxies[0].Listen != "unix:"+sock || proxies[0].RequireHeader || !proxies[1].RequireHeader ||
		!strings.HasSuffix(proxies[1].Origin, "agent.json: proxies[1]") {
		t.Fatalf("proxies: %+v", proxies)
	}
	for _, tc := range []struct{ proxies, want string }{
		{`{"source": "api", "listen": "127.0.0.1:0", "upstream": "https://a", "require_headers": true}`, `proxies[0]: unknown field "require_headers": did you mean "require_header"? (a proxy's fields are source, listen, upstream, require_header)`},
		{`{"source": "api", "listen": "127.0.0.1:0"}`, `proxies[0]: "upstream" is missing`},
		{`{"source": "api", "listen": "unix:` + sock + `", "upstream": "https://a", "require_header": true}`, `proxies[0]: the required header "M2MToken-Agent: 1" is for a proxy on TCP`},
		{`{"source": "api", "listen": "127.0.0.1:0", "upstream": "http://api.example.com"}`, `proxies[0]: "upstream" "http://api.example.com" uses plain http`},
		{`{"source": "api", "listen": "0.0.0.0:9000", "upstream": "https://a"}`, `proxies[0]: "listen" "0.0.0.0:9000": only a loopback address`},
		{`{"source": "billing", "listen": "127.0.0.1:0", "upstream": "https://a"}`, `proxies[0]: no source named "billing"; the agent has api`},
	} {
		sources, proxies, err := LoadConfigFile(file(tc.proxies), getenv)
		if err == nil {
			_, err = New(Config{Sources: sources, Proxies: proxies})
		}
		var fe *FlagError
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "config file ") || errors.As(err, &fe) {
			t.Errorf("%s:\n%v\nwant %q", tc.proxies, err, tc.want)
		}
	}
}
