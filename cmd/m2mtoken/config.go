package main

import (
	"errors"
	"flag"
	"os"
	"strings"

	"github.com/m2mtoken/m2mtoken"
)

// credFlag is a flag that sets what m2mtoken.ConfigFromEnv reads from an
// environment variable.
type credFlag struct{ flag, env, usage string }

// credFlagDefs are the flags for the settings that say which token to get,
// each beside its variable. Every command that gets tokens (token, demo,
// agent) registers them with registerCredFlags and builds its Config with
// credFlags.config.
func credFlagDefs() []credFlag {
	return []credFlag{
		{"domain", "AUTH0_DOMAIN", "Auth0 domain, such as tenant.eu.auth0.com"},
		{"token-url", "M2MTOKEN_TOKEN_URL", "token endpoint of any OAuth 2.0 server, such as https://auth.example.com/oauth/token, instead of --domain"},
		{"client-id", "AUTH0_CLIENT_ID", "client ID"},
		{"client-secret", "AUTH0_CLIENT_SECRET", "client secret; prefer the variable or --client-secret-file: other users can see flags in the process list"},
		{"client-secret-file", "AUTH0_CLIENT_SECRET_FILE", "read the client secret from this file"},
		{"private-key-file", "M2MTOKEN_PRIVATE_KEY_FILE", "authenticate with Private Key JWT, signing with this PEM key instead of sending a secret"},
		{"key-id", "M2MTOKEN_KEY_ID", "the kid of --private-key-file as registered with the server"},
		{"auth-method", "M2MTOKEN_AUTH_METHOD", "how to send the secret: post (client_secret_post, the default) or basic (client_secret_basic)"},
		{"audience", "AUTH0_AUDIENCE", "API identifier"},
		{"scope", "AUTH0_SCOPE", "space-separated scopes"},
		{"organization", "AUTH0_ORGANIZATION", "organization ID or name"},
		{"ca-file", "M2MTOKEN_CA_FILE", "also trust the CA certificates in this PEM file, such as the one m2mtoken serve --tls --ca-out writes"},
		{"dpop-key", "M2MTOKEN_DPOP_KEY_FILE", "bind tokens to this PEM key with DPoP (a P-256 key: openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out dpop.pem)"},
	}
}

// exclusive are groups of settings of which one is given: a flag for one
// of them hides the others' variables, so that --token-url works in a shell
// that has AUTH0_DOMAIN set.
func exclusiveGroups() [][]string {
	return [][]string{
		{"AUTH0_DOMAIN", "M2MTOKEN_TOKEN_URL"},
		{"AUTH0_CLIENT_SECRET", "AUTH0_CLIENT_SECRET_FILE", "M2MTOKEN_PRIVATE_KEY_FILE"},
	}
}

// credFlags holds the values of the credential flags of one flag set.
type credFlags struct {
	fs   *flag.FlagSet
	vals map[string]*string // by variable
	// extra names the Config fields that a command sets from flags of its
	// own, such as FetchTimeout from --timeout.
	extra map[string]string
}

func registerCredFlags(fs *flag.FlagSet) *credFlags {
	c := &credFlags{fs: fs, vals: map[string]*string{}, extra: map[string]string{}}
	for _, d := range credFlagDefs() {
		c.vals[d.env] = fs.String(d.flag, "", d.usage+" (env "+d.env+")")
	}
	return c
}

func (c *credFlags) flagOf(env string) string {
	for _, d := range credFlagDefs() {
		if d.env == env {
			return d.flag
		}
	}
	return ""
}

func (c *credFlags) set() map[string]bool {
	set := map[string]bool{}
	c.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// lookup reads a variable as the command sees it: the flag if it was given,
// else the environment, unless a flag for another of its group was given.
func (c *credFlags) lookup(env string) (string, bool) {
	set := c.set()
	if f := c.flagOf(env); f != "" && set[f] {
		return *c.vals[env], true
	}
	for _, group := range exclusiveGroups() {
		for _, member := range group {
			if member == env {
				for _, other := range group {
					if set[c.flagOf(other)] {
						return "", false
					}
				}
			}
		}
	}
	return os.LookupEnv(env)
}

// name says how messages call a variable: the flag if it was given, the
// variable if it came from the environment, else both.
func (c *credFlags) name(env string) string {
	f := c.flagOf(env)
	if f == "" {
		return env
	}
	if c.set()[f] {
		return "--" + f
	}
	if v, ok := os.LookupEnv(env); ok && strings.TrimSpace(v) != "" {
		return env
	}
	return "--" + f + " or " + env
}

// fieldName says how messages call a Config field.
func (c *credFlags) fieldName(field string) string {
	if n, ok := c.extra[field]; ok {
		return n
	}
	for _, v := range m2mtoken.EnvVars() {
		if v.Field == field {
			return c.name(v.Name)
		}
	}
	return "Config." + field
}

// config returns the Config the flags and environment say, through the
// library's own m2mtoken.ConfigFromLookup, with errors that name the flags
// and variables.
func (c *credFlags) config() (m2mtoken.Config, error) {
	return m2mtoken.ConfigFromLookup(c.lookup, c.name)
}

// newSource is m2mtoken.New with errors that name the flags and variables.
func (c *credFlags) newSource(cfg m2mtoken.Config) (*m2mtoken.TokenSource, error) {
	src, err := m2mtoken.New(cfg)
	var ce *m2mtoken.ConfigError
	if errors.As(err, &ce) {
		return nil, errors.New(ce.Describe(c.fieldName))
	}
	return src, err
}
