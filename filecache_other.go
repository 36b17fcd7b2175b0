//go:build !unix

package m2mtoken

import (
	"os"

	"github.com/m2mtoken/m2mtoken/internal/atomicfile"
)

// tryLock has no cross-process lock here: every caller gets the lease, and
// overlapping runs may each fetch a token.
func tryLock(path string) (*os.File, error) {
	return atomicfile.OpenOwned(path, os.O_RDWR|os.O_CREATE, 0o600)
}

func unlock(f *os.File) { f.Close() }

// dropLock closes f and removes the lock file at path (an open file may
// not be removed on every system, and there is no lock to hold here).
func dropLock(f *os.File, path string) error {
	f.Close()
	return os.Remove(path)
}

const haveLocks = false
