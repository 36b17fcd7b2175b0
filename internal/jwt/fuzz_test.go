package jwt

import "testing"

// FuzzExpiry: any string; never a panic, never an expiry at or before the
// epoch.
func FuzzExpiry(f *testing.F) {
	f.Add(tok(`{"exp":1900000000}`))
	f.Add(tok(`{"exp":"1"}`))
	f.Add("a.b.c")
	f.Add("eyJ.eyJleHAiOjF9.x")
	f.Fuzz(func(t *testing.T, s string) {
		if exp, ok := Expiry(s); ok && exp.Unix() <= 0 {
			t.Fatalf("Expiry(%q) = %v", s, exp)
		}
	})
}
