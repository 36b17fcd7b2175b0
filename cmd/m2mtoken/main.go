// Command m2mtoken gets OAuth 2.0 client-credentials tokens for shells and
// cron jobs, runs a local Auth0-compatible issuer, and demonstrates the
// library under load.
//
//	m2mtoken token   print an access token (cached in a file between runs)
//	m2mtoken serve   run a local test issuer and a protected API
//	m2mtoken demo    drive a protected API through the library and report
//	m2mtoken agent   hold tokens and hand them to local processes in any language
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/suggest"
)

const usage = `m2mtoken: OAuth 2.0 client-credentials tokens that never expire.

Usage:
  m2mtoken token [flags]   print an access token for scripts (cached between runs)
  m2mtoken serve [flags]   run a local Auth0-compatible issuer and API for development and tests
  m2mtoken demo  [flags]   run a load through the library against a local issuer and API
  m2mtoken agent [flags]   hold tokens for every process on this host: a local token endpoint,
                           files and an egress proxy, refreshed in the background
  m2mtoken version         print the version
  m2mtoken help COMMAND    print a command's flags (or: m2mtoken COMMAND --help)

Settings come from flags or from the environment variables the library's
m2mtoken.ConfigFromEnv reads: AUTH0_DOMAIN, AUTH0_CLIENT_ID,
AUTH0_CLIENT_SECRET, AUTH0_AUDIENCE, ...
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks errors in the command line, already reported: exit
// status 2.
var errUsage = errors.New("usage")

// commands are the subcommands, by name.
func commands() map[string]func(args []string, stdout, stderr io.Writer) error {
	return map[string]func(args []string, stdout, stderr io.Writer) error{
		"token": cmdToken,
		"serve": cmdServe,
		"demo":  cmdDemo,
		"agent": cmdAgent,
	}
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "m2mtoken", version())
		return 0
	case "help", "--help", "-help", "-h":
		if len(args) > 1 && args[0] == "help" {
			if _, ok := commands()[args[1]]; ok {
				return run([]string{args[1], "--help"}, stdout, stderr)
			}
			fmt.Fprintf(stderr, "m2mtoken: no command %q; run 'm2mtoken help' for the commands\n", args[1])
			return 2
		}
		fmt.Fprint(stdout, usage)
		return 0
	}
	cmd, ok := commands()[args[0]]
	if !ok {
		if best := suggest.Nearest(args[0], slices.Sorted(maps.Keys(commands()))); best != "" {
			fmt.Fprintf(stderr, "m2mtoken: unknown command %q; did you mean %q? Run 'm2mtoken help' for the commands\n", args[0], best)
			return 2
		}
		fmt.Fprintf(stderr, "m2mtoken: unknown command %q; run 'm2mtoken help' for the commands\n", args[0])
		return 2
	}
	err := cmd(args[1:], stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		// Library errors start with "m2mtoken: " too: say it once.
		fmt.Fprintln(stderr, "m2mtoken:", strings.TrimPrefix(err.Error(), "m2mtoken: "))
		return 1
	}
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// command is a subcommand's flag set and its help.
type command struct {
	fs          *flag.FlagSet
	synopsis    string
	showVersion *bool
	// hidden are old spellings of flags, kept working for those who use
	// them but left out of --help, with the name they stand for: a typo of
	// one suggests the new name.
	hidden map[string]string
}

// newFlags returns a flag set that reports its own errors: --help prints
// the usage to stdout, a bad flag one line to stderr.
func newFlags(name, synopsis string) *command {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	c := &command{fs: fs, synopsis: synopsis, hidden: map[string]string{}}
	c.showVersion = fs.Bool("version", false, "print the version and exit")
	return c
}

// parse parses args. It returns false when the command should not run:
// after --help or --version (err is flag.ErrHelp or nil), or after a bad
// command line, reported to stderr (err is errUsage).
func (c *command) parse(args []string, stdout, stderr io.Writer) (bool, error) {
	name := c.fs.Name()
	if err := c.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, "Usage: m2mtoken %s [flags]\n\n%s\n\nFlags:\n", name, c.synopsis)
			c.printFlags(stdout)
			return false, flag.ErrHelp
		}
		fmt.Fprintf(stderr, "m2mtoken %s: %s\nRun 'm2mtoken %s --help' for its flags.\n", name, c.describeParseError(err), name)
		return false, errUsage
	}
	if c.fs.NArg() > 0 {
		fmt.Fprintf(stderr, "m2mtoken %s: unexpected argument %q\nRun 'm2mtoken %s --help' for its flags.\n", name, c.fs.Arg(0), name)
		return false, errUsage
	}
	if *c.showVersion {
		fmt.Fprintln(stdout, "m2mtoken", version())
		return false, nil
	}
	return true, nil
}

// alias makes old, a flag's former name, set the same value as the flag
// now called name, without showing it in --help.
func (c *command) alias(old, name string) {
	c.fs.Var(c.fs.Lookup(name).Value, old, "old name of --"+name)
	c.hidden[old] = name
}

// printFlags lists the flags as the README and the errors write them
// (--name), in the layout of flag.PrintDefaults.
func (c *command) printFlags(w io.Writer) {
	c.fs.VisitAll(func(f *flag.Flag) {
		if _, ok := c.hidden[f.Name]; ok {
			return
		}
		typ, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if typ != "" {
			line += " " + typ
		}
		line += "\n    \t" + strings.ReplaceAll(usage, "\n", "\n    \t")
		if def := f.DefValue; def != "" && def != "false" && def != "0" && def != "0s" && def != "[]" {
			if typ == "string" {
				def = strconv.Quote(def)
			}
			line += " (default " + def + ")"
		}
		fmt.Fprintln(w, line)
	})
}

// describeParseError words the flag package's error in the command's
// terms, naming flags as the README spells them (--name): an unknown flag
// with the nearest defined flag when one is close enough to be a typo, a
// bad duration with the form it takes, a missing value as such.
func (c *command) describeParseError(err error) string {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
		return "--" + strings.TrimLeft(name, "-") + " needs a value"
	}
	var value, flagName, reason string
	if _, scanErr := fmt.Sscanf(msg, "invalid value %q for flag %s", &value, &flagName); scanErr == nil {
		_, reason, _ = strings.Cut(msg, " for flag "+flagName+" ")
		flagName = strings.TrimSuffix(strings.TrimLeft(flagName, "-"), ":")
		if f := c.fs.Lookup(flagName); f != nil {
			if g, ok := f.Value.(flag.Getter); ok {
				if _, isDuration := g.Get().(time.Duration); isDuration {
					reason = "not a duration: give a number with a unit, such as 30s, 5m or 24h"
				}
			}
		}
		return fmt.Sprintf("--%s %q: %s", flagName, value, reason)
	}
	name, ok := strings.CutPrefix(msg, "flag provided but not defined: ")
	if !ok {
		return msg
	}
	name = strings.TrimLeft(name, "-")
	msg = "unknown flag --" + name
	var names []string
	c.fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	if best := suggest.Nearest(name, names); best != "" {
		if now, ok := c.hidden[best]; ok {
			best = now
		}
		return msg + ": did you mean --" + best + "?"
	}
	names = slices.DeleteFunc(names, func(n string) bool { _, ok := c.hidden[n]; return ok })
	// A short form of a longer name: --secret for --client-secret.
	if words := suggest.Words(name, names); len(words) > 0 {
		return msg + ": did you mean --" + strings.Join(words, " or --") + "?"
	}
	return msg
}

// usageError reports a bad combination of flags: one line, and where the
// help is.
func (c *command) usageError(stderr io.Writer, format string, args ...any) error {
	name := c.fs.Name()
	fmt.Fprintf(stderr, "m2mtoken %s: %s\nRun 'm2mtoken %s --help' for its flags.\n", name, fmt.Sprintf(format, args...), name)
	return errUsage
}
