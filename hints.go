// What a failed token request suggests to fix: the hints of a TokenError,
// naming the fields, flags or variables in the caller's words.

package m2mtoken

import (
	"net/http"
	"strings"
	"time"
)

// netHint says what to check after a request that got no answer failed
// so, or "" for nothing in particular.
func (c *client) netHint(f netFailure) string {
	switch f {
	case netNoHost:
		return "the host name does not exist: check " + c.endpointName()
	case netBadCert:
		if c.cfg.HTTPClient != nil {
			return "the server's certificate does not verify: check the URL, or trust the CA that signed it in Config.HTTPClient's TLS config (RootCAs)"
		}
		return "the server's certificate does not verify: check the URL, or trust the CA that signed it with " + c.name("CAFile")
	case netNotTLS:
		return "the server does not speak TLS: check the URL; a local plain-http server needs http:// (allowed only to loopback)"
	case netRefused:
		return "check the host and port in " + c.endpointName() + ", or that the server runs"
	case netCertRefused:
		return c.certRefusedHint()
	}
	return ""
}

// certRefusedHint says what to check when the server refused the client
// certificate in the TLS handshake, or asked for one the client has not.
func (c *client) certRefusedHint() string {
	if c.cert == nil {
		if c.cfg.HTTPClient != nil {
			return "the server asks for a client certificate: present one in Config.HTTPClient's TLS config, or leave HTTPClient nil and set " + c.name("ClientCertFile")
		}
		return "the server asks for a client certificate: give the client one with " + c.name("ClientCertFile") + " and " + c.name("ClientKeyFile")
	}
	h := "the server refused the client certificate in the TLS handshake: check that " + c.name(c.cert.field()) +
		" is a certificate the server trusts (issued by a CA it trusts, or the one registered for the client) and in its validity"
	if cv := c.cert.now(); cv != nil {
		if now := c.clock.Now(); !now.Before(cv.notAfter) {
			h += "; it expired at " + cv.notAfter.UTC().Format(time.RFC3339)
		} else if now.Before(cv.notBefore) {
			h += "; it is valid only from " + cv.notBefore.UTC().Format(time.RFC3339)
		}
	}
	return h
}

// name says how messages call a Config field: as Config.FieldNames says
// (the flag, variable or file field that set it), else Config.Field.
func (c *client) name(field string) string {
	n, _ := c.setting(field)
	return n
}

// setting names a Config field as name does, and reports whether the user
// can set it: Config.FieldNames returns "" for a field that has no flag,
// variable or file field where the user configures the client, and
// advice to change it is then left out.
func (c *client) setting(field string) (string, bool) {
	return fieldName(c.cfg.FieldNames, field)
}

// fieldName names field with names (Config.FieldNames), if it is not nil
// and has a name for it; else Config.Field, and false when names has none.
func fieldName(names func(string) string, field string) (string, bool) {
	if names == nil {
		return "Config." + field, true
	}
	if n := names(field); n != "" {
		return n, true
	}
	return "Config." + field, false
}

// requestName names a field of a token's request (Audience, Scopes,
// Organization): Config's, in the user's words, for a source from New and
// for a pool's default request (defaultRequest); TokenRequest's for any
// other request of a pool, unless Config.FieldNames names it (the agent
// names each source's "audience" in its config file).
func (c *client) requestName(field string, defaultRequest bool) string {
	if defaultRequest || c.cfg.FieldNames != nil {
		return c.name(field)
	}
	return "TokenRequest." + field
}

// endpointName names the setting that gave the URL requests go to.
func (c *client) endpointName() string {
	switch {
	case c.cfg.MTLSTokenURL != "":
		return c.name("MTLSTokenURL")
	case c.cfg.Domain != "":
		return c.name("Domain")
	}
	return c.name("TokenURL")
}

