//go:build !unix

package agent

// openFileLimit reports no limit: this system has no RLIMIT_NOFILE.
func openFileLimit() (int, bool) { return 0, false }
