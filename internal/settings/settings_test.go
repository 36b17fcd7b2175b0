package settings

import "testing"

// TestNames: every setting has one name in every front end, by one rule,
// and no two settings share one; every group is known.
func TestNames(t *testing.T) {
	for env, want := range map[string][2]string{
		ClientID: {"client_id", "client-id"}, TokenURL: {"token_url", "token-url"}, DPoPKeyFile: {"dpop_key_file", "dpop-key-file"},
	} {
		if Key(env) != want[0] || Flag(env) != want[1] {
			t.Errorf("%s: %q, --%s", env, Key(env), Flag(env))
		}
	}
	groups := map[string]bool{}
	for _, g := range Groups() {
		groups[g.Name] = true
	}
	seen := map[string]bool{}
	for _, s := range All() {
		if seen[s.Env] || seen[Key(s.Env)] {
			t.Errorf("%s: its name is taken", s.Env)
		}
		seen[s.Env], seen[Key(s.Env)] = true, true
		if s.Group != "" && !groups[s.Group] {
			t.Errorf("%s: no group %q", s.Env, s.Group)
		}
		if s.Field == "" || s.Meaning == "" {
			t.Errorf("%s: no field or meaning", s.Env)
		}
		if got, ok := Of(s.Env); !ok || got.Env != s.Env {
			t.Errorf("Of(%s) = %v, %v", s.Env, got, ok)
		}
	}
	if _, ok := Of("AUTH0_NOPE"); ok {
		t.Error("Of a variable that is no setting")
	}
}
