//go:build unix

// The files the command reads: each is read with a bound (a file named by
// mistake, such as /dev/zero, is an error, not an exhausted memory), the
// agent's config file only if no other user may write it, and a file
// that holds a credential and that other users may read gets a warning.

package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/atomicfile"
)

// TestFilesReadWithBounds replays the exhaustion of memory by a file
// named by mistake: --config /dev/zero, "client_secret_file": "/dev/zero"
// and the other flags that name a file read until the process ran out of
// memory. Each runs the binary with 2 GB of address space (ulimit -v), as
// a container's limit would bound it, and must fail at once with an error
// that names the flag, variable or field, and the limit.
func TestFilesReadWithBounds(t *testing.T) {
	dir := t.TempDir()
	sock := "unix:" + filepath.Join(dir, "agent.sock")
	conf := func(fields string) string {
		f := filepath.Join(t.TempDir(), "agent.json")
		os.WriteFile(f, []byte(`{"sources": [{"name": "api", "domain": "t.auth0.com", "client_id": "c", `+fields+`}]}`), 0o600)
		return f
	}
	huge := filepath.Join(dir, "huge.json")
	if err := os.WriteFile(huge, nil, 0o600); err != nil || os.Truncate(huge, 17<<20) != nil {
		t.Fatal("making a sparse file of 17 MiB failed")
	}
	creds := []string{"AUTH0_CLIENT_ID=c", "AUTH0_DOMAIN=t.auth0.com"}
	withSecret := append([]string{"AUTH0_CLIENT_SECRET=s"}, creds...)
	for _, tc := range []struct {
		env  []string
		args []string
		want string
	}{
		{creds, []string{"token", "--no-cache", "--client-secret-file", "/dev/zero"}, "--client-secret-file: /dev/zero holds more than 64 KiB, the most a client secret file may hold"},
		{append([]string{"AUTH0_CLIENT_SECRET_FILE=/dev/zero"}, creds...), []string{"token", "--no-cache"}, "AUTH0_CLIENT_SECRET_FILE: /dev/zero holds more than 64 KiB"},
		{creds, []string{"token", "--no-cache", "--private-key-file", "/dev/zero"}, "--private-key-file: reading the private key: /dev/zero holds more than 1 MiB, the most a PEM private key file may hold"},
		{withSecret, []string{"token", "--no-cache", "--dpop-key-file", "/dev/zero"}, "--dpop-key-file: reading the private key: /dev/zero holds more than 1 MiB"},
		{withSecret, []string{"token", "--no-cache", "--ca-file", "/dev/zero"}, "--ca-file: /dev/zero holds more than 16 MiB, the most a CA file may hold"},
		{creds, []string{"agent", "--client-secret-file", "/dev/zero", "--listen", sock}, "--client-secret-file: /dev/zero holds more than 64 KiB"},
		{nil, []string{"agent", "--config", "/dev/zero", "--listen", sock}, "--config: the config file /dev/zero may be written by its group or others (mode 0666)"},
		{nil, []string{"agent", "--config", huge, "--listen", sock}, "--config: " + huge + " holds more than 16 MiB, the most the config file may hold"},
		{nil, []string{"agent", "--config", conf(`"client_secret_file": "/dev/zero"`), "--listen", sock}, `source "api": "client_secret_file": /dev/zero holds more than 64 KiB`},
		{nil, []string{"agent", "--config", conf(`"private_key_file": "/dev/zero"`), "--listen", sock}, `source "api": "private_key_file": reading the private key: /dev/zero holds more than 1 MiB`},
		{[]string{"S=s"}, []string{"agent", "--config", conf(`"client_secret_env": "S", "ca_file": "/dev/zero"`), "--listen", sock}, `source "api": "ca_file": /dev/zero holds more than 16 MiB`},
	} {
		start := time.Now()
		r := runArgv(t, tc.env, append([]string{"sh", "-c", `ulimit -v 2000000 && exec "$0" "$@"`, bin}, tc.args...)...)
		if r.code != 1 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, want 1 and %q:\n%.600s", tc.args, r.code, tc.want, r.stderr)
		}
		t.Logf("%v: %v, %s", tc.args, time.Since(start).Round(time.Millisecond), strings.TrimSpace(r.stderr))
	}
}

