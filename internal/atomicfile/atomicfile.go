// Package atomicfile replaces a file's content atomically: readers see the
// old content or the new, never a part. It also holds the checks that keep
// another local user from steering such writes: a directory that another
// user owns or may write is refused ([CheckDir]), and files are opened so
// that a planted symbolic link is never followed ([OpenOwned]).
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
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

// WriteMode is Write with the file's final mode given.
//
// The temporary file is a new file (O_EXCL), so a symlink planted at path
// or at a temporary name never redirects the write: the rename replaces a
// link at path rather than follow it. Where the system allows (Linux), it
// has no name until its content is complete and synced, so a writer
// killed mid-write leaves nothing behind (one killed in the moment between
// naming it and the rename leaves it, complete); elsewhere it holds an
// advisory lock while it lives. Either way, temporary files of pattern that a
// killed writer left are removed by the next write, whatever their age.
func WriteMode(path, pattern string, data []byte, mode os.FileMode, gid int) error {
	prefix, suffix, _ := strings.Cut(pattern, "*")
	RemoveDeadTemps(filepath.Dir(path), func(name string) bool {
		return len(name) > len(prefix)+len(suffix) && strings.HasPrefix(name, prefix) && strings.HasSuffix(name, suffix)
	})
	return write(path, pattern, data, mode, gid, time.Time{})
}

// WriteExpiring is Write (mode 0600) with the file's modification time
// set to expiry, the time its content is of no more use: a sweep of the
// directory can then tell the files it may remove by a stat, without
// reading each. Where the time cannot be set, the file keeps the time of
// the write (one already past). Unlike Write, it does not look for the
// temporary files of killed writers, which would read the whole directory
// at every write: the sweep removes them, with [RemoveDeadTemps].
func WriteExpiring(path, pattern string, data []byte, expiry time.Time) error {
	return write(path, pattern, data, 0o600, -1, expiry)
}

// write is WriteMode without the look for dead writers' temporary files,
// with the modification time set to mtime unless it is zero.
func write(path, pattern string, data []byte, mode os.FileMode, gid int, mtime time.Time) error {
	dir := filepath.Dir(path)
	prefix, suffix, _ := strings.Cut(pattern, "*")
	t, err := newTemp(dir, pattern)
	if err != nil {
		return err
	}
	defer t.discard() // a no-op after the rename
	f := t.f
	err = f.Chmod(0o600)
	if err == nil && gid >= 0 {
		err = f.Chown(-1, gid)
	}
	if err == nil && mode != 0o600 {
		err = f.Chmod(mode)
	}
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil && !mtime.IsZero() {
		setModTime(f, mtime) // at worst, the time of the write
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = t.name(prefix, suffix)
	}
	if err == nil {
		err = os.Rename(t.path, path)
	}
	if err == nil {
		t.path = ""
	}
	return err
}

// namedOnly makes every temporary file a named one, as on systems without
// unnamed files; for tests.
var namedOnly = false

// NamedOnlyForTests makes every later temporary file of this process a
// named one, as on systems without unnamed files. Only the tests' writer
// (killchild) calls it.
func NamedOnlyForTests() { namedOnly = true }

// CheckDir returns an error, in words that say what to fix, if dir is not
// a directory that only this process's user (or root) can write: one
// that another user owns, or that its group or others may write (even
// with the sticky bit, as /tmp has), lets that user plant files or
// symbolic links for this process to read or write through. The error of
// a directory that does not exist satisfies errors.Is(err, fs.ErrNotExist).
// Ownership and mode are checked on Unix only.
func CheckDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	return checkOwner(dir, "the directory", fi)
}

// temp is a temporary file being written: path is its name, "" while it
// has none.
type temp struct {
	f    *os.File
	path string
}

// newTemp creates a temporary file in dir: an unnamed one where the system
// has them, else a named one (pattern), locked.
func newTemp(dir, pattern string) (*temp, error) {
	if !namedOnly {
		if f, err := openUnnamed(dir); err == nil {
			if err := lockFile(f); err != nil {
				f.Close()
				return nil, err
			}
			return &temp{f: f}, nil
		}
	}
	for {
		f, err := os.CreateTemp(dir, pattern)
		if err != nil {
			return nil, err
		}
		if err := lockFile(f); err != nil {
			f.Close()
			os.Remove(f.Name())
			return nil, err
		}
		// Between creation and lock, another writer's cleanup may have
		// taken the file for a dead writer's and removed it: then again.
		fi, err1 := f.Stat()
		named, err2 := os.Lstat(f.Name())
		if err1 == nil && err2 == nil && os.SameFile(fi, named) {
			return &temp{f: f, path: f.Name()}, nil
		}
		f.Close()
	}
}

// name gives an unnamed temporary file a name, prefix + random + suffix,
// beside the file it will replace; a named one keeps its own.
func (t *temp) name(prefix, suffix string) error {
	if t.path != "" {
		return nil
	}
	dir := filepath.Dir(t.f.Name())
	for range 100 {
		var b [8]byte
		rand.Read(b[:])
		p := filepath.Join(dir, prefix+hex.EncodeToString(b[:])+suffix)
		err := linkUnnamed(t.f, p)
		if err == nil {
			t.path = p
			return nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	return errors.New("no free temporary file name")
}

// discard removes the temporary file, if it still has its name, and
// closes it (which drops its lock).
func (t *temp) discard() {
	if t.path != "" {
		os.Remove(t.path)
	}
	t.f.Close()
}

// RemoveDeadTemps removes the temporary files in dir whose names match
// (those of a Write's pattern) and whose writers are gone: a file whose
// lock can be taken has no live writer, since a writer holds it from
// creation to rename. Only regular files are removed.
func RemoveDeadTemps(dir string, match func(name string) bool) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		n := e.Name()
		if !match(n) || !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, n)
		if writerGone(p) {
			os.Remove(p)
		}
	}
}
