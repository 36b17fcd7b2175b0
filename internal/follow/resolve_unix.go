//go:build unix

package follow

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// maxLinks is how many symbolic links a path may go through, as Linux's
// limit.
const maxLinks = 40

// resolve returns the file path names after its symbolic links, and the
// file's Lstat, walking it one name at a time: a link or file on the way
// that another user could have planted is refused (see planted).
func resolve(path string) (string, os.FileInfo, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", nil, err
	}
	todo := strings.Split(abs, "/")
	done := "/"
	var fi os.FileInfo
	links := 0
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			done = filepath.Dir(done)
			continue
		}
		next := filepath.Join(done, name)
		if fi, err = os.Lstat(next); err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) && next != abs {
				return "", nil, fmt.Errorf("%s: %w (at %s)", path, pe.Err, next)
			} else if pe != nil {
				return "", nil, fmt.Errorf("%s: %w", path, pe.Err)
			}
			return "", nil, fmt.Errorf("%s: %w", path, err)
		}
		if err := planted(next, done, fi); err != nil {
			return "", nil, fmt.Errorf("%s: %w", path, err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = next
			continue
		}
		if links++; links > maxLinks {
			return "", nil, fmt.Errorf("%s: more than %d symbolic links", path, maxLinks)
		}
		target, err := os.Readlink(next)
		if err != nil {
			return "", nil, fmt.Errorf("%s: %w", path, err)
		}
		if filepath.IsAbs(target) {
			done = "/"
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	if fi == nil {
		return "", nil, fmt.Errorf("%s is not a file", path)
	}
	return done, fi, nil
}

// planted refuses name (in directory dir) if another user could have
// put it there for this process to read: it is owned by a user other
// than this process's or root, and dir may be written by its group or
// others (as /tmp is, sticky bit or not). A file another user keeps in a
// directory of their own is theirs to give.
func planted(name, dir string, fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if uid := os.Geteuid(); int(st.Uid) == uid || st.Uid == 0 {
		return nil
	}
	di, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if perm := di.Mode().Perm(); perm&0o022 != 0 {
		what := "file"
		if fi.Mode()&fs.ModeSymlink != 0 {
			what = "symbolic link"
		}
		return fmt.Errorf("the %s %s is owned by user %d, not this process's user (%d) or root, in %s, which others may write (mode %04o): another user could have planted it; refused. Keep the file in a directory only its owner can write", what, name, st.Uid, os.Geteuid(), dir, perm)
	}
	return nil
}

// openNoFollow opens a resolved path for reading, refusing a symbolic
// link put in its place since, and never blocking on a FIFO.
func openNoFollow(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, errors.New("it became a symbolic link while it was opened")
	}
	return f, err
}
