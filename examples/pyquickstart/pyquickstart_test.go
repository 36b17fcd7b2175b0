// Package pyquickstart tests an API in Python against m2mtoken serve --tls:
// the way the tests of a non-Go service use the command as their local
// Auth0. The Python side (api_test.py) uses the standard library only.
package pyquickstart

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestPythonAgainstServeTLS(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3 is missing, and CI requires this test")
		}
		t.Skip("python3 is not installed; skipping the Python example")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "m2mtoken")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/m2mtoken/m2mtoken/cmd/m2mtoken").CombinedOutput(); err != nil {
		t.Fatalf("building m2mtoken: %v\n%s", err, out)
	}
	caFile := filepath.Join(dir, "ca.pem")
	serve := exec.Command(bin, "serve", "--tls", "--ca-out", caFile)
	serve.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH")}
	stdout, _ := serve.StdoutPipe()
	serve.Stderr = os.Stderr
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { serve.Process.Signal(os.Interrupt); serve.Wait() }()
	var env []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "export "); ok {
			env = append(env, v)
		}
		if sc.Text() == "# serving until interrupted" {
			break
		}
	}
	if len(env) < 5 {
		t.Fatalf("serve exported %v", env)
	}

	py := exec.Command(python, "-m", "unittest", "-v", "api_test")
	py.Env = append(env, "M2MTOKEN_BIN="+bin, "M2MTOKEN_CACHE_DIR="+filepath.Join(dir, "cache"), "HOME="+dir, "PATH="+os.Getenv("PATH"),
		"PYTHONDONTWRITEBYTECODE=1")
	out, err := py.CombinedOutput()
	t.Logf("python3 -m unittest -v api_test:\n%s", out)
	if err != nil {
		t.Fatalf("the Python tests failed: %v", err)
	}
	if !strings.Contains(string(out), "Ran 6 tests") {
		t.Fatal("the Python tests did not all run")
	}
}
