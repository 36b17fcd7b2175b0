package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/internal/settings"
)

func TestAgentConfigFile(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	os.WriteFile(secretFile, []byte("from-a-file\n"), 0o600)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	keyFile := filepath.Join(dir, "key.pem")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	env := map[string]string{"BILLING_SECRET": "from-env"}
	getenv := func(k string) string { return env[k] }

	good := `{"sources": [
	  {"name": "billing", "domain": "tenant.eu.auth0.com", "client_id": "b", "client_secret_env": "BILLING_SECRET",
	   "audience": "https://billing/", "scopes": ["read:x", "write:x"], "auth_method": "basic"},
	  {"name": "search", "token_url": "https://idp.example.com/token", "client_id": "s", "client_secret_file": "` + secretFile + `",
	   "cache": "file", "cache_dir": "` + dir + `"},
	  {"name": "keyed", "domain": "tenant.eu.auth0.com", "client_id": "k", "private_key_file": "` + keyFile + `", "key_id": "kid1",
	   "dpop_key_file": "` + keyFile + `", "require_dpop": true}
	]}`
	specs, _, err := parseConfigFile("agent.json", []byte(good), getenv)
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 3 {
		t.Fatalf("%d sources", len(specs))
	}
	b, s, k := specs[0].Config, specs[1].Config, specs[2].Config
	if specs[0].Name != "billing" || b.ClientSecret != "from-env" || b.AuthMethod != m2mtoken.ClientSecretBasic || len(b.Scopes) != 2 || b.Cache != nil {
		t.Errorf("billing: %v", b)
	}
	if s.ClientSecretFile == "" || s.ClientSecret != "" || s.TokenURL == "" {
		t.Errorf("search: %v", s)
	}
	if fc, ok := s.Cache.(*m2mtoken.FileCache); !ok || !writesIn(t, fc, dir) {
		t.Errorf("search cache: %#v", s.Cache)
	}
	if k.PrivateKeyFile == "" || k.KeyID != "kid1" || k.AuthMethod != m2mtoken.PrivateKeyJWT || k.ClientSecret != "" || k.DPoPKey == nil || !k.RequireDPoP {
		t.Errorf("keyed: %v", k)
	}
	for _, spec := range specs {
		src, err := m2mtoken.New(spec.Config)
		if err != nil {
			t.Fatalf("%s: %v", spec.Name, err)
		}
		src.Close()
	}
}