// TestAgentConfigFileOthersMayWrite replays the attack on the config
// file: another user who may write it (mode 0666, a directory that others
// may write, or a file of their own) points token_url at a listener of
// theirs, and the agent sent the client secret there. Each is refused
// before any request, with what to run; the same file with mode 0600 or
// 0644 is used.
func TestAgentConfigFileOthersMayWrite(t *testing.T) {
	// attacker is a token endpoint of the attacker's, and a config file
	// that points the source at it, in dir, with mode (and owner uid, if
	// not -1): what another user who may write the file would write.
	attacker := func(t *testing.T, dir string, mode os.FileMode, uid int) (conf string, stolen chan string) {
		stolen = make(chan string, 16)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.ParseForm()
			stolen <- r.PostForm.Get("client_secret")
			http.Error(w, "no", http.StatusUnauthorized)
		}))
		t.Cleanup(srv.Close)
		conf = filepath.Join(dir, "agent.json")
		os.WriteFile(conf, []byte(fmt.Sprintf(`{"sources": [{"name": "api", "token_url": %q, "client_id": "c", "client_secret_env": "API_SECRET"}]}`, srv.URL)), 0o600)
		if err := os.Chmod(conf, mode); err != nil {
			t.Fatal(err)
		}
		if uid >= 0 {
			if err := os.Chown(conf, uid, uid); err != nil {
				t.Fatal(err)
			}
		}
		return conf, stolen
	}
	openDir := func(t *testing.T) string {
		d := filepath.Join(t.TempDir(), "shared")
		os.Mkdir(d, 0o777)
		os.Chmod(d, 0o777)
		return d
	}
	type attack struct {
		name string
		dir  func(t *testing.T) string
		mode os.FileMode
		uid  int
		want string
	}
	attacks := []attack{
		{"mode 0666", func(t *testing.T) string { return t.TempDir() }, 0o666, -1, "may be written by its group or others (mode 0666)"},
		{"group-writable", func(t *testing.T) string { return t.TempDir() }, 0o660, -1, "run chmod go-w"},
		{"a directory others may write", openDir, 0o600, -1, "shared, above the config file"},
	}
	if os.Geteuid() == 0 {
		attacks = append(attacks, attack{"another user's file", func(t *testing.T) string { return t.TempDir() }, 0o644, 65534, "is owned by user 65534"})
	} else {
		t.Log("not root: the file of another user is not replayed (it needs chown)")
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			conf, stolen := attacker(t, a.dir(t), a.mode, a.uid)
			p := launchAgent(t, []string{"API_SECRET=" + secret}, "--config", conf, "--listen", "unix:"+filepath.Join(t.TempDir(), "a.sock"))
			select {
			case <-p.done:
			case s := <-stolen:
				t.Fatalf("the attacker's token endpoint got a request (client_secret %d bytes)", len(s))
			case <-time.After(waitFor):
				t.Fatal("the agent neither stopped nor sent a request")
			}
			if p.err == nil || !strings.Contains(p.err.Error(), a.want) || !strings.Contains(p.err.Error(), "--config: ") {
				t.Fatalf("error %v; want %q", p.err, a.want)
			}
			t.Log(p.err)
		})
	}
	// The same file, that only its owner may write, is used.
	for _, mode := range []os.FileMode{0o600, 0o644} {
		t.Run(fmt.Sprintf("mode %04o", mode), func(t *testing.T) {
			conf, stolen := attacker(t, t.TempDir(), mode, -1)
			p := launchAgent(t, []string{"API_SECRET=" + secret}, "--config", conf, "--listen", "unix:"+filepath.Join(t.TempDir(), "a.sock"))
			select {
			case <-stolen:
			case <-p.done:
				t.Fatalf("mode %04o: %v", mode, p.err)
			case <-time.After(waitFor):
				t.Fatalf("mode %04o: no token request", mode)
			}
		})
	}
}

// TestCredentialFileOthersMayReadWarns: a secret or key file that group
// or others may read (Kubernetes mounts secrets 0644 by default) is used,
// with a warning that names the flag and says how to fix it; 0600 gets
// none.
func TestCredentialFileOthersMayReadWarns(t *testing.T) {
	s := issuer(t)
	dir := t.TempDir()
	secretFile, key := filepath.Join(dir, "secret"), dpopKeyFile(t)
	os.WriteFile(secretFile, []byte(secret), 0o644)
	os.Chmod(key, 0o604)
	// Read by its group, which is this process's own (a Kubernetes pod's
	// fsGroup makes its Secret's files 0440): no warning.
	groupKey := filepath.Join(dir, "group-key.pem")
	os.WriteFile(groupKey, []byte("x"), 0o640)
	env := []string{"M2MTOKEN_TOKEN_URL=" + s.TokenURL(), "AUTH0_CLIENT_ID=cli", "AUTH0_AUDIENCE=" + aud}
	r := runIn(t, env, "token", "--no-cache", "--client-secret-file", secretFile, "--dpop-key-file", key)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{
		"m2mtoken: warning: --client-secret-file " + secretFile + " may be read by others (mode 0644)",
		"m2mtoken: warning: --dpop-key-file " + key + " may be read by others (mode 0604)",
		"run chmod 600 " + key, "defaultMode: 0400",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	p := startAgent(t, append(env, "AUTH0_CLIENT_SECRET_FILE="+secretFile), "--listen", "unix:"+filepath.Join(dir, "a.sock"))
	if w := atomicfile.ReadableWarning("--dpop-key-file", groupKey); w != "" {
		t.Errorf("a file its own group may read is warned about: %s", w)
	}
	if p.Find("AUTH0_CLIENT_SECRET_FILE "+secretFile+" may be read by others (mode 0644): whoever can read it can get tokens as the client; run chmod 600 "+secretFile+" (in Kubernetes, set defaultMode: 0400 on the secret's volume)", "source", "default") == nil {
		t.Errorf("the agent did not warn:\n%s", p.logs())
	}
	os.Chmod(secretFile, 0o600)
	os.Chmod(key, 0o600)
	if r := runIn(t, env, "token", "--no-cache", "--client-secret-file", secretFile, "--dpop-key-file", key); r.code != 0 || strings.Contains(r.stderr, "warning") {
		t.Errorf("mode 0600: exit %d: %s", r.code, r.stderr)
	}
}
