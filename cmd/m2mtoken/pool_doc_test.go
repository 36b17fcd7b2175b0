package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// docBlock returns the text of the first fenced block of language lang
// after the heading of section in the manual page page.
func docBlock(t *testing.T, page, section, lang string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", page))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n"+section+"\n")
	if i < 0 {
		t.Fatalf("%s has no %q", page, section)
	}
	s = s[i:]
	if next := strings.Index(s[1:], "\n## "); next >= 0 {
		s = s[:next+1]
	}
	open := "\n```" + lang + "\n"
	j := strings.Index(s, open)
	if j < 0 {
		t.Fatalf("%s, %s: no ```%s block", page, section, lang)
	}
	s = s[j+len(open):]
	k := strings.Index(s, "\n```")
	if k < 0 {
		t.Fatalf("%s, %s: the ```%s block does not end", page, section, lang)
	}
	return s[:k+1]
}

// TestPoolTryItLocally runs docs/pool.md's "Try it locally" as pasted:
// its serve line (the binary), then its go run line in the repository's
// root with serve's exports. The program the page shows is
// examples/pool's, and it prints what the page says it prints.
func TestPoolTryItLocally(t *testing.T) {
	const section = "## Try it locally"
	program, err := os.ReadFile("../../examples/pool/main.go")
	if err != nil {
		t.Fatal(err)
	}
	if shown := docBlock(t, "docs/pool.md", section, "go"); shown != string(program) {
		t.Fatalf("docs/pool.md shows a program other than examples/pool/main.go:\n%s", shown)
	}
	var serveArgs []string
	var runs []string
	for _, line := range strings.Split(docBlock(t, "docs/pool.md", section, "sh"), "\n") {
		line, _, _ = strings.Cut(line, "#")
		switch f := strings.Fields(line); {
		case len(f) > 2 && f[0] == "m2mtoken" && f[1] == "serve":
			serveArgs = f[2:]
		case len(f) > 0:
			runs = append(runs, strings.TrimSpace(line))
		}
	}
	if serveArgs == nil || len(runs) != 1 {
		t.Fatalf("the block has serve %q and commands %q: want one serve line and one command", serveArgs, runs)
	}
	exports, _ := startServe(t, serveArgs...)

	cmd := exec.Command("sh", "-c", runs[0])
	cmd.Dir = filepath.Join("..", "..")
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !strings.HasPrefix(k, "AUTH0_") && !strings.HasPrefix(k, "M2MTOKEN_") && k != "API_URL" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, envList(exports)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s%s", runs[0], err, out, stderr.String())
	}
	if want := docBlock(t, "docs/pool.md", section, "text"); string(out) != want {
		t.Fatalf("%s printed:\n%s\nthe page says:\n%s", runs[0], out, want)
	}
}
