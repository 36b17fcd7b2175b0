package atomicfile

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestReadTrustedReadOnlyMount: a ConfigMap volume's directory is mode
// 0777 on some nodes (1777 on others), root's, on a read-only mount: it
// is read, where the same directory on a writable mount is refused.
func TestReadTrustedReadOnlyMount(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "mode=0777"); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v): the read-only mount is not replayed", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	p := mk(t, filepath.Join(dir, "agent.json"), &conf, 0, 0o644)
	if _, err := readTrusted(p, ConfigFileLimit, "the config file", why, user); err == nil || !strings.Contains(err.Error(), "mode 0777") {
		t.Fatalf("on a writable mount: %v", err)
	}
	if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Skipf("cannot remount read-only (%v)", err)
	}
	if b, err := readTrusted(p, ConfigFileLimit, "the config file", why, user); err != nil || string(b) != conf {
		t.Fatalf("on a read-only mount: %q, %v", b, err)
	}
}
