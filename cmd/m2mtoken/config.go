package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/internal/atomicfile"
	"github.com/m2mtoken/m2mtoken/internal/suggest"
)

// credFlag is a flag that sets what m2mtoken.ConfigFromEnv reads from an
// environment variable.
type credFlag struct{ flag, env, usage string }

// credFlagDefs are the flags for the settings that say which token to get:
// one per variable that m2mtoken.ConfigFromEnv reads, described as the
// library describes the variable. Every command that gets tokens (token,
// demo, agent) registers them with registerCredFlags and builds its Config
// with credFlags.config.
func credFlagDefs() []credFlag {
	flags := map[string]string{
		"AUTH0_DOMAIN": "domain", "M2MTOKEN_TOKEN_URL": "token-url", "AUTH0_CLIENT_ID": "client-id",
		"AUTH0_CLIENT_SECRET": "client-secret", "AUTH0_CLIENT_SECRET_FILE": "client-secret-file",
		"M2MTOKEN_PRIVATE_KEY_FILE": "private-key-file", "M2MTOKEN_KEY_ID": "key-id", "M2MTOKEN_AUTH_METHOD": "auth-method",
		"AUTH0_AUDIENCE": "audience", "AUTH0_SCOPE": "scope", "AUTH0_ORGANIZATION": "organization", "M2MTOKEN_CA_FILE": "ca-file",
		"M2MTOKEN_DPOP_KEY_FILE": "dpop-key-file",
	}
	notes := map[string]string{
		"AUTH0_CLIENT_SECRET":    "; prefer the variable or --client-secret-file: other users can see flags in the process list",
		"M2MTOKEN_DPOP_KEY_FILE": " (to make one: openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out dpop.pem)",
	}
	var defs []credFlag
	for _, v := range m2mtoken.EnvVars() {
		f, ok := flags[v.Name]
		if !ok {
			f = strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(strings.TrimPrefix(v.Name, "AUTH0_"), "M2MTOKEN_"), "_", "-"))
		}
		defs = append(defs, credFlag{flag: f, env: v.Name, usage: v.Meaning + notes[v.Name]})
	}
	return defs
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

// credFlagAliases are former names of credential flags, kept working:
// --dpop-key reads a file, and every other setting that does says so in
// its name (--dpop-key-file, M2MTOKEN_DPOP_KEY_FILE, "dpop_key_file").
func credFlagAliases() map[string]string {
	return map[string]string{"dpop-key": "dpop-key-file"}
}

// commandVars are the variables the command reads besides those of
// m2mtoken.ConfigFromEnv.
var commandVars = []string{"M2MTOKEN_CACHE_DIR", "M2MTOKEN_AGENT_CONFIG"}

// credFlags holds the values of the credential flags of one flag set.
type credFlags struct {
	fs   *flag.FlagSet
	vals map[string]*string // by variable
	// extra names the Config fields that a command sets from flags of its
	// own, such as FetchTimeout from --timeout.
	extra map[string]string
}

func registerCredFlags(cmd *command) *credFlags {
	fs := cmd.fs
	c := &credFlags{fs: fs, vals: map[string]*string{}, extra: map[string]string{}}
	for _, d := range credFlagDefs() {
		c.vals[d.env] = fs.String(d.flag, "", d.usage+" (env "+d.env+")")
	}
	for old, name := range credFlagAliases() {
		cmd.alias(old, name)
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
	aliases := credFlagAliases()
	c.fs.Visit(func(f *flag.Flag) {
		if name, ok := aliases[f.Name]; ok {
			set[name] = true
			return
		}
		set[f.Name] = true
	})
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

// fieldName says how messages call a Config field: by the flag or
// variable the user set (of --client-secret, --client-secret-file and
// their variables, the one given), or "" for a field that no flag or
// variable of the command sets, so that the library leaves out advice to
// change it.
func (c *credFlags) fieldName(field string) string {
	if n, ok := c.extra[field]; ok {
		return n
	}
	first := ""
	for _, v := range m2mtoken.EnvVars() {
		if v.Field != field {
			continue
		}
		if s, _ := c.lookup(v.Name); strings.TrimSpace(s) != "" {
			return c.name(v.Name)
		}
		if first == "" {
			first = v.Name
		}
	}
	if first == "" {
		return ""
	}
	return c.name(first)
}

// config returns the Config the flags and environment say, through the
// library's own m2mtoken.ConfigFromLookup, with errors and hints that name
// the flags and variables.
func (c *credFlags) config() (m2mtoken.Config, error) {
	cfg, err := m2mtoken.ConfigFromLookup(c.lookup, c.name)
	if err != nil {
		if c.nothingSet() {
			err = fmt.Errorf("%w; %s", err, noSettingsHint)
		}
		return cfg, err
	}
	cfg.FieldNames = c.fieldName
	return cfg, nil
}

// fileWarnings are warnings about the files that hold the credential: a
// secret or key file that its group or others may read. Each names the
// flag or variable that gave the file.
func (c *credFlags) fileWarnings() []string {
	var out []string
	for _, v := range []string{"AUTH0_CLIENT_SECRET_FILE", "M2MTOKEN_PRIVATE_KEY_FILE", "M2MTOKEN_DPOP_KEY_FILE"} {
		if p, _ := c.lookup(v); strings.TrimSpace(p) != "" {
			if w := atomicfile.ReadableWarning(c.name(v), strings.TrimSpace(p)); w != "" {
				out = append(out, w)
			}
		}
	}
	return out
}

// noSettingsHint ends the error of a command given no setting at all: a
// newcomer without a tenant can still get a token.
const noSettingsHint = "to try it without a tenant, run 'm2mtoken serve' in another shell and paste the export lines it prints"

// nothingSet reports whether no flag or variable of the library's is set.
func (c *credFlags) nothingSet() bool {
	for _, v := range m2mtoken.EnvVars() {
		if s, ok := c.lookup(v.Name); ok && strings.TrimSpace(s) != "" {
			return false
		}
	}
	return true
}

// unreadVars returns the variables of our prefixes (AUTH0_, M2MTOKEN_)
// that are set, are read by nothing, and are a typo of one that is:
// AUTH0_CLIENTID for AUTH0_CLIENT_ID.
func unreadVars(environ []string) []suggest.Typo {
	read := slices.Clone(commandVars)
	for _, v := range m2mtoken.EnvVars() {
		read = append(read, v.Name)
	}
	return suggest.UnreadVars(environ, read, []string{"AUTH0_", "M2MTOKEN_"})
}

// warnUnreadVars prints a line for each of unreadVars.
func warnUnreadVars(stderr io.Writer, environ []string) {
	for _, t := range unreadVars(environ) {
		fmt.Fprintln(stderr, "m2mtoken: warning:", t)
	}
}

// newSource is m2mtoken.New with errors that name the flags and variables
// (through Config.FieldNames), without the library's "m2mtoken: " prefix.
func (c *credFlags) newSource(cfg m2mtoken.Config) (*m2mtoken.TokenSource, error) {
	cfg.FieldNames = c.fieldName
	src, err := m2mtoken.New(cfg)
	var ce *m2mtoken.ConfigError
	if errors.As(err, &ce) {
		return nil, errors.New(strings.TrimPrefix(ce.Error(), "m2mtoken: "))
	}
	return src, err
}
