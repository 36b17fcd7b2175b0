//go:build unix

// The agent manual's recipes (docs/agent.md), run as written: its pytest
// fixture and its cron lines.

package agent

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// manualBlock returns docs/agent.md's text from the line that starts with
// start up to the closing fence.
func manualBlock(t *testing.T, start string) string {
	t.Helper()
	b, err := os.ReadFile("../../docs/agent.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, start)
	if i < 0 {
		t.Fatalf("docs/agent.md has no %q", start)
	}
	j := strings.Index(s[i:], "```")
	if j < 0 {
		t.Fatalf("no closing fence after %q", start)
	}
	return s[i : i+j]
}

// TestAgentReadmeRecipes runs the manual's pytest fixture and cron lines
// against an agent. Without pytest installed, the fixture runs under a
// stand-in that calls the test with the fixture's value.
func TestAgentReadmeRecipes(t *testing.T) {
	needProgram(t, "curl")
	needProgram(t, "python3")
	s := issuer(t)
	api := newProtectedAPI(t, s)
	dir := t.TempDir()
	sock, sink := filepath.Join(dir, "agent.sock"), filepath.Join(dir, "default.token")
	a := startAgent(t, Config{Sources: []Source{source(s)}, Listeners: []Listener{{"unix:" + sock}},
		Sinks: []Sink{{"default", sink}}, Proxies: []Proxy{{Source: "default", Listen: "127.0.0.1:0", Upstream: api.URL}}})
	prx := a.proxy(0)

	py := t.TempDir()
	os.WriteFile(filepath.Join(py, "test_api.py"), []byte(manualBlock(t, "# test_api.py")), 0o600)
	cmd := exec.Command("python3", "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_api.py")
	if exec.Command("python3", "-c", "import pytest").Run() != nil {
		os.WriteFile(filepath.Join(py, "pytest.py"), []byte("def fixture(f):\n    return f\n"), 0o600)
		cmd = exec.Command("python3", "-c", "import test_api as t; t.test_private(t.access_token()); print('1 passed')")
	}
	cmd.Dir = py
	cmd.Env = append(os.Environ(), "M2MTOKEN_AGENT_SOCKET="+sock, "API_URL="+api.URL)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "1 passed") {
		t.Fatalf("the manual's pytest fixture: %v\n%s", err, out)
	}

	var lines []string
	for _, l := range strings.Split(manualBlock(t, "*/5 * * * * "), "\n") {
		if job, ok := strings.CutPrefix(l, "*/5 * * * * "); ok {
			lines = append(lines, job)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("cron lines: %q", lines)
	}
	for _, job := range lines {
		job = strings.NewReplacer("/run/m2mtoken/default.token", sink, "https://api.example.com", api.URL, "http://127.0.0.1:9000", "http://"+prx).Replace(job)
		out, err := exec.Command("sh", "-c", job).CombinedOutput()
		if err != nil || string(out) != "synced" {
			t.Errorf("cron line %q: %v %q", job, err, out)
		}
	}
}
