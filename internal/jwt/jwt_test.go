package jwt

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

func tok(payload string) string {
	return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".c2ln"
}

func TestExpiry(t *testing.T) {
	tests := []struct {
		in     string
		want   time.Time
		wantOK bool
	}{
		{tok(`{"exp":1900000000}`), time.Unix(1900000000, 0), true},
		{tok(`{"exp":1900000000.5}`), time.Unix(1900000000, 5e8), true},
		{tok(`{"exp":"1900000000"}`), time.Unix(1900000000, 0), true},
		{tok(`{"exp":-1}`), time.Time{}, false},
		{tok(`{"exp":1e300}`), time.Time{}, false},
		{tok(`{"sub":"x"}`), time.Time{}, false},
		{tok(`not json`), time.Time{}, false},
		{"opaque-token", time.Time{}, false},
		{"a.b", time.Time{}, false},
		{"a.!!!.c", time.Time{}, false},
		{"a.b.c.d", time.Time{}, false},
		{tok(`{"exp":1900000000,"pad":"` + strings.Repeat("x", 70<<10) + `"}`), time.Time{}, false},
	}
	for _, tt := range tests {
		got, ok := Expiry(tt.in)
		if ok != tt.wantOK || !got.Equal(tt.want) {
			t.Errorf("Expiry(%.40q) = %v %v, want %v %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}
