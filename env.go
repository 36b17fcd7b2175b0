// Configuration from environment variables: the names the m2mtoken
// command reads, so that a program, the command and a container's
// environment (or the exports of m2mtoken serve) agree.

package m2mtoken

import (
	"errors"
	"os"
	"strings"

	"github.com/m2mtoken/m2mtoken/internal/atomicfile"
	"github.com/m2mtoken/m2mtoken/internal/suggest"
)

// EnvVar is an environment variable that [ConfigFromEnv] reads.
type EnvVar struct {
	// Name is the variable, such as "AUTH0_CLIENT_ID".
	Name string
	// Field is the Config field it sets, such as "ClientID".
	Field string
	// Meaning says what the value is.
	Meaning string
}

// EnvVars lists the variables [ConfigFromEnv] reads, in the order of the
// table in docs/configuration.md.
func EnvVars() []EnvVar {
	return []EnvVar{
		{"AUTH0_DOMAIN", "Domain", "the Auth0 tenant or custom domain, such as tenant.eu.auth0.com (https:// and a trailing slash are accepted)"},
		{"M2MTOKEN_TOKEN_URL", "TokenURL", "the token endpoint of any OAuth 2.0 server, instead of AUTH0_DOMAIN"},
		{"AUTH0_CLIENT_ID", "ClientID", "the application's Client ID"},
		{"AUTH0_CLIENT_SECRET", "ClientSecret", "the application's Client Secret"},
		{"AUTH0_CLIENT_SECRET_FILE", "ClientSecret", "a file holding the Client Secret (a trailing newline is dropped), instead of AUTH0_CLIENT_SECRET"},
		{"M2MTOKEN_PRIVATE_KEY_FILE", "PrivateKey", "a PEM private key for Private Key JWT, instead of a secret"},
		{"M2MTOKEN_KEY_ID", "KeyID", "the private key's Key ID as registered with the server"},
		{"M2MTOKEN_AUTH_METHOD", "AuthMethod", "post (client_secret_post, the default) or basic (client_secret_basic); a key means private_key_jwt"},
		{"AUTH0_AUDIENCE", "Audience", "the API identifier the token is for"},
		{"AUTH0_SCOPE", "Scopes", "space-separated scopes"},
		{"AUTH0_ORGANIZATION", "Organization", "the organization ID or name"},
		{"M2MTOKEN_CA_FILE", "CAFile", "a PEM file of CA certificates to trust besides the system's (such as m2mtoken serve --tls --ca-out), for token requests and the API"},
		{"M2MTOKEN_DPOP_KEY_FILE", "DPoPKey", "a PEM private key (P-256, RSA or Ed25519) that binds tokens with DPoP"},
	}
}

// envVarOf returns the variable that sets field: of the variables that
// can (AUTH0_CLIENT_SECRET and AUTH0_CLIENT_SECRET_FILE set ClientSecret),
// the first one that set reports as set, else the first one.
func envVarOf(field string, set func(envVar string) bool) (string, bool) {
	first := ""
	for _, v := range EnvVars() {
		if v.Field != field {
			continue
		}
		if set(v.Name) {
			return v.Name, true
		}
		if first == "" {
			first = v.Name
		}
	}
	return first, first != ""
}

// ConfigFromEnv returns a Config from the environment variables listed by
// [EnvVars]: AUTH0_DOMAIN (or M2MTOKEN_TOKEN_URL), AUTH0_CLIENT_ID,
// AUTH0_CLIENT_SECRET (or AUTH0_CLIENT_SECRET_FILE, or
// M2MTOKEN_PRIVATE_KEY_FILE), AUTH0_AUDIENCE and the others. It checks the
// result as [New] does, and its errors name the variables to fix. Set the
// fields that have no variable (Cache, Logger, ...) on the result.
//
// When a required variable is missing and another one of the same prefix
// (AUTH0_, M2MTOKEN_) is set that is a typo of one it reads, such as
// AUTH0_CLIENTID, the error says so.
func ConfigFromEnv() (Config, error) {
	cfg, err := ConfigFromLookup(os.LookupEnv, nil)
	if ce := (*ConfigError)(nil); errors.As(err, &ce) {
		var read []string
		for _, v := range EnvVars() {
			read = append(read, v.Name)
		}
		var notes []string
		for _, t := range suggest.UnreadVars(os.Environ(), read, envPrefixes) {
			notes = append(notes, t.String())
		}
		if len(notes) > 0 {
			c := *ce
			c.note = strings.Join(notes, "; ")
			return cfg, &c
		}
	}
	return cfg, err
}

