//go:build unix

package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	why = "its writer steers the test"
	// user plays this process's user, and other another local user, in
	// tests that run as root (they give files and directories away).
	user, other = 65534, 4242
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files and directories to other users; run the tests as root to replay these attacks")
	}
}

// mk makes a directory or (with content) a file at p, owned by uid, with mode.
func mk(t *testing.T, p string, content *string, uid int, mode os.FileMode) string {
	t.Helper()
	var err error
	if content == nil {
		err = os.Mkdir(p, 0o700)
	} else {
		err = os.WriteFile(p, []byte(*content), 0o600)
	}
	if err == nil {
		err = os.Chown(p, uid, uid)
	}
	if err == nil {
		err = os.Chmod(p, mode)
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var conf = `{"sources": []}`

// TestReadTrustedUsualFiles: the usual homes of a config file are read
// without a word: /etc (root's, 0644 and 0640), a home directory (the
// user's, 0600 or 0644, under root's /home), /tmp's sticky directory, and
// a Kubernetes ConfigMap volume (root's, links to ..data, in a directory
// of mode 1777).
func TestReadTrustedUsualFiles(t *testing.T) {
	needRoot(t)
	base := t.TempDir() // root's
	etc := mk(t, filepath.Join(base, "etc"), nil, 0, 0o755)
	home := mk(t, filepath.Join(base, "home"), nil, 0, 0o755)
	alice := mk(t, filepath.Join(home, "alice"), nil, user, 0o750)
	tmp := mk(t, filepath.Join(base, "tmp"), nil, 0, 0o777|os.ModeSticky)
	cm := mk(t, filepath.Join(base, "configmap"), nil, 0, 0o777|os.ModeSticky)
	ts := mk(t, filepath.Join(cm, "..2026_12_05_10_00_00.123456789"), nil, 0, 0o755)
	mk(t, filepath.Join(ts, "agent.json"), &conf, 0, 0o644)
	os.Symlink(filepath.Base(ts), filepath.Join(cm, "..data"))
	os.Symlink("..data/agent.json", filepath.Join(cm, "agent.json"))
	for _, tc := range []struct {
		path string
		uid  int
	}{
		{mk(t, filepath.Join(etc, "agent.json"), &conf, 0, 0o644), 0},
		{mk(t, filepath.Join(etc, "agent-group.json"), &conf, 0, 0o640), user},
		{mk(t, filepath.Join(alice, "agent.json"), &conf, user, 0o600), user},
		{mk(t, filepath.Join(alice, "agent-644.json"), &conf, user, 0o644), user},
		{mk(t, filepath.Join(tmp, "agent.json"), &conf, user, 0o600), user},
		{filepath.Join(cm, "agent.json"), 0},
		{filepath.Join(cm, "agent.json"), user},
	} {
		b, err := readTrusted(tc.path, ConfigFileLimit, "the config file", why, tc.uid)
		if err != nil || string(b) != conf {
			t.Errorf("%s as user %d: %q, %v", tc.path, tc.uid, b, err)
		}
	}
}

// TestReadTrustedRefusesOthersFiles replays the attack on the agent's
// config file: another user owns or may write (0666) the file, or a
// directory above it up to the first that root owns, and would have it
// read as if root had written it. Each must be refused, with what to run.
func TestReadTrustedRefusesOthersFiles(t *testing.T) {
	needRoot(t)
	base := t.TempDir()
	for _, tc := range []struct {
		name  string
		setup func(dir string) string // returns the file
		want  []string
	}{
		{"world-writable file", func(d string) string { return mk(t, filepath.Join(d, "agent.json"), &conf, user, 0o666) },
			[]string{"the config file", "mode 0666", "chmod go-w", why}},
		{"group-writable file", func(d string) string { return mk(t, filepath.Join(d, "agent.json"), &conf, user, 0o620) },
			[]string{"mode 0620", "chmod go-w"}},
		{"another user's file", func(d string) string { return mk(t, filepath.Join(d, "agent.json"), &conf, other, 0o644) },
			[]string{"owned by user 4242", "chown 65534"}},
		{"world-writable directory", func(d string) string {
			sub := mk(t, filepath.Join(d, "conf"), nil, user, 0o777)
			return mk(t, filepath.Join(sub, "agent.json"), &conf, user, 0o600)
		}, []string{"the directory", "mode 0777", "above the config file", "could replace the file"}},
		{"another user's directory", func(d string) string {
			sub := mk(t, filepath.Join(d, "conf"), nil, other, 0o755)
			return mk(t, filepath.Join(sub, "agent.json"), &conf, user, 0o600)
		}, []string{"the directory", "owned by user 4242"}},
		{"a directory two levels up", func(d string) string {
			up := mk(t, filepath.Join(d, "up"), nil, user, 0o757)
			sub := mk(t, filepath.Join(up, "conf"), nil, user, 0o700)
			return mk(t, filepath.Join(sub, "agent.json"), &conf, user, 0o600)
		}, []string{"up, above the config file", "mode 0757"}},
		{"root's directory that others may write", func(d string) string {
			sub := mk(t, filepath.Join(d, "shared"), nil, 0, 0o777)
			return mk(t, filepath.Join(sub, "agent.json"), &conf, user, 0o600)
		}, []string{"shared, above the config file", "mode 0777"}},
		{"another user's link", func(d string) string {
			f := mk(t, filepath.Join(d, "real.json"), &conf, user, 0o600)
			l := filepath.Join(d, "agent.json")
			os.Symlink(f, l)
			os.Lchown(l, other, other)
			return l
		}, []string{"the symbolic link", "owned by user 4242", "chown -h 65534"}},
		{"a link into another user's directory", func(d string) string {
			sub := mk(t, filepath.Join(d, "theirs"), nil, other, 0o755)
			f := mk(t, filepath.Join(sub, "agent.json"), &conf, user, 0o600)
			l := filepath.Join(d, "agent.json")
			os.Symlink(f, l)
			return l
		}, []string{"theirs, above the config file", "owned by user 4242"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := mk(t, filepath.Join(base, strings.ReplaceAll(tc.name, " ", "-")), nil, user, 0o755)
			p := tc.setup(d)
			_, err := readTrusted(p, ConfigFileLimit, "the config file", why, user)
			if err == nil {
				t.Fatal("read")
			}
			t.Log(err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v\nlacks %q", err, w)
				}
			}
		})
	}
}

// TestReadTrustedBounded: a trusted file is still read with its limit
// (root's /dev/zero is refused first for its mode), and its missing
// file's name is shown only if it looks like a path.
func TestReadTrustedBounded(t *testing.T) {
	p := filepath.Join(t.TempDir(), "agent.json")
	os.WriteFile(p, []byte(strings.Repeat(" ", 2000)), 0o600)
	var tl *TooLargeError
	if _, err := ReadTrusted(p, 1000, "the config file", why); !errors.As(err, &tl) {
		t.Fatalf("over its limit: %v", err)
	}
	if _, err := ReadTrusted("/dev/zero", 1000, "the config file", why); err == nil || !strings.Contains(err.Error(), "chmod go-w /dev/zero") {
		t.Fatalf("/dev/zero: %v", err)
	}
}

// TestOthersMayRead: a key file of mode 0644 gets a warning that says
// how to fix it, also through a Kubernetes-style link; 0600 gets none.
func TestOthersMayRead(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "key.pem")
	os.WriteFile(key, []byte("k"), 0o600)
	if w := ReadableWarning("--private-key-file", key); w != "" {
		t.Fatalf("0600: %q", w)
	}
	os.Chmod(key, 0o644)
	link := filepath.Join(dir, "link.pem")
	os.Symlink(key, link)
	for _, p := range []string{key, link} {
		w := ReadableWarning("--private-key-file", p)
		for _, want := range []string{"--private-key-file " + p, "mode 0644", "chmod 600 " + p, "defaultMode: 0400"} {
			if !strings.Contains(w, want) {
				t.Errorf("%q lacks %q", w, want)
			}
		}
	}
}