// TestAgentConfigErrors: every mistake names the file, the source and the
// field, and says what to do; none shows a secret.
func TestAgentConfigErrors(t *testing.T) {
	getenv := func(k string) string {
		if k == "SET" {
			return "s3cret-value"
		}
		return ""
	}
	src := func(fields string) string {
		return `{"sources": [{"name": "api", "domain": "t.auth0.com", "client_id": "c", ` + fields + `}]}`
	}
	for _, tc := range []struct {
		name, file string
		want       []string
	}{
		{"inline secret", src(`"client_secret": "s3cret-value"`), []string{`source "api"`, `"client_secret"`, "client_secret_env", "client_secret_file"}},
		{"unset env", src(`"client_secret_env": "NOPE"`), []string{`source "api"`, `"client_secret_env"`, "NOPE", "empty or unset"}},
		{"missing file", src(`"client_secret_file": "/nonexistent/secret"`), []string{`source "api"`, `"client_secret_file"`, "/nonexistent/secret"}},
		{"no credential", src(`"audience": "x"`), []string{`source "api": "client_secret_file" or "client_secret_env" naming a variable is empty: give the application's Client Secret, or authenticate another way ("private_key_file" for Private Key JWT, "client_assertion_file" for a platform's token, "client_cert_file" and "client_key_file" for mTLS)`}},
		{"both secrets", src(`"client_secret_env": "SET", "client_secret_file": "/x"`), []string{`both "client_secret_env" (SET) and "client_secret_file" are set: authenticate with one`}},
		{"typo", src(`"client_secert_env": "SET"`), []string{"sources[0]", `unknown field "client_secert_env": did you mean "client_secret_env"?`}},
		{"audiance", src(`"client_secret_env": "SET", "audiance": "x"`), []string{`config file agent.json: sources[0]: unknown field "audiance": did you mean "audience"? ` +
			`(a source's fields are name, domain, token_url, client_id, client_secret_env, client_secret_file, auth_method, audience, scopes, organization, ` +
			`private_key_file, client_assertion_file, client_assertion_type, client_cert_file, client_key_file, mtls_token_url, key_id, dpop_key_file, require_dpop, ca_file, cache, cache_dir)`}},
		{"no near field", src(`"client_secret_env": "SET", "tenant": "x"`), []string{`unknown field "tenant": check its spelling (a source's fields are name, domain,`}},
		{"scopes as a string", src(`"client_secret_env": "SET", "scopes": "read:x write:x"`), []string{"sources[0]", `"scopes" must be a list`}},
		{"scope with a space", src(`"client_secret_env": "SET", "scopes": ["read:x write:x"]`), []string{`source "api"`, `"scopes"`, "own string"}},
		{"bad auth method", src(`"client_secret_env": "SET", "auth_method": "jwt"`), []string{`"auth_method" "jwt"`, "post"}},
		{"bad cache", src(`"client_secret_env": "SET", "cache": "redis"`), []string{`"cache" "redis"`, `"file"`}},
		{"cache_dir without cache", src(`"client_secret_env": "SET", "cache_dir": "/tmp"`), []string{`"cache_dir" is set`}},
		{"no endpoint", `{"sources": [{"name": "api", "client_id": "c", "client_secret_env": "SET"}]}`, []string{`source "api"`, "no endpoint", `"domain"`, `"token_url"`}},
		{"no client id", `{"sources": [{"name": "api", "domain": "t"}]}`, []string{`source "api": missing settings: set "client_id" (the application's Client ID) and "client_secret_file" or "client_secret_env" naming a variable (its Client Secret`}},
		{"no name", `{"sources": [{"domain": "t", "client_id": "c"}]}`, []string{"sources[0]", `"name" is missing`}},
		{"bad name", `{"sources": [{"name": "a/b", "domain": "t", "client_id": "c"}]}`, []string{`source "a/b"`, `"name"`}},
		{"duplicate", `{"sources": [` + strings.Repeat(`{"name": "a", "domain": "t", "client_id": "c", "client_secret_env": "SET"},`, 2) + `{"name": "b"}]}`, []string{`source "a"`, "sources[0] too"}},
		{"no sources", `{"source": []}`, []string{`config file agent.json: unknown field "source": did you mean "sources"? (the file's fields are sources, proxies)`}},
		{"empty sources", `{"sources": []}`, []string{"agent.json", `"sources" is empty`}},
		{"syntax", "{\"sources\": [\n  {\"name\": \"a\",}\n]}", []string{"agent.json", "line 2, column"}},
		{"empty file", ``, []string{"agent.json", "empty"}},
		{"cut short", "{\"sources\": [\n  {\"name\": \"a\", \"domain\": \"t\"", []string{"config file agent.json: the JSON ends early, at line 2, column 30 (was the file saved half-way, or is a closing } or ] missing?)"}},
		{"two values", `{"sources": [{"name": "api", "domain": "t.auth0.com", "client_id": "c", "client_secret_env": "SET"}]} {}`, []string{"more than one JSON value"}},
		{"stray brace", "{\"sources\": [{\"name\": \"api\", \"domain\": \"t.auth0.com\", \"client_id\": \"c\", \"client_secret_env\": \"SET\"}]}\n}", []string{"config file agent.json: line 2, column ", "invalid character '}'"}}, // the column differs between Go releases
		{"key missing", src(`"private_key_file": "/nonexistent/key.pem"`), []string{`source "api"`, `"private_key_file"`}},
		{"dpop key missing", src(`"client_secret_env": "SET", "dpop_key_file": "/nonexistent/dpop.pem"`), []string{`source "api"`, `"dpop_key_file"`, "/nonexistent/dpop.pem"}},
		{"require_dpop without key", src(`"client_secret_env": "SET", "require_dpop": true`), []string{`"require_dpop" is set without "dpop_key_file"`}},
		{"key and secret", src(`"client_secret_env": "SET", "private_key_file": "/nonexistent/key.pem"`), []string{`both "client_secret_env" (SET) and "private_key_file" are set: authenticate with one`}},
		{"key_id without a key", src(`"client_secret_env": "SET", "key_id": "k1"`), []string{`source "api": "key_id" is set without "private_key_file"`}},
		{"both endpoints", src(`"client_secret_env": "SET", "token_url": "https://t.auth0.com/oauth/token"`), []string{`source "api": both "domain" and "token_url" are set: set only one`}},
		{"private_key_jwt without a key", src(`"client_secret_env": "SET", "auth_method": "private_key_jwt"`), []string{`"auth_method" private_key_jwt needs "private_key_file"`}},
		{"bad ca_file", src(`"client_secret_env": "SET", "ca_file": "/nonexistent/own.pem"`), []string{`source "api": "ca_file": open /nonexistent/own.pem: no such file`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := parseConfigFile("agent.json", []byte(tc.file), getenv)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "s3cret-value") {
				t.Errorf("error shows the secret: %q", err)
			}
		})
	}
}

// TestAgentConfigCAOfTheCommand: a source that names no CA trusts the
// command's (--ca-file or M2MTOKEN_CA_FILE), checked as the file's own
// "ca_file" is, and named as the command's.
func TestAgentConfigCAOfTheCommand(t *testing.T) {
	getenv := func(k string) string {
		return map[string]string{"SET": "s3cret-value", "M2MTOKEN_CA_FILE": "/nonexistent/ca.pem"}[k]
	}
	file := `{"sources": [{"name": "api", "domain": "t.auth0.com", "client_id": "c", "client_secret_env": "SET"}]}`
	_, _, err := parseConfigFile("agent.json", []byte(file), getenv)
	if err == nil || !strings.Contains(err.Error(), `source "api": --ca-file or M2MTOKEN_CA_FILE: open /nonexistent/ca.pem: no such file`) {
		t.Fatalf("error: %v", err)
	}
}

