package m2mtoken

import (
	"os"
	"strings"
	"testing"
)

// TestFileVariablesBounded: every variable that names a file is read with
// a bound, so that a file given by mistake is an error that names the
// variable and the limit, not a process out of memory; and so are
// Config.CAFile and the files New follows. Here each file is a sparse
// file one byte over its limit, so that the test stays small without the
// bound; the binary replays /dev/zero under a memory limit
// (cmd/m2mtoken's TestFilesReadWithBounds).
func TestFileVariablesBounded(t *testing.T) {
	dir := t.TempDir()
	over := func(limit int64) string {
		f, err := os.CreateTemp(dir, "big")
		if err == nil {
			err = f.Truncate(limit + 1)
			f.Close()
		}
		if err != nil {
			t.Fatal(err)
		}
		return f.Name()
	}
	base := map[string]string{"AUTH0_DOMAIN": "tenant.eu.auth0.com", "AUTH0_CLIENT_ID": "abc", "AUTH0_AUDIENCE": "https://api.example.com/"}
	for v, tc := range map[string]struct {
		file, want string
	}{
		"AUTH0_CLIENT_SECRET_FILE":  {over(64 << 10), "holds more than 64 KiB, the most a client secret file may hold"},
		"M2MTOKEN_PRIVATE_KEY_FILE": {over(1 << 20), "reading the private key: %s holds more than 1 MiB"},
		"M2MTOKEN_DPOP_KEY_FILE":    {over(1 << 20), "reading the private key: %s holds more than 1 MiB"},
		"M2MTOKEN_CA_FILE":          {over(16 << 20), "holds more than 16 MiB, the most a CA file may hold"},
	} {
		want := v + ": " + strings.ReplaceAll(tc.want, "%s", tc.file)
		if !strings.Contains(tc.want, "%s") {
			want = v + ": " + tc.file + " " + tc.want
		}
		env := map[string]string{v: tc.file}
		for k, x := range base {
			env[k] = x
		}
		if v != "AUTH0_CLIENT_SECRET_FILE" && v != "M2MTOKEN_PRIVATE_KEY_FILE" {
			env["AUTH0_CLIENT_SECRET"] = testSecret
		}
		if _, err := ConfigFromLookup(lookupIn(env), nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want %q", v, err, want)
		}
	}
	ca := over(16 << 20)
	_, err := New(Config{Domain: "tenant.eu.auth0.com", ClientID: "abc", ClientSecret: testSecret, CAFile: ca})
	if err == nil || !strings.Contains(err.Error(), "CAFile: "+ca+" holds more than 16 MiB") {
		t.Errorf("Config.CAFile over its limit: %v", err)
	}
	// The files New follows say it in the same words.
	secret := over(64 << 10)
	_, err = New(Config{Domain: "tenant.eu.auth0.com", ClientID: "abc", ClientSecretFile: secret})
	if err == nil || !strings.Contains(err.Error(), "ClientSecretFile: "+secret+" holds more than 64 KiB, the most a client secret file may hold") {
		t.Errorf("Config.ClientSecretFile over its limit: %v", err)
	}
}

// TestFileVariablesDoNotEchoSecrets: a secret, or a PEM key, set where its
// file's path was wanted (AUTH0_CLIENT_SECRET_FILE="$SECRET") is not
// shown in the error; a path is.
func TestFileVariablesDoNotEchoSecrets(t *testing.T) {
	pemKey := "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----"
	for _, tc := range []struct{ v, value string }{
		{"AUTH0_CLIENT_SECRET_FILE", "Zk3JH8sP_realSecretValue_q1w2e3"},
		{"M2MTOKEN_PRIVATE_KEY_FILE", pemKey},
		{"M2MTOKEN_CA_FILE", "Zk3JH8sP_realSecretValue_q1w2e3"},
	} {
		env := map[string]string{"AUTH0_DOMAIN": "tenant.eu.auth0.com", "AUTH0_CLIENT_ID": "abc", tc.v: tc.value}
		if tc.v == "M2MTOKEN_CA_FILE" {
			env["AUTH0_CLIENT_SECRET"] = testSecret
		}
		_, err := ConfigFromLookup(lookupIn(env), nil)
		if err == nil || !strings.Contains(err.Error(), tc.v) || strings.Contains(err.Error(), "realSecret") || strings.Contains(err.Error(), "MIGHAgEA") ||
			!strings.Contains(err.Error(), "not shown") {
			t.Errorf("%s: %v", tc.v, err)
		}
	}
	env := map[string]string{"AUTH0_DOMAIN": "tenant.eu.auth0.com", "AUTH0_CLIENT_ID": "abc", "AUTH0_CLIENT_SECRET_FILE": "/run/secrets/missing"}
	if _, err := ConfigFromLookup(lookupIn(env), nil); err == nil || !strings.Contains(err.Error(), "/run/secrets/missing") {
		t.Errorf("a path: %v", err)
	}
}
