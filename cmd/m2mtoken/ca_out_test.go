//go:build unix

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeCAOutPlantedSymlink plants a symlink at --ca-out, pointing at
// a file serve's user may write: serve must write the CA to a new file and
// rename it over the path, which replaces the link and leaves its target
// alone.
func TestServeCAOutPlantedSymlink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.Symlink(victim, caFile); err != nil {
		t.Fatal(err)
	}
	env, _ := startServe(t, "--tls", "--ca-out", caFile, "--client-secret", secret)
	if env["M2MTOKEN_CA_FILE"] != caFile {
		t.Fatalf("exports %v", env)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Fatalf("the symlink's target was overwritten: %.40q", b)
	}
	fi, err := os.Lstat(caFile)
	if err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("--ca-out is %v, %v; want a regular file", fi.Mode(), err)
	}
	if b, _ := os.ReadFile(caFile); !strings.HasPrefix(string(b), "-----BEGIN CERTIFICATE-----") {
		t.Fatalf("--ca-out holds %.40q", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Fatalf("files left beside --ca-out: %v", ents)
	}
}

// TestServeClientKeyOutPlantedSymlink plants symlinks at --client-cert-out
// and --client-key-out, pointing at files serve's user may write: the
// certificate and the private key must go to new files renamed over the
// paths (the key readable by its owner only), and the links' targets stay
// as they were.
func TestServeClientKeyOutPlantedSymlink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	for _, p := range []string{certFile, keyFile} {
		if err := os.Symlink(victim, p); err != nil {
			t.Fatal(err)
		}
	}
	env, _ := startServe(t, "--tls", "--client-cert-auth", "tls_client_auth", "--client-cert-out", certFile, "--client-key-out", keyFile)
	if env["M2MTOKEN_CLIENT_KEY_FILE"] != keyFile {
		t.Fatalf("exports %v", env)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Fatalf("a symlink's target was overwritten: %.40q", b)
	}
	for p, mode := range map[string]os.FileMode{certFile: 0o644, keyFile: 0o600} {
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != mode {
			t.Errorf("%s is %v, %v; want a regular file of mode %v", p, fi.Mode(), err, mode)
		}
	}
	exportedCert(t, env)
}
