package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestReadLimited: a file is read whole up to its limit, and one byte
// more is refused with an error that names the file and the limit; a
// device that never ends (/dev/zero, which ran the agent out of memory as
// a secret file) is refused after limit+1 bytes.
func TestReadLimited(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "secret.txt")
	os.WriteFile(p, []byte(strings.Repeat("s", 100)), 0o600)
	if b, err := ReadLimited(p, 100, "a client secret file"); err != nil || len(b) != 100 {
		t.Fatalf("at the limit: %d bytes, %v", len(b), err)
	}
	var tl *TooLargeError
	if _, err := ReadLimited(p, 99, "a client secret file"); !errors.As(err, &tl) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "99 bytes") {
		t.Fatalf("over the limit: %v", err)
	}
	if runtime.GOOS != "windows" {
		_, err := ReadLimited("/dev/zero", SecretFileLimit, "a client secret file")
		if !errors.As(err, &tl) || err.Error() != "/dev/zero holds more than 64 KiB, the most a client secret file may hold: is it the right file?" {
			t.Fatalf("/dev/zero: %v", err)
		}
	}
}

// TestReadLimitedHidesValues: a secret or a PEM key given where its
// file's path was wanted is not shown in the error; a path is.
func TestReadLimitedHidesValues(t *testing.T) {
	for _, v := range []string{"Zk3JH8sP_realSecretValue_q1w2e3", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n-----END PRIVATE KEY-----\n"} {
		_, err := ReadLimited(v, KeyFileLimit, "a key file")
		if err == nil || strings.Contains(err.Error(), v) || strings.Contains(err.Error(), "MIGHAgEA") || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%.10q...: %v", v, err)
		}
	}
	for _, p := range []string{"/nonexistent/secret", "secret.txt", "./secret"} {
		if _, err := ReadLimited(p, KeyFileLimit, "a key file"); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v; want the path shown", p, err)
		}
	}
}

func TestSize(t *testing.T) {
	for n, want := range map[int64]string{64 << 10: "64 KiB", 16 << 20: "16 MiB", 1000: "1000 bytes", 1536: "1536 bytes"} {
		if got := Size(n); got != want {
			t.Errorf("Size(%d) = %q, want %q", n, got, want)
		}
	}
}
