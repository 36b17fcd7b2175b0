// New's checks: what a user sees for each mistake in what to serve.

package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/m2mtoken/m2mtoken"
)

func TestAgentFlagErrors(t *testing.T) {
	spec := Source{Name: "default", Config: m2mtoken.Config{TokenURL: "http://127.0.0.1:1/token", ClientID: "c", ClientSecret: "s"}}
	dir := t.TempDir()
	for _, tc := range []struct {
		name                    string
		listens, sinks, proxies []string
		group                   string
		want                    []string
	}{
		{"nothing", nil, nil, nil, "", []string{"nothing to serve", "--listen"}},
		{"all interfaces", []string{"0.0.0.0:8080"}, nil, nil, "", []string{`--listen "0.0.0.0:8080"`, "loopback"}},
		{"no host", []string{":8080"}, nil, nil, "", []string{`--listen ":8080"`, "loopback"}},
		{"lan address", []string{"192.168.1.2:8080"}, nil, nil, "", []string{"loopback"}},
		{"hostname", []string{"example.com:8080"}, nil, nil, "", []string{"loopback"}},
		{"no port", []string{"127.0.0.1"}, nil, nil, "", []string{"unix:PATH or 127.0.0.1:PORT"}},
		{"empty unix", []string{"unix:"}, nil, nil, "", []string{"socket's path"}},
		{"sink syntax", nil, []string{"default"}, nil, "", []string{`--sink "default"`, "NAME=PATH"}},
		{"sink source", nil, []string{"billing=" + filepath.Join(dir, "t")}, nil, "", []string{"--sink billing=", `no source named "billing"`, "default"}},
		{"sink dir", nil, []string{"default=/nonexistent/dir/t"}, nil, "", []string{"--sink", "/nonexistent/dir", "must exist"}},
		{"proxy syntax", nil, nil, []string{"default=127.0.0.1:0"}, "", []string{"NAME=LISTEN=UPSTREAM"}},
		{"proxy listen", nil, nil, []string{"default=0.0.0.0:9000=https://api.example.com"}, "", []string{"--proxy default=LISTEN", "loopback"}},
		{"proxy upstream", nil, nil, []string{"default=127.0.0.1:0=api.example.com"}, "", []string{"UPSTREAM", "absolute http or https URL"}},
		{"proxy plain http", nil, nil, []string{"default=127.0.0.1:0=http://api.example.com"}, "", []string{"UPSTREAM", "https"}},
		{"proxy empty port", nil, nil, []string{"default=127.0.0.1:0=https://127.0.0.1:"}, "", []string{`UPSTREAM "https://127.0.0.1:" has an empty port`}},
		{"proxy locahost", nil, nil, []string{"default=127.0.0.1:0=http://locahost:8080"}, "", []string{`"locahost" is not a loopback name: did you mean localhost?`}},
		{"proxy query", nil, nil, []string{"default=127.0.0.1:0=https://api.example.com/?a=b"}, "", []string{"query"}},
		{"proxy source", nil, nil, []string{"api=127.0.0.1:0=https://api.example.com"}, "", []string{`no source named "api"`}},
		{"group without socket", []string{"127.0.0.1:0"}, nil, nil, "root", []string{"--group", "Unix socket"}},
		{"no such group", []string{"unix:" + filepath.Join(dir, "s")}, nil, nil, "no-such-group-here", []string{`--group "no-such-group-here": no such group`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Sources: []Source{spec}, Group: tc.group}
			for _, l := range tc.listens {
				cfg.Listeners = append(cfg.Listeners, Listener{l})
			}
			// The command parses these, and reports their errors as usage
			// errors.
			var err error
			parse := func(vs []string, f func(string) error) {
				for _, v := range vs {
					if err == nil {
						err = f(v)
					}
				}
			}
			parse(tc.sinks, func(v string) error { s, err := ParseSink(v); cfg.Sinks = append(cfg.Sinks, s); return err })
			parse(tc.proxies, func(v string) error { p, err := ParseProxy(v); cfg.Proxies = append(cfg.Proxies, p); return err })
			if err != nil {
				checkError(t, flagError(err), tc.want)
				return
			}
			_, err = New(cfg)
			checkError(t, err, tc.want)
		})
	}
}

// checkError checks that err is a *FlagError and says every one of want.
func checkError(t *testing.T, err error, want []string) {
	t.Helper()
	var fe *FlagError
	if err == nil || !errors.As(err, &fe) {
		t.Fatalf("error %v, want a *FlagError", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
}

// TestAgentRefusesAnOpenSinkDirectory: a sink directory that others may
// write, where another user could plant a link for the agent's writes to
// follow, is refused by New, with its name and why.
func TestAgentRefusesAnOpenSinkDirectory(t *testing.T) {
	needRoot(t)
	s := issuer(t)
	for name, prepare := range map[string]func(string) error{
		"world-writable":        func(d string) error { return os.Chmod(d, 0o777|os.ModeSticky) },
		"owned by another user": func(d string) error { return os.Chown(d, nobody, nobody) },
	} {
		dir := filepath.Join(t.TempDir(), "sinks")
		os.Mkdir(dir, 0o700)
		if err := prepare(dir); err != nil {
			t.Fatal(err)
		}
		_, err := New(Config{Sources: []Source{source(s)}, Sinks: []Sink{{"default", filepath.Join(dir, "token")}}})
		var fe *FlagError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), dir) {
			t.Fatalf("%s: %v; want the sink directory refused", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
}
