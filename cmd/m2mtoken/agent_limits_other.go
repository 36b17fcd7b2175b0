//go:build !unix

package main

// openFileLimit reports no limit: this system has no RLIMIT_NOFILE.
func openFileLimit() (int, bool) { return 0, false }
