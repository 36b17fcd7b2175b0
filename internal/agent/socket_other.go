//go:build !unix

package agent

import (
	"fmt"
	"net"
	"os"
)

// listenUnixPrivate listens on a Unix socket at path and restricts it to
// its owner. A group (gid not -1) is not supported here.
func listenUnixPrivate(path string, gid int) (net.Listener, error) {
	if gid >= 0 {
		return nil, fmt.Errorf("--group is not supported on this system")
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}
