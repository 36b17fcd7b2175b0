//go:build !unix

package atomicfile

import (
	"fmt"
	"os"
	"time"
)

// CheckDir returns an error if dir is not a directory. File ownership is
// not checked on this system.
func CheckDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}

// OpenOwned opens path as [os.OpenFile] does. Links and ownership are not
// checked on this system.
func OpenOwned(path string, flag int, perm os.FileMode) (*os.File, error) {
	return os.OpenFile(path, flag, perm)
}

// lockFile takes no lock: there is no advisory lock here.
func lockFile(*os.File) error { return nil }

// writerGone reports a temporary file a minute old as left behind: with
// no lock to ask, a younger one may still be in use.
func writerGone(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && time.Since(fi.ModTime()) > time.Minute
}
