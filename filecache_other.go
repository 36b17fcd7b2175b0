//go:build !unix

package m2mtoken

import "os"

// tryLock has no cross-process lock here: every caller gets the lease, and
// overlapping runs may each fetch a token.
func tryLock(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
}

func unlock(f *os.File) { f.Close() }

const haveLocks = false
