// Package atomicfile replaces a file's content atomically: readers see the
// old content or the new, never a part.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write writes data to a temporary file beside path, named by pattern (as
// [os.CreateTemp] takes it), with mode 0600, syncs it and renames it over
// path. If gid is not -1 the file gets group gid and mode 0640 before any
// data is written. A failed write leaves path as it was and removes the
// temporary file.
func Write(path, pattern string, data []byte, gid int) error {
	mode := os.FileMode(0o600)
	if gid >= 0 {
		mode = 0o640
	}
	return WriteMode(path, pattern, data, mode, gid)
}

// WriteMode is Write with the file's final mode given. The temporary file
// is a new file (O_EXCL), so a symlink planted at path or at a temporary
// name never redirects the write: the rename replaces a link at path
// rather than follow it.
func WriteMode(path, pattern string, data []byte, mode os.FileMode, gid int) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), pattern)
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	err = tmp.Chmod(0o600)
	if err == nil && gid >= 0 {
		err = tmp.Chown(-1, gid)
	}
	if err == nil && mode != 0o600 {
		err = tmp.Chmod(mode)
	}
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	return err
}
