// The config file's proxies: {"proxies": [{"source": "billing", "listen":
// "unix:/run/m2mtoken/billing.sock", "upstream": "https://billing.example.com"}]},
// as --proxy NAME=LISTEN=UPSTREAM gives them, and "require_header" as
// --proxy-require-header.

package agent

import (
	"encoding/json"
	"fmt"
)

// fileProxy is one proxy in the config file. Unknown fields are refused.
type fileProxy struct {
	Source        string `json:"source"`
	Listen        string `json:"listen"`
	Upstream      string `json:"upstream"`
	RequireHeader bool   `json:"require_header"`
}

// proxyFields are the fields a proxy may have, as the file spells them.
var proxyFields = []string{"source", "listen", "upstream", "require_header"}

// parseConfigProxies returns the proxies of the config file at path, its
// "proxies" list as parseConfigFile decoded it. Their values are checked
// by New, whose errors name them by their Origin and fields.
func parseConfigProxies(path string, list []json.RawMessage) ([]Proxy, error) {
	var proxies []Proxy
	for i, raw := range list {
		var fp fileProxy
		where := fmt.Sprintf("config file %s: proxies[%d]", path, i)
		if err := decodeStrict(raw, &fp); err != nil {
			return nil, fmt.Errorf("%s: %s", where, jsonError(nil, err, "a proxy's fields are", proxyFields))
		}
		for _, f := range [][3]string{
			{"source", fp.Source, "name the source whose token the proxy adds"},
			{"listen", fp.Listen, `give "unix:PATH" (preferred) or "127.0.0.1:PORT"`},
			{"upstream", fp.Upstream, "give the API's URL, such as https://api.example.com"},
		} {
			if f[1] == "" {
				return nil, fmt.Errorf("%s: %q is missing: %s", where, f[0], f[2])
			}
		}
		proxies = append(proxies, Proxy{Source: fp.Source, Listen: fp.Listen, Upstream: fp.Upstream, RequireHeader: fp.RequireHeader, Origin: where})
	}
	return proxies, nil
}
