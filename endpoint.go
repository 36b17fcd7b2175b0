// The token endpoint: the URL that Config's Domain or TokenURL resolves
// to, and what is refused because it would send the secret somewhere
// unsafe (plain http off loopback, a name that only looks like loopback,
// no scheme, an empty port).

package m2mtoken

import (
	"net"
	"net/url"
	"strings"

	"github.com/m2mtoken/m2mtoken/internal/suggest"
)

// endpointURL turns Domain or TokenURL into the token URL, and refuses
// what would send the secret somewhere unsafe.
func endpointURL(domain, tokenURL string) (string, error) {
	domain, tokenURL = strings.TrimSpace(domain), strings.TrimSpace(tokenURL)
	switch {
	case domain == "" && tokenURL == "":
		return "", configErr("no endpoint: set {Domain} (for example \"tenant.eu.auth0.com\") or {TokenURL}")
	case domain != "" && tokenURL != "":
		return "", configErr("both {Domain} and {TokenURL} are set: set only one")
	case domain != "":
		return parseEndpoint("Domain", domain)
	}
	return parseEndpoint("TokenURL", tokenURL)
}

// parseEndpoint checks one of the endpoint fields (Domain, TokenURL,
// MTLSTokenURL) and returns the token URL it means.
func parseEndpoint(field, raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	orig := raw
	if !strings.Contains(raw, "://") {
		if field != "Domain" {
			return "", noScheme(field, raw)
		}
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", configErr("{"+field+"} %q does not parse as a URL", raw)
	}
	if u.Host == "" || u.Hostname() == "" {
		return "", configErr("{"+field+"} %q has no host", raw)
	}
	if strings.HasSuffix(u.Host, ":") {
		return "", configErr("{"+field+"} %q has an empty port: give the port after the colon, or drop the colon for the scheme's default", raw)
	}
	if u.User != nil {
		return "", configErr("{" + field + "} has credentials in it: put them in {ClientID} and {ClientSecret}")
	}
	if u.Fragment != "" {
		return "", configErr("{"+field+"} %q has a #fragment", raw)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			if suggest.Nearest(u.Hostname(), []string{"localhost"}) != "" {
				return "", configErr("{"+field+"} %q: %q is not a loopback name: did you mean localhost? (plain http is allowed only to loopback addresses)", raw, u.Hostname())
			}
			return "", configErr("{"+field+"} %q uses plain http: the secret would travel unencrypted; use https (http is allowed only to loopback addresses)", raw)
		}
	default:
		return "", badScheme(field, raw, u)
	}
	if field == "Domain" {
		if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return "", configErr("{Domain} %q has a path or query: give the bare domain, or the full URL in {TokenURL}", orig)
		}
		u.Path, u.RawPath = "/oauth/token", ""
	}
	return u.String(), nil
}

// noScheme explains a URL field given without https://, with the URL the
// user probably meant: a bare host means that host's /oauth/token.
func noScheme(field, raw string) error {
	host, path, _ := strings.Cut(raw, "/")
	scheme := "https://"
	if h, _, err := net.SplitHostPort(host); err == nil && isLoopback(h) || isLoopback(host) {
		scheme = "http://"
	}
	if path == "" {
		if field == "TokenURL" {
			return configErr("{TokenURL} %q has no scheme: a token URL is a full URL, such as %q; or give the bare domain in {Domain}",
				raw, scheme+host+"/oauth/token")
		}
		return configErr("{"+field+"} %q has no scheme: a token URL is a full URL, such as %q", raw, scheme+host+"/oauth/token")
	}
	return configErr("{"+field+"} %q has no scheme: did you mean %q?", raw, scheme+raw)
}

// badScheme explains a scheme that is neither https nor http, with the
// URL the user probably meant when the scheme is one typo away from one:
// htps:// means https://, htp:// to loopback means http://.
func badScheme(field, raw string, u *url.URL) error {
	const allowed = "https, or http to a loopback address"
	meant := ""
	for _, s := range []string{"https", "http"} {
		if suggest.Distance(u.Scheme, s) == 1 {
			meant = s
			break
		}
	}
	if meant == "http" && !isLoopback(u.Hostname()) {
		meant = "https"
	}
	if meant == "" {
		return configErr("{"+field+"} %q: the scheme must be %s", raw, allowed)
	}
	return configErr("{"+field+"} %q: did you mean %q? (the scheme must be %s)", raw, meant+raw[len(u.Scheme):], allowed)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// TokenSource is a cached, self-refreshing source of client-credentials
// tokens. It is an [oauth2.TokenSource]. Create it with [New]; it is safe
