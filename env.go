// Configuration from settings: ConfigFromLookup is the one parser of the
// settings (internal/settings lists them) that the environment, the
// m2mtoken command's flags and its agent's config file give, so that a
// program, the command, the agent and a container's environment (or the
// exports of m2mtoken serve) agree; ConfigFromEnv reads them from the
// environment. And reading CAFile.

package m2mtoken

import (
	"errors"
	"os"
	"strconv"
	"strings"

	"github.com/m2mtoken/m2mtoken/internal/atomicfile"
	"github.com/m2mtoken/m2mtoken/internal/settings"
	"github.com/m2mtoken/m2mtoken/internal/suggest"
)

// ConfigFromEnv returns a Config from the environment variables
// AUTH0_DOMAIN (or M2MTOKEN_TOKEN_URL), AUTH0_CLIENT_ID,
// AUTH0_CLIENT_SECRET (or AUTH0_CLIENT_SECRET_FILE, or
// M2MTOKEN_PRIVATE_KEY_FILE), AUTH0_AUDIENCE and the others that
// docs/configuration.md lists (the m2mtoken command reads the same). It
// checks the result as [New] does, and its errors name the variables to
// fix. Set the fields that have no variable (Cache, Logger, ...) on the
// result.
//
// When a required variable is missing and another one of the same prefix
// (AUTH0_, M2MTOKEN_) is set that is a typo of one it reads, such as
// AUTH0_CLIENTID, the error says so.
func ConfigFromEnv() (Config, error) {
	cfg, err := ConfigFromLookup(os.LookupEnv, nil)
	if ce := (*ConfigError)(nil); errors.As(err, &ce) {
		var notes []string
		for _, t := range suggest.UnreadVars(os.Environ(), settings.Names(), settings.Prefixes) {
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
// called with a variable's name and reports whether it is set. An empty
// value counts as unset.
//
// name, if not nil, says how errors call a variable: a program whose
// flags or file set the same values can name both ("--client-id or
// AUTH0_CLIENT_ID"), or its own field ("client_id"). The result's
// [Config.FieldNames] then names each field by the variable that set it,
// through name, and names "" the fields no variable sets (the program's
// user cannot set them). The m2mtoken command's flags and its agent's
// config file are read so.
func ConfigFromLookup(lookup func(name string) (string, bool), name func(envVar string) string) (Config, error) {
	named := name != nil
	if !named {
		name = func(v string) string { return v }
	}
	get := func(v string) string {
		s, _ := lookup(v)
		return strings.TrimSpace(s)
	}
	fail := func(format string, args ...any) (Config, error) {
		return Config{}, &ConfigError{format: format, args: args}
	}
	for _, g := range settings.Groups() {
		var set []string
		for _, s := range settings.All() {
			if s.Group == g.Name && get(s.Env) != "" {
				set = append(set, name(s.Env))
			}
		}
		if len(set) > 1 {
			return fail("both %s and %s are set: %s", set[0], set[1], g.Advice)
		}
	}
	cfg := Config{
		Domain:       get(settings.Domain),
		TokenURL:     get(settings.TokenURL),
		ClientID:     get(settings.ClientID),
		ClientSecret: get(settings.ClientSecret),
		Audience:     get(settings.Audience),
		Organization: get(settings.Organization),
		KeyID:        get(settings.KeyID),
	}
	if sc := strings.Fields(get(settings.Scope)); len(sc) > 0 {
		cfg.Scopes = sc
	}
	// The credential's files are followed by the source (credential.go);
	// they are read here too, so that a file that cannot be read now is
	// named in the user's words.
	if f := get(settings.ClientSecretFile); f != "" {
		b, err := atomicfile.ReadLimited(f, atomicfile.SecretFileLimit, "a client secret file")
		if err != nil {
			return fail("%s: %v", name(settings.ClientSecretFile), err)
		}
		if strings.TrimRight(string(b), "\r\n") == "" {
			return fail("%s: the file %q is empty", name(settings.ClientSecretFile), f)
		}
		cfg.ClientSecretFile = f
	}
	if f := get(settings.PrivateKeyFile); f != "" {
		if _, err := LoadPrivateKey(f); err != nil {
			return fail("%s: %s", name(settings.PrivateKeyFile), strings.TrimPrefix(err.Error(), "m2mtoken: "))
		}
		cfg.PrivateKeyFile = f
		cfg.AuthMethod = PrivateKeyJWT
	} else if cfg.KeyID != "" {
		return fail("%s is set without %s: a key ID names the private key of Private Key JWT; remove it, or set the key", name(settings.KeyID), name(settings.PrivateKeyFile))
	}
	if f := get(settings.AssertionFile); f != "" {
		b, err := atomicfile.ReadLimited(f, maxAssertion, "a client assertion file")
		if err != nil {
			return fail("%s: %v", name(settings.AssertionFile), err)
		}
		if strings.TrimSpace(string(b)) == "" {
			return fail("%s: the file %q is empty: is the process that writes the assertion running?", name(settings.AssertionFile), f)
		}
		cfg.ClientAssertionFile = f
		cfg.AuthMethod = ClientAssertion
	}
	if t := get(settings.AssertionType); t != "" {
		if cfg.ClientAssertionFile == "" {
			return fail("%s is set without %s: it is the type of the client assertion in that file", name(settings.AssertionType), name(settings.AssertionFile))
		}
		cfg.ClientAssertionType = t
	}
	switch m := get(settings.AuthMethod); m {
	case "":
	case "post", "client_secret_post", "basic", "client_secret_basic":
		if cfg.PrivateKeyFile != "" || cfg.ClientAssertionFile != "" {
			other := settings.PrivateKeyFile
			if cfg.ClientAssertionFile != "" {
				other = settings.AssertionFile
			}
			return fail("%s %q does not go with %s: it sends no secret (a key means private_key_jwt, an assertion client_assertion)", name(settings.AuthMethod), m, name(other))
		}
		if strings.HasSuffix(m, "basic") {
			cfg.AuthMethod = ClientSecretBasic
		}
	case "private_key_jwt":
		if cfg.PrivateKeyFile == "" {
			return fail("%s private_key_jwt needs %s", name(settings.AuthMethod), name(settings.PrivateKeyFile))
		}
	case "client_assertion":
		if cfg.ClientAssertionFile == "" {
			return fail("%s client_assertion needs %s", name(settings.AuthMethod), name(settings.AssertionFile))
		}
	default:
		return fail("%s %q: use post, basic, private_key_jwt or client_assertion", name(settings.AuthMethod), m)
	}
	if f := get(settings.DPoPKeyFile); f != "" {
		key, err := LoadPrivateKey(f)
		if err != nil {
			return fail("%s: %s", name(settings.DPoPKeyFile), strings.TrimPrefix(err.Error(), "m2mtoken: "))
		}
		cfg.DPoPKey = key
	}
	if v := get(settings.RequireDPoP); v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return fail("%s %q: use true or false", name(settings.RequireDPoP), v)
		}
		if on && cfg.DPoPKey == nil {
			return fail("%s is set without %s: give the key that binds the tokens", name(settings.RequireDPoP), name(settings.DPoPKeyFile))
		}
		cfg.RequireDPoP = on
	}
	if cfg.CAFile = get(settings.CAFile); cfg.CAFile != "" {
		if _, err := loadCAFile(cfg.CAFile); err != nil {
			return fail("%s: %v", name(settings.CAFile), err)
		}
	}
	cfg.FieldNames = func(field string) string {
		if v, ok := settingOf(field, func(v string) bool { return get(v) != "" }); ok {
			return name(v)
		}
		if named {
			return ""
		}
		return "Config." + field
	}
	check := cfg
	if _, err := check.withDefaults(); err != nil {
		return Config{}, withNames(err, cfg.FieldNames)
	}
	return cfg, nil
}

// settingOf returns the variable that sets field: of the variables that
// can (AUTH0_CLIENT_SECRET and AUTH0_CLIENT_SECRET_FILE set ClientSecret),
// the first one that set reports as set, else the first one.
func settingOf(field string, set func(envVar string) bool) (string, bool) {
	first := ""
	for _, s := range settings.All() {
		if s.Field != field {
			continue
		}
		if set(s.Env) {
			return s.Env, true
		}
		if first == "" {
			first = s.Env
		}
	}
	return first, first != ""
}
