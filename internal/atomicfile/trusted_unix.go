//go:build unix

package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ReadTrusted is [ReadLimited] for a file that steers what this process
// does with its credentials, such as the agent's config file; why says
// what its writer could do, for errors. It refuses the file, in words
// that say what to fix (chmod, chown), unless:
//
//   - the file is owned by this process's user or root, and neither its
//     group nor others may write it;
//   - so is each directory above it, up to and including the first one
//     that root owns. A directory that group or others may write passes
//     if it has the sticky bit (as /tmp: no one can rename or replace a
//     file there that they do not own) or is on a read-only mount (no one
//     can write it: a Kubernetes ConfigMap or Secret volume is such a
//     directory, root's, mode 0777 or 1777);
//   - a symbolic link at path is owned by this user or root (Kubernetes
//     mounts are links to ..data/NAME, root's). The directories checked
//     are those of the file the links lead to and of the link itself.
//
// The file checked is the one opened and read, so a swap after the check
// is read as what it is. A pipe or a device (a shell's <(...)) has no
// directory to check; its owner and mode are.
func ReadTrusted(path string, limit int64, what, why string) ([]byte, error) {
	return readTrusted(path, limit, what, why, os.Geteuid())
}

// readTrusted is ReadTrusted for the user uid.
func readTrusted(path string, limit int64, what, why string, uid int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, openError(path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	tc := trustCheck{what: what, path: path, why: why, uid: uid}
	if err := tc.owner(theFile, path, fi, false); err != nil {
		return nil, err
	}
	if fi.Mode().IsRegular() {
		if err := tc.dirs(); err != nil {
			return nil, err
		}
	}
	return ReadOpened(f, path, limit, what)
}

// trustCheck checks a file, and what leads to it, for ReadTrusted.
type trustCheck struct {
	what, path, why string
	uid             int
}

// What owner checks.
const (
	theFile = iota
	aDirectory
	aLink
)

// owner checks that fi (name, the file, a directory above it or a link to
// it) is the user's or root's, and that its group and others may not
// write it (unless exempt, for a directory).
func (tc trustCheck) owner(kind int, name string, fi os.FileInfo, exempt bool) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	var what, who, fix string
	switch kind {
	case theFile:
		what, who, fix = tc.what+" "+name, tc.why, "use a file of your own"
	case aDirectory:
		what = fmt.Sprintf("the directory %s, above %s %s,", name, tc.what, tc.path)
		who, fix = "%s could replace the file, and "+tc.why, "move the file"
	case aLink:
		what, who, fix = "the symbolic link "+name, "%s could point it at another file", "replace it"
	}
	if int(st.Uid) != tc.uid && st.Uid != 0 {
		chown := "chown"
		if kind == aLink {
			chown = "chown -h"
		}
		if tc.uid == 0 {
			chown += " root"
		} else {
			chown += fmt.Sprintf(" %d", tc.uid)
		}
		return fmt.Errorf("%s is owned by user %d, not by this process's user (%d) or root: %s; run %s %s, or %s",
			what, st.Uid, tc.uid, strings.Replace(who, "%s", "that user", 1), chown, name, fix)
	}
	if fi.Mode().Perm()&0o022 != 0 && kind != aLink && !exempt {
		return fmt.Errorf("%s may be written by its group or others (mode %04o): %s; run chmod go-w %s, or %s",
			what, fi.Mode().Perm(), strings.Replace(who, "%s", "they", 1), name, fix)
	}
	return nil
}

// dirs checks the link at tc.path, if it is one, and the directories
// above the file and above the link.
func (tc trustCheck) dirs() error {
	abs, err := filepath.Abs(tc.path)
	if err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return err
	}
	dirs := []string{filepath.Dir(real)}
	if li, err := os.Lstat(abs); err == nil && li.Mode()&os.ModeSymlink != 0 {
		if err := tc.owner(aLink, abs, li, false); err != nil {
			return err
		}
		d, err := filepath.EvalSymlinks(filepath.Dir(abs))
		if err != nil {
			return err
		}
		if d != dirs[0] {
			dirs = append(dirs, d)
		}
	}
	for _, d := range dirs {
		if err := tc.walk(d); err != nil {
			return err
		}
	}
	return nil
}

// walk checks dir, which has no symbolic link in it, and the directories
// above it up to the first that root owns.
func (tc trustCheck) walk(dir string) error {
	for {
		fi, err := os.Stat(dir)
		if err != nil {
			return err
		}
		exempt := fi.Mode()&os.ModeSticky != 0 || readOnlyMount(dir)
		if err := tc.owner(aDirectory, dir, fi, exempt); err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Uid == 0 {
			return nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil
		}
		dir = parent
	}
}

// OthersMayRead reports whether others may read the regular file at path
// (following links), or its group when that group is not one of this
// process's, and its mode. A group of this process's own may read it: in
// Kubernetes a pod that runs as a user other than root reads its Secret
// through the pod's fsGroup, and the kubelet makes the files 0440 for it
// whatever defaultMode says.
func OthersMayRead(path string) (os.FileMode, bool) {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return 0, false
	}
	perm := fi.Mode().Perm()
	if perm&0o004 != 0 {
		return perm, true
	}
	if perm&0o040 == 0 {
		return perm, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return perm, !ok || !ownGroup(st.Gid)
}

// ownGroup reports whether gid is this process's group or one of its
// supplementary groups.
func ownGroup(gid uint32) bool {
	if int(gid) == os.Getgid() {
		return true
	}
	groups, _ := os.Getgroups()
	for _, g := range groups {
		if uint32(g) == gid {
			return true
		}
	}
	return false
}
