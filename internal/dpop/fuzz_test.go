package dpop

import (
	"strings"
	"testing"
)

// FuzzParseNonce: any DPoP-Nonce header. Never a panic; what is accepted
// is 1 to MaxNonce NQCHARs, safe to put in a JSON proof as is.
func FuzzParseNonce(f *testing.F) {
	for _, s := range []string{"eyJ7S_zG.eyJH0-Z.HX4w-7v", " abc\t", "", "a b", `a"b`, "\x7f", strings.Repeat("x", 1025)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		n, ok := ParseNonce(v)
		if !ok {
			if n != "" {
				t.Fatalf("refused %q but returned %q", v, n)
			}
			return
		}
		if n == "" || len(n) > MaxNonce || strings.ContainsAny(n, "\" \\\t") || !strings.Contains(v, n) {
			t.Fatalf("ParseNonce(%q) = %q", v, n)
		}
		for i := 0; i < len(n); i++ {
			if n[i] < 0x21 || n[i] > 0x7e {
				t.Fatalf("ParseNonce(%q) = %q", v, n)
			}
		}
	})
}

// FuzzParseChallenges: any two WWW-Authenticate values. Never a panic,
// at most 16 challenges of at most 32 parameters, schemes and parameter
// names are non-empty tokens, names lowercased.
func FuzzParseChallenges(f *testing.F) {
	for _, s := range [][2]string{
		{`DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"`, ""},
		{`Bearer realm="api", error="invalid_token", DPoP algs="ES256 PS256"`, `Basic realm="x"`},
		{`Negotiate abc+/==, Bearer`, `, ,`},
		{`DPoP error="unterminated`, `a=b=c`},
		{`DPoP error="a\"b\\"`, strings.Repeat("x, ", 40)},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		chs := ParseChallenges([]string{a, b})
		if len(chs) > maxChallenges {
			t.Fatalf("%d challenges", len(chs))
		}
		for _, c := range chs {
			if c.Scheme == "" || strings.ContainsAny(c.Scheme, " \t,=\"") {
				t.Fatalf("scheme %q", c.Scheme)
			}
			if len(c.Params) > maxParams {
				t.Fatalf("%d params", len(c.Params))
			}
			for k := range c.Params {
				if k == "" || k != strings.ToLower(k) || strings.ContainsAny(k, " \t,=\"") {
					t.Fatalf("param name %q", k)
				}
			}
		}
		Error(chs, "DPoP")
	})
}
