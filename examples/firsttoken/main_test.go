package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// build builds the program once per test, and returns its path.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "firsttoken")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runWith runs the program with env (and PATH, HOME) and returns its
// exit status, stdout and stderr.
func runWith(t *testing.T, bin string, env ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if _, exited := err.(*exec.ExitError); err != nil && !exited {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), string(out), stderr.String()
}

// TestFirstToken runs the program as the README does: the variables
// `m2mtoken serve` prints, API_URL among them.
func TestFirstToken(t *testing.T) {
	const audience = "https://api.local/"
	iss := m2mtest.NewServer(m2mtest.Client{ID: "m2mtoken-local", Secret: "dev", Audiences: []string{audience}})
	defer iss.Close()
	api := httptest.NewServer(iss.Protect(audience, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from a private endpoint\n")
	})))
	defer api.Close()
	code, out, stderr := runWith(t, build(t), "AUTH0_DOMAIN="+iss.URL, "AUTH0_CLIENT_ID=m2mtoken-local", "AUTH0_CLIENT_SECRET=dev",
		"AUTH0_AUDIENCE="+audience, "API_URL="+api.URL+"/")
	if code != 0 || out != "200 OK hello from a private endpoint\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	if n := iss.TokensIssued("m2mtoken-local"); n != 1 {
		t.Fatalf("%d token requests, want 1", n)
	}
}

// TestFirstTokenSaysWhatToSet: with nothing set, the error names the
// variables to set.
func TestFirstTokenSaysWhatToSet(t *testing.T) {
	code, _, stderr := runWith(t, build(t))
	if code != 1 || !strings.Contains(stderr, "AUTH0_CLIENT_ID") || !strings.Contains(stderr, "AUTH0_DOMAIN") {
		t.Fatalf("exit %d, stderr %q: want the variables named", code, stderr)
	}
}

// TestReadmeShowsThisProgram: the README's first program is this file,
// as it is.
func TestReadmeShowsThisProgram(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	prog, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(readme, append(append([]byte("```go\n"), prog...), "```\n"...)) {
		t.Fatal("the README's first program is not examples/firsttoken/main.go as it is: copy the file into the README's ```go block")
	}
}
