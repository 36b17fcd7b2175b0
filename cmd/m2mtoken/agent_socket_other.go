//go:build !unix

package main

import (
	"net"
	"os"
)

// listenUnixPrivate listens on a Unix socket at path and restricts it to
// its owner.
func listenUnixPrivate(path string) (net.Listener, error) {
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
