//go:build unix

package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// OpenOwned opens path as [os.OpenFile] does, but never through a symbolic
// link at path, and only a regular file that this process's user (or
// root) owns and that neither its group nor others may write.
func OpenOwned(path string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW, perm)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("%s is a symbolic link, which is refused: it could send this read or write to another file; remove it", path)
	}
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file (%v); remove it", path, fi.Mode().Type())
	}
	if err == nil {
		err = checkOwner(path, "the file", fi)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func checkOwner(path, what string, fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if uid := os.Geteuid(); int(st.Uid) != uid && st.Uid != 0 {
		return fmt.Errorf("%s %s is owned by user %d, not by this process's user (%d) or root: another user could plant files or links in it; use one of your own", what, path, st.Uid, uid)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		mode := fmt.Sprintf("%04o", perm)
		if fi.Mode()&os.ModeSticky != 0 {
			mode = fmt.Sprintf("%04o", perm|0o1000) // the sticky bit stops renames, not new files or links
		}
		return fmt.Errorf("%s %s may be written by its group or others (mode %s): another user could plant files or links in it; run chmod go-w %s, or use one of your own", what, path, mode, path)
	}
	return nil
}

// lockFile takes f's advisory lock, held until f is closed.
func lockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}

// writerGone reports whether the temporary file at p is unlocked: its
// writer died (or finished) and left it.
func writerGone(p string) bool {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil
}

// setModTime sets f's access and modification times to t (at most the
// year 2200, which nanoseconds since 1970 can hold).
func setModTime(f *os.File, t time.Time) error {
	if limit := time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC); t.After(limit) {
		t = limit
	}
	tv := syscall.NsecToTimeval(t.UnixNano())
	return syscall.Futimes(int(f.Fd()), []syscall.Timeval{tv, tv})
}
