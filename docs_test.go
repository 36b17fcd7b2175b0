package m2mtoken_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/m2mtoken/m2mtoken/internal/settings"
)

// manualPages are the Markdown files whose relative links must resolve.
func manualPages(t *testing.T) []string {
	t.Helper()
	pages, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{"README.md", "CHANGELOG.md", "SECURITY.md"}, pages...)
}

var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// withoutCode blanks fenced blocks and inline code spans, keeping the
// lines, so that what a snippet prints is not read as a link.
func withoutCode(s string) string {
	lines := strings.Split(s, "\n")
	fenced := false
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			fenced = !fenced
			lines[i] = ""
			continue
		}
		if fenced {
			lines[i] = ""
		}
	}
	s = strings.Join(lines, "\n")
	var b strings.Builder
	inCode := false
	for _, r := range s {
		if r == '`' {
			inCode = !inCode
			continue
		}
		if !inCode || r == '\n' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// anchors returns the ids GitHub gives the headings of a Markdown page:
// lower case, punctuation dropped, spaces as dashes, and -1, -2, ... for
// repeats.
func anchors(page string) map[string]bool {
	ids := map[string]bool{}
	seen := map[string]int{}
	fenced := false
	for _, l := range strings.Split(page, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			fenced = !fenced
		}
		if fenced || !strings.HasPrefix(l, "#") {
			continue
		}
		text := strings.TrimSpace(strings.TrimLeft(l, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(text) {
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		id := b.String()
		if n := seen[id]; n > 0 {
			ids[id+"-"+strconv.Itoa(n)] = true
		} else {
			ids[id] = true
		}
		seen[id]++
	}
	return ids
}

// TestManualLinksResolve checks every relative link of the README, the
// CHANGELOG, SECURITY.md and docs/*.md: the file or directory it names
// exists, and a #fragment names a heading of that page.
func TestManualLinksResolve(t *testing.T) {
	for _, page := range manualPages(t) {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllStringSubmatch(withoutCode(string(b)), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, frag, _ := strings.Cut(target, "#")
			path := page
			if file != "" {
				path = filepath.Join(filepath.Dir(page), file)
			}
			if _, err := os.Stat(path); err != nil {
				t.Errorf("%s: link %s: %v", page, target, err)
				continue
			}
			if frag == "" {
				continue
			}
			if !strings.HasSuffix(path, ".md") {
				t.Errorf("%s: link %s: a fragment of a file that is not Markdown", page, target)
				continue
			}
			doc, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !anchors(string(doc))[frag] {
				t.Errorf("%s: link %s: %s has no heading #%s", page, target, path, frag)
			}
		}
	}
}

var mapName = regexp.MustCompile("`([A-Za-z0-9_*]+\\.go)`")

// TestFileMapNamesEveryFile checks that docs/development.md's file map
// names every source file of the root package, the agent, the command,
// m2mtest, rediscache and m2mtokenotel (by name, or by a pattern such as
// filecache*.go), and every package under internal/.
func TestFileMapNamesEveryFile(t *testing.T) {
	b, err := os.ReadFile("docs/development.md")
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	var patterns []string
	for _, m := range mapName.FindAllStringSubmatch(page, -1) {
		patterns = append(patterns, m[1])
	}
	for _, dir := range []string{".", "internal/agent", "cmd/m2mtoken", "m2mtest", "rediscache", "m2mtokenotel"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			name := filepath.Base(f)
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			named := false
			for _, p := range patterns {
				if ok, _ := filepath.Match(p, name); ok {
					named = true
					break
				}
			}
			if !named {
				t.Errorf("docs/development.md's file map does not name %s", f)
			}
		}
	}
	pkgs, err := os.ReadDir("internal")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pkgs {
		if p.IsDir() && !strings.Contains(page, "internal/"+p.Name()) {
			t.Errorf("docs/development.md's file map does not name internal/%s", p.Name())
		}
	}
}

// TestConfigurationListsEverySetting checks that docs/configuration.md's
// table of variables has a row for every setting the parser reads, with
// the flag and the Config field that follow from it, so that a setting
// added to internal/settings cannot be left out of the manual.
func TestConfigurationListsEverySetting(t *testing.T) {
	b, err := os.ReadFile("docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, s := range settings.All() {
		row := fmt.Sprintf("| `%s` | `--%s` | `%s` |", s.Env, settings.Flag(s.Env), s.Field)
		if !strings.Contains(page, row) {
			t.Errorf("docs/configuration.md has no row %q", row)
		}
	}
}
