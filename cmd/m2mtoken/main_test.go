// The command's test harness (the binary, built once; an issuer) and
// its top level: help, version, unknown commands and flags.

package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// bin is the m2mtoken binary, built once for the tests that run it.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "m2mtoken-bin")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "m2mtoken")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	secret = "cli-secret-CANARY-1234"
	aud    = "https://api.example.com/"
)

type result struct {
	code           int
	stdout, stderr string
}

// runBin runs the binary with a clean environment plus env.
func runBin(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return runArgv(t, env, append([]string{bin}, args...)...)
}

// runArgv runs argv, a program (such as a shell that runs the binary)
// and its arguments, with a clean environment plus env.
func runArgv(t *testing.T, env []string, argv ...string) result {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append([]string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, out.String(), errb.String()}
}

// runIn runs the command in-process in the environment env, as runBin
// runs the binary: for what needs no process of its own.
func runIn(t *testing.T, env []string, args ...string) result {
	t.Helper()
	setEnv(t, env)
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return result{code, out.String(), errb.String()}
}

func issuer(t *testing.T) *m2mtest.Server {
	s := m2mtest.NewServer(m2mtest.Client{ID: "cli", Secret: secret, Audiences: []string{aud}, Scopes: []string{"read:x"}})
	t.Cleanup(s.Close)
	return s
}

func tokenEnv(s *m2mtest.Server, cacheDir string) []string {
	return []string{"M2MTOKEN_TOKEN_URL=" + s.TokenURL(), "AUTH0_CLIENT_ID=cli", "AUTH0_CLIENT_SECRET=" + secret, "AUTH0_AUDIENCE=" + aud, "M2MTOKEN_CACHE_DIR=" + cacheDir}
}

// readExports reads serve's output up to "# serving until interrupted",
// and returns the exported variables (NAME=value) and every line.
func readExports(t *testing.T, r io.Reader) (env, lines []string) {
	t.Helper()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		lines = append(lines, line)
		if v, ok := strings.CutPrefix(line, "export "); ok {
			env = append(env, v)
		}
		if line == "# serving until interrupted" {
			return env, lines
		}
	}
	t.Fatalf("serve ended before it was ready: %q", lines)
	return nil, nil
}

func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}, {"token", "--help"}, {"token", "-h"}, {"help", "token"}, {"serve", "--help"}, {"help", "serve"}, {"demo", "--help"}} {
		r := runIn(t, nil, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage") || r.stderr != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
		}
		if len(args) == 2 && !strings.Contains(r.stdout, "Flags:") {
			t.Errorf("%v: no flags in %q", args, r.stdout)
		}
	}
	if r := runIn(t, nil, "token", "--help"); !strings.Contains(r.stdout, "(env AUTH0_CLIENT_ID)") || !strings.Contains(r.stdout, "\n  --ca-file string\n") {
		t.Errorf("token --help does not name the variables: %q", r.stdout)
	}
	// Flags are listed as the README and the errors write them, --name;
	// old spellings kept working are not listed.
	for _, cmd := range []string{"token", "serve", "demo", "agent"} {
		r := runIn(t, nil, cmd, "--help")
		_, flags, _ := strings.Cut(r.stdout, "\nFlags:\n")
		for _, l := range strings.Split(strings.TrimRight(flags, "\n"), "\n") {
			if !strings.HasPrefix(l, "  --") && !strings.HasPrefix(l, "    \t") {
				t.Errorf("%s --help: flag line %q", cmd, l)
			}
		}
		if strings.Contains(flags, "--dpop-key string") || !strings.Contains(flags, "--version\n") {
			t.Errorf("%s --help flags:\n%s", cmd, flags)
		}
	}
	if r := runIn(t, nil, "help", "nope"); r.code != 2 || r.stdout != "" {
		t.Errorf("help nope: exit %d", r.code)
	}
	for _, args := range [][]string{{"--version"}, {"version"}, {"token", "--version"}} {
		if r := runIn(t, nil, args...); r.code != 0 || !strings.HasPrefix(r.stdout, "m2mtoken ") {
			t.Errorf("%v: exit %d, %q", args, r.code, r.stdout)
		}
	}
}

func TestBadFlagsNamedAsTyped(t *testing.T) {
	for _, tc := range []struct{ arg, want string }{
		{"--audiance", "m2mtoken token: unknown flag --audiance: did you mean --audience?\nRun 'm2mtoken token --help' for its flags.\n"},
		{"-client-secert-file=x", "m2mtoken token: unknown flag --client-secert-file: did you mean --client-secret-file?\nRun 'm2mtoken token --help' for its flags.\n"},
		{"--frobnicate", "m2mtoken token: unknown flag --frobnicate\nRun 'm2mtoken token --help' for its flags.\n"},
		{"--ttl=10", "m2mtoken token: --ttl \"10\": not a duration: give a number with a unit, such as 30s, 5m or 24h\nRun 'm2mtoken token --help' for its flags.\n"},
		{"--count=x", "m2mtoken token: --count \"x\": parse error\nRun 'm2mtoken token --help' for its flags.\n"},
		{"--audience", "m2mtoken token: --audience needs a value\nRun 'm2mtoken token --help' for its flags.\n"},
	} {
		c := newFlags("token", "test")
		c.fs.Duration("ttl", 0, "")
		c.fs.Int("count", 0, "")
		c.fs.String("audience", "", "")
		c.fs.String("client-secret-file", "", "")
		var stdout, stderr strings.Builder
		ok, err := c.parse([]string{tc.arg}, &stdout, &stderr)
		if ok || !errors.Is(err, errUsage) || stdout.String() != "" || stderr.String() != tc.want {
			t.Errorf("%s: ok=%v err=%v stderr=%q, want %q", tc.arg, ok, err, stderr.String(), tc.want)
		}
	}
}

// TestUnknownCommand: a typo of a command names the command meant; any
// other word says where the commands are. Neither prints the usage.
func TestUnknownCommand(t *testing.T) {
	for _, tc := range []struct{ arg, want string }{
		{"tokn", "m2mtoken: unknown command \"tokn\"; did you mean \"token\"? Run 'm2mtoken help' for the commands\n"},
		{"agnet", "m2mtoken: unknown command \"agnet\"; did you mean \"agent\"? Run 'm2mtoken help' for the commands\n"},
		{"xyzzy", "m2mtoken: unknown command \"xyzzy\"; run 'm2mtoken help' for the commands\n"},
	} {
		var stdout, stderr strings.Builder
		if code := run([]string{tc.arg}, &stdout, &stderr); code != 2 || stdout.String() != "" || stderr.String() != tc.want {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want %q", tc.arg, code, stdout.String(), stderr.String(), tc.want)
		}
	}
}
