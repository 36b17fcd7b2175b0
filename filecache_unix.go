//go:build unix

package m2mtoken

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/m2mtoken/m2mtoken/internal/atomicfile"
)

// tryLock takes an exclusive flock on path without blocking. It returns
// nil and no error if another holder has it.
//
// A lock file is removed only by its lock's holder (see sweep), so the
// lock taken is checked to be on the file still at path: a lock on a file
// that was removed after it was opened here holds nothing, and the file
// now at path is opened instead.
func tryLock(path string) (*os.File, error) {
	for range 8 {
		f, err := atomicfile.OpenOwned(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("m2mtoken: file cache lock: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, nil
			}
			return nil, fmt.Errorf("m2mtoken: file cache lock: %w", err)
		}
		held, err1 := f.Stat()
		named, err2 := os.Lstat(path)
		if err1 == nil && err2 == nil && os.SameFile(held, named) {
			return f, nil
		}
		unlock(f)
	}
	return nil, fmt.Errorf("m2mtoken: file cache lock: %s keeps being removed or replaced while it is locked", path)
}

// unlock drops the flock and closes f. (Closing alone drops it too, and so
// does the holder's death, however it dies.)
func unlock(f *os.File) {
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	f.Close()
}

// dropLock removes the lock file at path, whose lock f holds, then
// releases the lock: no other holder can lock the file once it is gone.
func dropLock(f *os.File, path string) error {
	err := os.Remove(path)
	unlock(f)
	return err
}

const haveLocks = true
