package suggest

import (
	"slices"
	"testing"
)

func TestNearest(t *testing.T) {
	names := []string{"client-id", "client-secret", "client-secret-file", "audience"}
	for typed, want := range map[string]string{
		"audiance": "audience", "client-secert": "client-secret", "clientid": "client-id",
		"domain": "", "client-id": "", "AUDIENCE": "audience",
	} {
		if got := Nearest(typed, names); got != want {
			t.Errorf("Nearest(%q) = %q, want %q", typed, got, want)
		}
	}
	if got := Nearest("locahost", []string{"localhost"}); got != "localhost" {
		t.Errorf("locahost: %q", got)
	}
}

func TestWords(t *testing.T) {
	names := []string{"client-id", "client-secret", "client-secret-file", "secretive", "dpop-key-file"}
	if got := Words("secret", names); !slices.Equal(got, []string{"client-secret", "client-secret-file"}) {
		t.Errorf("secret: %q", got)
	}
	if got := Words("key", names); !slices.Equal(got, []string{"dpop-key-file"}) {
		t.Errorf("key: %q", got)
	}
	if got := Words("", names); got != nil {
		t.Errorf("empty: %q", got)
	}
}

func TestUnreadVars(t *testing.T) {
	read := []string{"AUTH0_CLIENT_ID", "AUTH0_AUDIENCE", "M2MTOKEN_CA_FILE"}
	env := []string{"AUTH0_CLIENTID=x", "AUTH0_AUDIANCE=y", "AUTH0_CLIENT_ID=z", "M2MTOKEN_CAFILE=", "AUTH0_MGMT_TOKEN=t", "HOME=/root", "AUTH0_CLIENT_IDS=w"}
	got := UnreadVars(env, read, []string{"AUTH0_", "M2MTOKEN_"})
	want := []Typo{{"AUTH0_CLIENTID", "AUTH0_CLIENT_ID"}, {"AUTH0_AUDIANCE", "AUTH0_AUDIENCE"}, {"AUTH0_CLIENT_IDS", "AUTH0_CLIENT_ID"}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if s := got[0].String(); s != "AUTH0_CLIENTID is set but not read: did you mean AUTH0_CLIENT_ID?" {
		t.Errorf("String: %q", s)
	}
}
