package atomicfile

import "syscall"

// readOnlyMount reports whether dir is on a read-only mount, which no one
// can write whatever its mode.
func readOnlyMount(dir string) bool {
	var st syscall.Statfs_t
	const stRdonly = 1 // ST_RDONLY, with the mount's own flags since Linux 2.6.36
	return syscall.Statfs(dir, &st) == nil && st.Flags&stRdonly != 0
}
