//go:build linux && (amd64 || arm64 || 386 || riscv64 || s390x || loong64)

package atomicfile

import (
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

// oTmpfile is O_TMPFILE: __O_TMPFILE (the same on these architectures)
// with O_DIRECTORY (which is not: 0x10000 on amd64, 0x4000 on arm64).
const oTmpfile = 0x400000 | syscall.O_DIRECTORY

// openUnnamed opens a new file in dir that has no name (O_TMPFILE): if
// its writer dies, the system frees it, and no half-written file is left.
// It fails, and the caller uses a named file, where such a file could not
// be given a name later: linkUnnamed needs /proc (not mounted in some
// chroots and minimal containers).
func openUnnamed(dir string) (*os.File, error) {
	fd, err := syscall.Open(dir, oTmpfile|syscall.O_RDWR|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := os.Lstat(procFD(fd)); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), dir+string(os.PathSeparator)+"(unnamed)"), nil
}

// procFD is the path under /proc of this process's descriptor fd.
func procFD(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// linkUnnamed gives f, from openUnnamed, the name path, which must not
// exist.
func linkUnnamed(f *os.File, path string) error {
	from, err := syscall.BytePtrFromString(procFD(int(f.Fd())))
	if err != nil {
		return err
	}
	to, err := syscall.BytePtrFromString(path)
	if err != nil {
		return err
	}
	const atSymlinkFollow = 0x400
	atFDCWD := -100 // AT_FDCWD, as the kernel reads it
	_, _, errno := syscall.Syscall6(syscall.SYS_LINKAT, uintptr(atFDCWD), uintptr(unsafe.Pointer(from)),
		uintptr(atFDCWD), uintptr(unsafe.Pointer(to)), atSymlinkFollow, 0)
	if errno != 0 {
		return &os.LinkError{Op: "linkat", Old: f.Name(), New: path, Err: errno}
	}
	return nil
}
