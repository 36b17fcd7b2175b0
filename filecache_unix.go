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
func tryLock(path string) (*os.File, error) {
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
	return f, nil
}

// unlock drops the flock and closes f. (Closing alone drops it too, and so
// does the holder's death, however it dies.)
func unlock(f *os.File) {
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	f.Close()
}

const haveLocks = true
