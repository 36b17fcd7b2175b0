// Package settings lists the settings of a token source that the
// environment, the m2mtoken command's flags and the agent's config file
// give, each once: the Config field it sets, what it means, and the
// settings it excludes. m2mtoken.ConfigFromLookup is their one parser; a
// front end hands it a lookup keyed by the variables' names, and a
// function that names a setting in the front end's words. The names
// follow one rule (see Key): the variable AUTH0_CLIENT_ID, the flag
// --client-id, the config file's "client_id".
//
// Adding a setting is a row here, its reading in ConfigFromLookup, and a
// field of the agent's config file; the flag follows from the row.
package settings

import (
	"strings"

	"github.com/m2mtoken/m2mtoken/internal/atomicfile"
)

// The settings, by the name of their variable.
const (
	Domain           = "AUTH0_DOMAIN"
	TokenURL         = "M2MTOKEN_TOKEN_URL"
	ClientID         = "AUTH0_CLIENT_ID"
	ClientSecret     = "AUTH0_CLIENT_SECRET"
	ClientSecretFile = "AUTH0_CLIENT_SECRET_FILE"
	PrivateKeyFile   = "M2MTOKEN_PRIVATE_KEY_FILE"
	AssertionFile    = "M2MTOKEN_CLIENT_ASSERTION_FILE"
	AssertionType    = "M2MTOKEN_CLIENT_ASSERTION_TYPE"
	KeyID            = "M2MTOKEN_KEY_ID"
	AuthMethod       = "M2MTOKEN_AUTH_METHOD"
	Audience         = "AUTH0_AUDIENCE"
	Scope            = "AUTH0_SCOPE"
	Organization     = "AUTH0_ORGANIZATION"
	CAFile           = "M2MTOKEN_CA_FILE"
	DPoPKeyFile      = "M2MTOKEN_DPOP_KEY_FILE"
	RequireDPoP      = "M2MTOKEN_REQUIRE_DPOP"
)

// Setting is one setting of a token source.
type Setting struct {
	// Env is its environment variable, such as "AUTH0_CLIENT_ID": its key
	// in m2mtoken.ConfigFromLookup.
	Env string
	// Field is the Config field it sets, such as "ClientID".
	Field string
	// Group, if not empty, is the group of settings of which only one may
	// be given (see Groups).
	Group string
	// Bool reports that the setting is on or off: a flag without a value,
	// true in the config file, true or 1 in the environment.
	Bool bool
	// Private reports that the setting names a file that holds a secret
	// or a private key, which only its owner should read.
	Private bool
	// Meaning says what the value is.
	Meaning string
}

// All returns the settings, in the order of the table in
// docs/configuration.md.
func All() []Setting {
	return []Setting{
		{Env: Domain, Field: "Domain", Group: "endpoint", Meaning: "the Auth0 tenant or custom domain, such as tenant.eu.auth0.com (https:// and a trailing slash are accepted)"},
		{Env: TokenURL, Field: "TokenURL", Group: "endpoint", Meaning: "the token endpoint of any OAuth 2.0 server, instead of AUTH0_DOMAIN"},
		{Env: ClientID, Field: "ClientID", Meaning: "the application's Client ID"},
		{Env: ClientSecret, Field: "ClientSecret", Group: "credential", Meaning: "the application's Client Secret"},
		{Env: ClientSecretFile, Field: "ClientSecretFile", Group: "credential", Private: true, Meaning: "a file holding the Client Secret (a trailing newline is dropped), instead of AUTH0_CLIENT_SECRET; followed: a new secret in it is used without a restart"},
		{Env: PrivateKeyFile, Field: "PrivateKeyFile", Group: "credential", Private: true, Meaning: "a PEM private key for Private Key JWT, instead of a secret; followed as the secret's file is"},
		{Env: AssertionFile, Field: "ClientAssertionFile", Group: "credential", Meaning: "a file the platform writes a client assertion to (a Kubernetes service-account token, a SPIFFE JWT-SVID), instead of a secret; read for each token request"},
		{Env: AssertionType, Field: "ClientAssertionType", Meaning: "jwt-bearer (the default) or jwt-spiffe, or the client_assertion_type's URN (with M2MTOKEN_CLIENT_ASSERTION_FILE)"},
		{Env: KeyID, Field: "KeyID", Meaning: "the private key's Key ID as registered with the server (with M2MTOKEN_PRIVATE_KEY_FILE)"},
		{Env: AuthMethod, Field: "AuthMethod", Meaning: "post (client_secret_post, the default) or basic (client_secret_basic); a key means private_key_jwt, an assertion file client_assertion"},
		{Env: Audience, Field: "Audience", Meaning: "the API identifier the token is for"},
		{Env: Scope, Field: "Scopes", Meaning: "space-separated scopes"},
		{Env: Organization, Field: "Organization", Meaning: "the organization ID or name"},
		{Env: CAFile, Field: "CAFile", Meaning: "a PEM file of CA certificates to trust besides the system's (such as m2mtoken serve --tls --ca-out), for token requests and the API"},
		{Env: DPoPKeyFile, Field: "DPoPKey", Private: true, Meaning: "a PEM private key (P-256, RSA or Ed25519) that binds tokens with DPoP"},
		{Env: RequireDPoP, Field: "RequireDPoP", Bool: true, Meaning: "refuse a token that is not DPoP-bound (with M2MTOKEN_DPOP_KEY_FILE)"},
	}
}

// Group is a group of settings of which only one may be given.
type Group struct {
	Name string
	// Advice ends the error for two of them given: "both X and Y are
	// set: ADVICE".
	Advice string
}

// Groups returns the groups the settings of All belong to.
func Groups() []Group {
	return []Group{
		{"endpoint", "set only one"},
		{"credential", "authenticate with one (a client secret, its file, a private key, or a client assertion's file)"},
	}
}

// Of returns the setting whose variable is env.
func Of(env string) (Setting, bool) {
	for _, s := range All() {
		if s.Env == env {
			return s, true
		}
	}
	return Setting{}, false
}

// Prefixes are the prefixes of the variables.
var Prefixes = []string{"AUTH0_", "M2MTOKEN_"}

// Key is the setting's name without its prefix, in lower case, as the
// config file spells it: "client_id" for AUTH0_CLIENT_ID. The flag is
// the same with dashes (see Flag).
func Key(env string) string {
	for _, p := range Prefixes {
		env = strings.TrimPrefix(env, p)
	}
	return strings.ToLower(env)
}

// Flag is the command's flag for the setting, without its dashes:
// "client-id" for AUTH0_CLIENT_ID.
func Flag(env string) string { return strings.ReplaceAll(Key(env), "_", "-") }

// Names returns the variables of All.
func Names() []string {
	var out []string
	for _, s := range All() {
		out = append(out, s.Env)
	}
	return out
}

// FileWarnings are warnings about the files of the Private settings that
// lookup gives: a secret or key file that its group or others may read.
// name says what the user calls a setting.
func FileWarnings(lookup func(env string) (string, bool), name func(env string) string) []string {
	var out []string
	for _, s := range All() {
		if !s.Private {
			continue
		}
		if p, _ := lookup(s.Env); strings.TrimSpace(p) != "" {
			if w := atomicfile.ReadableWarning(name(s.Env), strings.TrimSpace(p)); w != "" {
				out = append(out, w)
			}
		}
	}
	return out
}
