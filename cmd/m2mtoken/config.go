package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/internal/settings"
	"github.com/m2mtoken/m2mtoken/internal/suggest"
)

// credFlag is a flag that sets what m2mtoken.ConfigFromEnv reads from an
// environment variable.
type credFlag struct {
	flag, env, usage string
	isBool           bool
}

// credFlagDefs are the flags for the settings that say which token to get:
// one per setting of internal/settings (the variables that
// m2mtoken.ConfigFromEnv reads), named by its rule and described as the
// setting is. Every command that gets tokens (token, agent) registers
// them with registerCredFlags and builds its Config with
// credFlags.config.
func credFlagDefs() []credFlag {
	notes := map[string]string{
		settings.ClientSecret: "; prefer the variable or --client-secret-file: other users can see flags in the process list",
		settings.DPoPKeyFile:  " (to make one: openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out dpop.pem)",
	}
	var defs []credFlag
	for _, s := range settings.All() {
		defs = append(defs, credFlag{flag: settings.Flag(s.Env), env: s.Env, usage: s.Meaning + notes[s.Env], isBool: s.Bool})
	}
	return defs
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
	vals map[string]func() string // by variable
	// extra names the Config fields that a command sets from flags of its
	// own, such as FetchTimeout from --timeout.
	extra map[string]string
	// names names the fields that the flags and variables set, as
	// m2mtoken.ConfigFromLookup does; set by config.
	names func(field string) string
}

func registerCredFlags(cmd *command) *credFlags {
	fs := cmd.fs
	c := &credFlags{fs: fs, vals: map[string]func() string{}, extra: map[string]string{}}
	for _, d := range credFlagDefs() {
		usage := d.usage + " (env " + d.env + ")"
		if d.isBool {
			b := fs.Bool(d.flag, false, usage)
			c.vals[d.env] = func() string { return strconv.FormatBool(*b) }
			continue
		}
		v := fs.String(d.flag, "", usage)
		c.vals[d.env] = func() string { return *v }
	}
	for old, name := range credFlagAliases() {
		cmd.alias(old, name)
	}
	return c
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
// else the environment, unless a flag for another setting of its group
// (internal/settings) was given.
func (c *credFlags) lookup(env string) (string, bool) {
	set := c.set()
	if val, ok := c.vals[env]; ok && set[settings.Flag(env)] {
		return val(), true
	}
	if s, ok := settings.Of(env); ok && s.Group != "" {
		for _, other := range settings.All() {
			if other.Group == s.Group && set[settings.Flag(other.Env)] {
				return "", false
			}
		}
	}
	return os.LookupEnv(env)
}

// name says how messages call a variable: the flag if it was given, the
// variable if it came from the environment, else both.
func (c *credFlags) name(env string) string {
	if _, ok := c.vals[env]; !ok {
		return env
	}
	f := settings.Flag(env)
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
	if c.names == nil {
		return ""
	}
	return c.names(field)
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
	c.names = cfg.FieldNames
	cfg.FieldNames = c.fieldName
	return cfg, nil
}

// fileWarnings are warnings about the files that hold the credential: a
// secret or key file that its group or others may read. Each names the
// flag or variable that gave the file.
func (c *credFlags) fileWarnings() []string {
	return settings.FileWarnings(c.lookup, c.name)
}

// noSettingsHint ends the error of a command given no setting at all: a
// newcomer without a tenant can still get a token.
const noSettingsHint = "to try it without a tenant, run 'm2mtoken serve' in another shell and paste the export lines it prints"

// nothingSet reports whether no flag or variable of the library's is set.
func (c *credFlags) nothingSet() bool {
	for _, v := range settings.Names() {
		if s, ok := c.lookup(v); ok && strings.TrimSpace(s) != "" {
			return false
		}
	}
	return true
}

// unreadVars returns the variables of our prefixes (AUTH0_, M2MTOKEN_)
// that are set, are read by nothing, and are a typo of one that is:
// AUTH0_CLIENTID for AUTH0_CLIENT_ID.
func unreadVars(environ []string) []suggest.Typo {
	read := append(slices.Clone(commandVars), settings.Names()...)
	return suggest.UnreadVars(environ, read, settings.Prefixes)
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
