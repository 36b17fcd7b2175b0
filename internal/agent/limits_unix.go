//go:build unix

package agent

import (
	"math"
	"syscall"
)

// openFileLimit returns the process's open-file limit (RLIMIT_NOFILE),
// as the Go runtime has raised it at start.
func openFileLimit() (int, bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > math.MaxInt32 {
		return 0, false
	}
	return int(rl.Cur), true
}
