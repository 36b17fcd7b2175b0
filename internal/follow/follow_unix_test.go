//go:build unix

package follow

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/m2mtoken/m2mtoken/internal/follow/followtest"
)

func makeFIFO(path string) error { return syscall.Mkfifo(path, 0o600) }

// TestPlantedLinkRefused: a symbolic link (or file) that another user
// owns, in a directory others may write, is refused rather than followed;
// one in a directory only its owner writes, or owned by root or this
// user, is followed. Needs root, to own files as another user.
func TestPlantedLinkRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to give a file to another user")
	}
	const other = 4242
	ctx := context.Background()
	shared := t.TempDir()
	os.Chmod(shared, 0o1777) // as /tmp
	own := t.TempDir()
	followtest.Write(t, filepath.Join(own, "real"), "mine")
	followtest.Write(t, filepath.Join(own, "bait"), "theirs")

	// The attacker's link, in the shared directory, to a file of their
	// choosing.
	link := filepath.Join(shared, "secret")
	os.Symlink(filepath.Join(own, "bait"), link)
	os.Lchown(link, other, other)
	f := New(link, Options{Clock: &stepClock{}})
	expect(t, f.Read(ctx), "", 0, "symbolic link "+link+" is owned by user 4242")

	// A file they planted there.
	plantedFile := filepath.Join(shared, "token")
	followtest.Write(t, plantedFile, "theirs")
	os.Chown(plantedFile, other, other)
	expect(t, New(plantedFile, Options{Clock: &stepClock{}}).Read(ctx), "", 0, "could have planted it")

	// A link in a directory further up the path.
	up := filepath.Join(shared, "dir")
	os.Symlink(own, up)
	os.Lchown(up, other, other)
	expect(t, New(filepath.Join(up, "real"), Options{Clock: &stepClock{}}).Read(ctx), "", 0, "owned by user 4242")

	// The same owner in a directory of their own: theirs to give.
	theirs := t.TempDir()
	os.Chmod(theirs, 0o755)
	os.Chown(theirs, other, other)
	l2 := filepath.Join(theirs, "secret")
	os.Symlink(filepath.Join(own, "real"), l2)
	os.Lchown(l2, other, other)
	expect(t, New(l2, Options{Clock: &stepClock{}}).Read(ctx), "mine", 1, "")

	// Root's links in the shared directory (as the kubelet's): followed.
	rootLink := filepath.Join(shared, "root-link")
	os.Symlink(filepath.Join(own, "real"), rootLink)
	expect(t, New(rootLink, Options{Clock: &stepClock{}}).Read(ctx), "mine", 1, "")
}
