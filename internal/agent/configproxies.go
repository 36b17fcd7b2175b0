// The config file's proxies: {"proxies": [{"source": "billing", "listen":
// "unix:/run/m2mtoken/billing.sock", "upstream": "https://billing.example.com"}]},
// as --proxy NAME=LISTEN=UPSTREAM gives them, and "require_header" as
// --proxy-require-header.

package agent

import (
	"bytes"
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

// parseConfigProxies returns the proxies of the config file's contents b,
// which parseConfigFile has read. Their values are checked by New, whose
// errors name them by their Origin and fields.
func parseConfigProxies(path string, b []byte) ([]Proxy, error) {
	var fc fileConfig
	if err := json.Unmarshal(b, &fc); err != nil {
		return nil, fmt.Errorf("config file %s: %s", path, jsonError(b, err, "the file's fields are", topFields))
	}
	var proxies []Proxy
	for i, raw := range fc.Proxies {
		var fp fileProxy
		d := json.NewDecoder(bytes.NewReader(raw))
		d.DisallowUnknownFields()
		where := fmt.Sprintf("config file %s: proxies[%d]", path, i)
		if err := d.Decode(&fp); err != nil {
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
