//go:build !(linux && (amd64 || arm64 || 386 || riscv64 || s390x || loong64))

package atomicfile

import (
	"errors"
	"os"
)

var errNoUnnamed = errors.New("unnamed files are not supported here")

// openUnnamed fails: this system has no O_TMPFILE (or this package does
// not know its value), so temporary files are named from the start.
func openUnnamed(string) (*os.File, error) { return nil, errNoUnnamed }

func linkUnnamed(*os.File, string) error { return errNoUnnamed }
