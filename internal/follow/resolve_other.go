//go:build !unix

package follow

import (
	"fmt"
	"os"
	"path/filepath"
)

// resolve returns path after its links and the file's Stat. Ownership is
// not checked on this system.
func resolve(path string) (string, os.FileInfo, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", path, err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", path, err)
	}
	return real, fi, nil
}

// openNoFollow opens a resolved path for reading.
func openNoFollow(path string) (*os.File, error) { return os.Open(path) }
