// Command m2mtoken gets OAuth 2.0 client-credentials tokens for shells and
// cron jobs, runs a local Auth0-compatible issuer, and demonstrates the
// library under load.
//
//	m2mtoken token   print an access token (cached in a file between runs)
//	m2mtoken serve   run a local test issuer
//	m2mtoken demo    drive a protected API through the library and report
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

const usage = `m2mtoken: OAuth 2.0 client-credentials tokens that never expire.

Usage:
  m2mtoken token [flags]   print an access token for scripts (cached between runs)
  m2mtoken serve [flags]   run a local Auth0-compatible issuer for development and tests
  m2mtoken demo  [flags]   run a load through the library against a local issuer and API
  m2mtoken version         print the version

Run 'm2mtoken COMMAND --help' for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks errors in the command line: exit status 2.
var errUsage = errors.New("usage")

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "token":
		err = cmdToken(args[1:], stdout, stderr)
	case "serve":
		err = cmdServe(args[1:], stdout, stderr)
	case "demo":
		err = cmdDemo(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "m2mtoken", version())
		return 0
	case "help", "--help", "-help", "-h":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "m2mtoken: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintln(stderr, "m2mtoken:", err)
		return 1
	}
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// newFlags returns a flag set that prints its usage to stderr, with a
// --version flag like every subcommand has.
func newFlags(name, synopsis string, stderr io.Writer) (*flag.FlagSet, *bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: m2mtoken %s [flags]\n\n%s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	v := fs.Bool("version", false, "print the version and exit")
	return fs, v
}

// parse parses args, mapping a bad command line to errUsage.
func parse(fs *flag.FlagSet, args []string, showVersion *bool, stdout io.Writer) (bool, error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return false, err
		}
		return false, errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "m2mtoken %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return false, errUsage
	}
	if *showVersion {
		fmt.Fprintln(stdout, "m2mtoken", version())
		return false, nil
	}
	return true, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
