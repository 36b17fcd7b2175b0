//go:build unix && !linux

package atomicfile

// readOnlyMount reports false: read-only mounts are recognised on Linux
// only, so a directory that others may write is refused here even on one.
func readOnlyMount(string) bool { return false }
