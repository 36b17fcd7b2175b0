package printable

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestLine(t *testing.T) {
	for in, want := range map[string]string{
		"":                             "",
		"plain text: 'quoted' \"too\"": "plain text: 'quoted' \"too\"",
		"\x1b[2J\x1b[31mred":           `\x1b[2J\x1b[31mred`,
		"one\r\ntwo\tthree\x00\x7f":    `one\r\ntwo\tthree\x00\x7f`,
		"C1 \u009b31m":                 `C1 \u009b31m`,
		"abc\u202egnp.exe":             `abc\u202egnp.exe`,
		"line\u2028sep":                `line\u2028sep`,
		"nbsp\u00a0x":                  `nbsp\u00a0x`,
		"bad \xff\x01 utf8":            `bad \xff\x01 utf8`,
		"Schlüssel ungültig: 無効なクライアント": "Schlüssel ungültig: 無効なクライアント",
		`back\slash`: `back\slash`,
	} {
		if got := Line(in, 0); got != want {
			t.Errorf("Line(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLineBounded(t *testing.T) {
	if got := Line(strings.Repeat("a", 10), 4); got != "aaaa..." {
		t.Fatalf("%q", got)
	}
	if got := Line("abc", 3); got != "abc" {
		t.Fatalf("%q", got)
	}
	// Cut at a character boundary, and never inside an escape.
	if got := Line("ééé", 5); got != "éé..." {
		t.Fatalf("%q", got)
	}
	if got := Line("ab\x1bcd", 4); got != "ab..." {
		t.Fatalf("%q", got)
	}
	long := strings.Repeat("\x1b", 1000)
	if got := Line(long, 300); len(got) > 303 || !utf8.ValidString(got) {
		t.Fatalf("%d bytes", len(got))
	}
}

func FuzzLine(f *testing.F) {
	f.Add("\x1b[31m\r\n\u202e\xff", 10)
	f.Fuzz(func(t *testing.T, s string, max int) {
		max = max % 1000
		got := Line(s, max)
		if !utf8.ValidString(got) {
			t.Fatalf("not UTF-8: %q", got)
		}
		for _, r := range got {
			if r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u202e' || r == '\u2028' {
				t.Fatalf("%q kept %U", got, r)
			}
		}
		if max > 0 && len(got) > max+3 {
			t.Fatalf("%d bytes, max %d", len(got), max)
		}
	})
}
