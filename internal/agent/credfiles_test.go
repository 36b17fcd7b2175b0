package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretInClientSecretEnvNotShown replays a secret typed into
// "client_secret_env" by mistake: the error printed it back ("the
// environment variable Zk3JH8sP_realSecretValue_q1w2e3 is empty or
// unset"). A value that is not like a variable's name is not shown; a
// variable's name still is.
func TestSecretInClientSecretEnvNotShown(t *testing.T) {
	getenv := func(string) string { return "" }
	for value, shown := range map[string]bool{
		"Zk3JH8sP_realSecretValue_q1w2e3": false, "Zk3JH8sP-realSecretValue~q1w2e3": false, "s3cr3t value": false,
		"BILLING_SECRET": true, "_X1": true,
	} {
		file := `{"sources": [{"name": "api", "domain": "t.auth0.com", "client_id": "c", "client_secret_env": "` + value + `"}]}`
		_, _, err := parseConfigFile("agent.json", []byte(file), getenv)
		if err == nil || !strings.Contains(err.Error(), `"client_secret_env"`) || strings.Contains(err.Error(), value) != shown {
			t.Errorf("%s: %v; want it shown: %v", value, err, shown)
		}
		if !shown && !strings.Contains(err.Error(), "not shown") {
			t.Errorf("%s: %v; want it said why", value, err)
		}
	}
	// A variable that is set is read, whatever its name looks like.
	getenv = func(v string) string { return map[string]string{"billing_secret": "s3cret"}[v] }
	specs, _, err := parseConfigFile("agent.json", []byte(`{"sources": [{"name": "api", "domain": "t.auth0.com", "client_id": "c", "client_secret_env": "billing_secret"}]}`), getenv)
	if err != nil || specs[0].Config.ClientSecret != "s3cret" {
		t.Fatalf("a lower-case variable that is set: %v", err)
	}
}

// TestConfigFileKeyReadableWarns: a secret or key file of the config file
// that its group or others may read is used, with a warning that names
// the field; the agent logs it with the source's name.
func TestConfigFileKeyReadableWarns(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	os.WriteFile(secretFile, []byte(secret), 0o644)
	file := `{"sources": [{"name": "api", "token_url": "https://idp.example.com/token", "client_id": "c", "client_secret_file": "` + secretFile + `"}]}`
	specs, _, err := parseConfigFile("agent.json", []byte(file), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if len(specs[0].Warnings) != 1 || !strings.HasPrefix(specs[0].Warnings[0], `"client_secret_file" `+secretFile+" may be read by others (mode 0644)") {
		t.Fatalf("warnings: %q", specs[0].Warnings)
	}
	a := launchAgent(t, Config{Sources: specs, Listeners: []Listener{{"unix:" + filepath.Join(dir, "a.sock")}}})
	a.waitLog(1, specs[0].Warnings[0], "source", "api")
	os.Chmod(secretFile, 0o600)
	if specs, _, _ := parseConfigFile("agent.json", []byte(file), func(string) string { return "" }); len(specs[0].Warnings) != 0 {
		t.Fatalf("0600: warnings %q", specs[0].Warnings)
	}
}