// hint says what to check for the endpoint's well-known terse answers,
// naming the settings as the user gave them; defaultRequest says the
// token's request is Config's (see requestName).
func (c *client) hint(te *TokenError, defaultRequest bool) string {
	desc := te.Description
	reqName := func(field string) string { return c.requestName(field, defaultRequest) }
	switch {
	case badCredentials(te):
		switch c.cfg.AuthMethod {
		case PrivateKeyJWT:
			return "check the client ID, the private key and its key ID, and that the application's token endpoint authentication method is " +
				c.cfg.AuthMethod.String() + ": " + c.name("ClientID") + ", " + c.name(c.cred.field) + ", " + c.name("KeyID") + " and " + c.name("AuthMethod")
		case ClientAssertion:
			return "check the client ID, and that the server trusts the platform's assertions for this client (the issuer, subject and audience it expects, and the assertion's type): " +
				c.name("ClientID") + ", " + c.name(c.cred.field) + " and " + c.name("ClientAssertionType")
		case TLSClientAuth, SelfSignedTLSClientAuth:
			return c.certHint()
		}
		return "check the client ID, the client secret, and that the application's token endpoint authentication method is " +
			c.cfg.AuthMethod.String() + ": " + c.name("ClientID") + ", " + c.name(c.cred.field) + " and " + c.name("AuthMethod")
	case grantRefused(te):
		return "the application may not use the client-credentials grant: enable Client Credentials in its grant types (Auth0: Application, Advanced Settings, Grant Types)"
	case strings.HasPrefix(desc, "Service not enabled within domain"):
		return "the audience is not the identifier of an API in this tenant: check " + reqName("Audience") + " against the API's Identifier in Auth0: Applications, APIs"
	case strings.Contains(desc, "is not authorized to access resource server"):
		return "authorize the application for this API (Auth0: Applications, APIs, Machine to Machine Applications)"
	case notInOrganization(desc):
		return "the application may not get tokens for this organization: check " + reqName("Organization") +
			" (the organization's ID, org_..., or its name as the tenant spells it), and give the application access" +
			" for this API in Auth0: Organizations, the organization, Machine-to-Machine Access"
	case c.cfg.DPoPKey == nil && strings.Contains(strings.ToLower(desc), "dpop") && strings.Contains(desc, "required"):
		return "the server requires DPoP-bound tokens for this client: give it a DPoP key with " + c.name("DPoPKey")
	case strings.HasPrefix(desc, "No audience parameter was provided"):
		return "set the audience to the API's identifier: " + reqName("Audience")
	case notTokenEndpoint(te):
		return "the URL is not a token endpoint: check " + c.endpointName() + "; Auth0's is https://TENANT/oauth/token"
	case te.Code == "" && te.StatusCode == http.StatusUnauthorized:
		// A token endpoint says why it refuses a client; a protected API
		// (or a proxy in front of one) just says 401.
		return "a 401 with no OAuth error: the URL may not be a token endpoint (an API, or a proxy, that wants a token itself): check " +
			c.endpointName() + "; Auth0's is https://TENANT/oauth/token"
	}
	return ""
}

// certHint is the hint for a refused client that authenticates with its
// certificate (RFC 8705): what the server checks of the certificate for
// the method, and, when token requests go to the token URL, that a server
// may take certificates only at an alias of it.
func (c *client) certHint() string {
	what := "that the server trusts the CA that issued the certificate and that its subject (or SAN) is the one registered for the client"
	if c.cfg.AuthMethod == SelfSignedTLSClientAuth {
		what = "that this certificate is the one registered for the client (in its JWKS, as x5c)"
	}
	h := "check the client ID, " + what + ", and that the application's token endpoint authentication method is " +
		c.cfg.AuthMethod.String() + ": " + c.name("ClientID") + ", " + c.name(c.cert.field()) + " and " + c.name("AuthMethod")
	if alias, ok := c.setting("MTLSTokenURL"); ok && c.cfg.MTLSTokenURL == "" {
		h += "; a server that asks for client certificates only at an mTLS alias of its token endpoint (Auth0: the token_endpoint of mtls_endpoint_aliases in its discovery document) needs that alias in " + alias
	}
	return h
}

// notInOrganization reports whether an error description says that the
// client may not use the organization it asked for: m2mtest's and
// Auth0's "Client ... is not a member of organization ...", and the
// other ways a server says the client has no access to it.
func notInOrganization(desc string) bool {
	d := strings.ToLower(desc)
	if !strings.Contains(d, "organization") {
		return false
	}
	for _, p := range []string{"not a member", "not authorized", "not allowed", "not associated", "no access", "not enabled", "does not exist", "not found"} {
		if strings.Contains(d, p) {
			return true
		}
	}
	return false
}