// TestConfigFileFieldsAreSettings: every field of a source is a setting
// of internal/settings, read through the library's parser, or one of the
// file's own; and every setting has its field. A field added to the file
// but to no setting would be read and ignored.
func TestConfigFileFieldsAreSettings(t *testing.T) {
	own := map[string]bool{"name": true, "cache": true, "cache_dir": true, "client_secret": true}
	fields := map[string]bool{}
	tp := reflect.TypeFor[fileSource]()
	for i := range tp.NumField() {
		fields[jsonName(tp.Field(i))] = true
	}
	for _, s := range settings.All() {
		if !fields[fileField(s.Env)] {
			t.Errorf("the setting %s has no field %q in the config file", s.Env, fileField(s.Env))
		}
		delete(fields, fileField(s.Env))
	}
	for f := range fields {
		if !own[f] {
			t.Errorf("the config file's field %q is no setting", f)
		}
	}
}

// TestAgentLibraryErrorsInUserWords: what the library says about a
// Config field is said with the field's name in the file or on the
// command line.
func TestAgentLibraryErrorsInUserWords(t *testing.T) {
	getenv := func(v string) string { return map[string]string{"X": "s"}[v] }
	source := func(url string) string {
		return `{"sources": [{"name": "api", "token_url": "` + url + `", "client_id": "c", "client_secret_env": "X"}]}`
	}
	inUserWords := func(err error) bool {
		return err != nil && strings.Contains(err.Error(), `source "api"`) && strings.Contains(err.Error(), `"token_url" "http://example.com/token" uses plain http`) &&
			!strings.Contains(err.Error(), "Config.") && !strings.Contains(err.Error(), "m2mtoken: ")
	}
	// The library's parser checks the file's settings as New does.
	if _, _, err := parseConfigFile("agent.json", []byte(source("http://example.com/token")), getenv); !inUserWords(err) {
		t.Fatalf("parse: %v", err)
	}
	// And the source's FieldNames name the fields for New and the hints.
	specs, _, err := parseConfigFile("agent.json", []byte(source("https://example.com/token")), getenv)
	if err != nil {
		t.Fatal(err)
	}
	for field, want := range map[string]string{"TokenURL": `"token_url"`, "ClientSecret": `"client_secret_env" (X)`, "Scopes": `"scopes"`, "FetchTimeout": ""} {
		if got := specs[0].Config.FieldNames(field); got != want {
			t.Errorf("FieldNames(%q) = %q, want %q", field, got, want)
		}
	}
	specs[0].Config.TokenURL = "http://example.com/token"
	if _, err = New(Config{Sources: specs, Listeners: []Listener{{"unix:" + filepath.Join(t.TempDir(), "s")}}}); !inUserWords(err) {
		t.Fatalf("New: %v", err)
	}
}

// TestFileCacheNamesItsDirectory: the file cache of the token command and
// of a source is in the directory given, else in M2MTOKEN_CACHE_DIR, else
// in the user cache directory; a directory that others may write is
// refused, with the setting it came from.
func TestFileCacheNamesItsDirectory(t *testing.T) {
	open := t.TempDir()
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	own := t.TempDir()
	t.Setenv("M2MTOKEN_CACHE_DIR", open)
	if _, err := FileCache("", "--cache-dir"); err == nil || !strings.HasPrefix(err.Error(), "M2MTOKEN_CACHE_DIR: file cache: the directory "+open+" may be written by its group or others") {
		t.Errorf("from the variable: %v", err)
	}
	if _, err := FileCache(open, `"cache_dir"`); err == nil || !strings.HasPrefix(err.Error(), `"cache_dir": file cache: the directory `+open) {
		t.Errorf("given: %v", err)
	}
	if fc, err := FileCache(own, "--cache-dir"); err != nil || !writesIn(t, fc, own) {
		t.Errorf("given, its own: %v", err)
	}
	t.Setenv("M2MTOKEN_CACHE_DIR", "")
	t.Setenv("XDG_CACHE_HOME", open)
	t.Setenv("HOME", open)
	if err := os.Mkdir(filepath.Join(open, "m2mtoken"), 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(open, "m2mtoken"), 0o777)
	if _, err := FileCache("", "--cache-dir"); err == nil || !strings.HasPrefix(err.Error(), "the user cache directory (another is set with --cache-dir or M2MTOKEN_CACHE_DIR): file cache:") {
		t.Errorf("the default: %v", err)
	}
}

// writesIn reports whether fc stores its tokens in dir.
func writesIn(t *testing.T, fc *m2mtoken.FileCache, dir string) bool {
	t.Helper()
	before, _ := os.ReadDir(dir)
	e := &m2mtoken.Entry{AccessToken: "tok", TokenType: "Bearer", IssuedAt: time.Now(), Expiry: time.Now().Add(time.Hour)}
	if err := fc.Set(context.Background(), "m2mtoken-writes-in", e); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadDir(dir)
	return len(after) > len(before)
}