// ConfigFromLookup is [ConfigFromEnv] with the values from lookup, which is
// called with a variable's name and reports whether it is set. name, if
// not nil, says how errors call a variable: a command whose flags set the
// same values can name both ("--client-id or AUTH0_CLIENT_ID"). An empty
// value counts as unset.
func ConfigFromLookup(lookup func(name string) (string, bool), name func(envVar string) string) (Config, error) {
	if name == nil {
		name = func(v string) string { return v }
	}
	get := func(v string) string {
		s, _ := lookup(v)
		return strings.TrimSpace(s)
	}
	fail := func(format string, args ...any) (Config, error) {
		return Config{}, &ConfigError{format: format, args: args}
	}
	cfg := Config{
		Domain:       get("AUTH0_DOMAIN"),
		TokenURL:     get("M2MTOKEN_TOKEN_URL"),
		ClientID:     get("AUTH0_CLIENT_ID"),
		ClientSecret: get("AUTH0_CLIENT_SECRET"),
		Audience:     get("AUTH0_AUDIENCE"),
		Organization: get("AUTH0_ORGANIZATION"),
		KeyID:        get("M2MTOKEN_KEY_ID"),
	}
	if sc := strings.Fields(get("AUTH0_SCOPE")); len(sc) > 0 {
		cfg.Scopes = sc
	}
	if cfg.Domain != "" && cfg.TokenURL != "" {
		return fail("both %s and %s are set: set only one", name("AUTH0_DOMAIN"), name("M2MTOKEN_TOKEN_URL"))
	}
	if f := get("AUTH0_CLIENT_SECRET_FILE"); f != "" {
		if cfg.ClientSecret != "" {
			return fail("both %s and %s are set: set only one", name("AUTH0_CLIENT_SECRET"), name("AUTH0_CLIENT_SECRET_FILE"))
		}
		b, err := atomicfile.ReadLimited(f, atomicfile.SecretFileLimit, "a client secret file")
		if err != nil {
			return fail("%s: %v", name("AUTH0_CLIENT_SECRET_FILE"), err)
		}
		cfg.ClientSecret = strings.TrimRight(string(b), "\r\n")
		if cfg.ClientSecret == "" {
			return fail("%s: the file %q is empty", name("AUTH0_CLIENT_SECRET_FILE"), f)
		}
	}
	if f := get("M2MTOKEN_PRIVATE_KEY_FILE"); f != "" {
		if cfg.ClientSecret != "" {
			return fail("both a client secret (%s) and %s are set: use one way to authenticate", name("AUTH0_CLIENT_SECRET"), name("M2MTOKEN_PRIVATE_KEY_FILE"))
		}
		key, err := LoadPrivateKey(f)
		if err != nil {
			return fail("%s: %s", name("M2MTOKEN_PRIVATE_KEY_FILE"), strings.TrimPrefix(err.Error(), "m2mtoken: "))
		}
		cfg.PrivateKey = key
		cfg.AuthMethod = PrivateKeyJWT
	}
	switch m := get("M2MTOKEN_AUTH_METHOD"); m {
	case "":
	case "post", "client_secret_post":
		if cfg.PrivateKey != nil {
			return fail("%s %q does not go with %s: a key means private_key_jwt", name("M2MTOKEN_AUTH_METHOD"), m, name("M2MTOKEN_PRIVATE_KEY_FILE"))
		}
	case "basic", "client_secret_basic":
		if cfg.PrivateKey != nil {
			return fail("%s %q does not go with %s: a key means private_key_jwt", name("M2MTOKEN_AUTH_METHOD"), m, name("M2MTOKEN_PRIVATE_KEY_FILE"))
		}
		cfg.AuthMethod = ClientSecretBasic
	case "private_key_jwt":
		if cfg.PrivateKey == nil {
			return fail("%s private_key_jwt needs %s", name("M2MTOKEN_AUTH_METHOD"), name("M2MTOKEN_PRIVATE_KEY_FILE"))
		}
	default:
		return fail("%s %q: use post, basic or private_key_jwt", name("M2MTOKEN_AUTH_METHOD"), m)
	}
	if f := get("M2MTOKEN_DPOP_KEY_FILE"); f != "" {
		key, err := LoadPrivateKey(f)
		if err != nil {
			return fail("%s: %s", name("M2MTOKEN_DPOP_KEY_FILE"), strings.TrimPrefix(err.Error(), "m2mtoken: "))
		}
		cfg.DPoPKey = key
	}
	if cfg.CAFile = get("M2MTOKEN_CA_FILE"); cfg.CAFile != "" {
		if _, err := loadCAFile(cfg.CAFile); err != nil {
			return fail("%s: %v", name("M2MTOKEN_CA_FILE"), err)
		}
	}
	cfg.FieldNames = func(field string) string {
		if v, ok := envVarOf(field, func(v string) bool { return get(v) != "" }); ok {
			return name(v)
		}
		return "Config." + field
	}
	check := cfg
	if _, err := check.withDefaults(); err != nil {
		return Config{}, withNames(err, cfg.FieldNames)
	}
	return cfg, nil
}

// envPrefixes are the prefixes of the variables ConfigFromEnv reads.
var envPrefixes = []string{"AUTH0_", "M2MTOKEN_"}
