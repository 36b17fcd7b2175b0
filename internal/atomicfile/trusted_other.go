//go:build !unix

package atomicfile

import "os"

// ReadTrusted is [ReadLimited]: owners and modes are not checked on this
// system.
func ReadTrusted(path string, limit int64, what, why string) ([]byte, error) {
	return ReadLimited(path, limit, what)
}

// OthersMayRead reports false: modes are not checked on this system.
func OthersMayRead(string) (os.FileMode, bool) { return 0, false }
