//go:build !unix

package atomicfile

import (
	"os"
	"time"
)

// OpenOwned opens path as [os.OpenFile] does. Links and ownership are not
// checked on this system.
func OpenOwned(path string, flag int, perm os.FileMode) (*os.File, error) {
	return os.OpenFile(path, flag, perm)
}

// checkOwner checks nothing: file ownership is not checked on this
// system.
func checkOwner(string, string, os.FileInfo) error { return nil }

// lockFile takes no lock: there is no advisory lock here.
func lockFile(*os.File) error { return nil }

// writerGone reports a temporary file a minute old as left behind: with
// no lock to ask, a younger one may still be in use.
func writerGone(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && time.Since(fi.ModTime()) > time.Minute
}

// setModTime sets the access and modification times of f, a named file,
// to t.
func setModTime(f *os.File, t time.Time) error { return os.Chtimes(f.Name(), t, t) }
