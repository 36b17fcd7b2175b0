package rediscache

import (
	"bytes"
	"testing"
)

// FuzzDecode: any stored value, with and without an encryption key; never
// a panic, never an entry that is not Valid.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"v":1,"entry":{"access_token":"x","issued_at":"2030-01-01T00:00:00Z","expiry":"2030-01-02T00:00:00Z"}}`), false)
	f.Add([]byte(sealedMagic+"0123456789ab-ciphertext"), true)
	f.Add([]byte(`{"v":1}`), true)
	plain := New(nil)
	sealed := New(nil, WithEncryptionKey(bytes.Repeat([]byte{1}, 32)))
	f.Fuzz(func(t *testing.T, b []byte, encrypted bool) {
		c := plain
		if encrypted {
			c = sealed
		}
		e, err := c.decode("m2mtoken:k", b)
		if (e == nil) == (err == nil) {
			t.Fatal("want exactly one of an entry and an error")
		}
		if e != nil && !e.Valid() {
			t.Fatalf("accepted %v", e)
		}
	})
}
