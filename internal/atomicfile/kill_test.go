//go:build unix

package atomicfile

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// childEnv makes the test binary a writer that never stops (see
// TestMain): it writes the file named in it over and over, printing a
// byte before each write.
const childEnv = "ATOMICFILE_TEST_WRITER"

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		namedOnly = os.Getenv("ATOMICFILE_TEST_NAMED") != ""
		data := bytes.Repeat([]byte("TOKEN-"), 16<<10)
		out := bufio.NewWriter(os.Stdout)
		for {
			out.WriteByte('.')
			out.Flush()
			if err := Write(path, "."+filepath.Base(path)+".tmp-*", data, -1); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
	}
	os.Exit(m.Run())
}

// TestNoTempFileAfterKill replays the kills of finding 2 of issue 20
// (after 300 SIGKILLs of a writer, two temporary files were left, one
// holding a token): a writer is killed 300 times at varying points of its
// writes, and then one more write leaves no temporary file at all. With
// unnamed temporary files (Linux) none is left even before it; with named
// ones (other systems), the next write removes those whose writer died.
func TestNoTempFileAfterKill(t *testing.T) {
	t.Run("unnamed", func(t *testing.T) {
		if f, err := openUnnamed(t.TempDir()); err != nil {
			t.Skipf("no unnamed files here: %v", err)
		} else {
			f.Close()
		}
		killWriters(t, false)
	})
	t.Run("named", func(t *testing.T) { killWriters(t, true) })
}

func killWriters(t *testing.T, named bool) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	const kills = 300
	for i := range kills {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+path)
		if named {
			cmd.Env = append(cmd.Env, "ATOMICFILE_TEST_NAMED=1")
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill it at the start of its first, second ... fourth write, and
		// (odd i) a moment later: the bytes read let the write go on.
		n := 1 + i%4
		b := make([]byte, n)
		if _, err := out.Read(b[:1]); err != nil {
			t.Fatalf("writer %d: %v", i, err)
		}
		for k := 1; k < n; k++ {
			out.Read(b[k : k+1])
		}
		if i%2 == 1 {
			for range rand.IntN(2000) {
				syscall.Getpid()
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
	left := temps(t, dir)
	t.Logf("temporary files left after %d kills: %d", kills, len(left))
	if !named && len(left) != 0 {
		t.Errorf("unnamed temporary files, yet %d were left: %v", len(left), left)
	}
	if err := Write(path, ".token.tmp-*", []byte("final"), -1); err != nil {
		t.Fatal(err)
	}
	if left := temps(t, dir); len(left) != 0 {
		t.Fatalf("after %d kills and one more write, temporary files are left: %v", kills, left)
	}
	if b, _ := os.ReadFile(path); string(b) != "final" {
		t.Fatalf("the file holds %.20q", b)
	}
}

func temps(t *testing.T, dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			out = append(out, e.Name())
		}
	}
	return out
}
