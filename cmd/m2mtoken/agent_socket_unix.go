//go:build unix

package main

import (
	"net"
	"syscall"
)

// listenUnixPrivate listens on a Unix socket at path that is created with
// mode 0600, so that no other user can connect between its creation and a
// chmod. The umask is the process's: the agent opens its listeners before
// it starts any other goroutine that creates files.
func listenUnixPrivate(path string) (net.Listener, error) {
	old := syscall.Umask(0o177)
	defer syscall.Umask(old)
	return net.Listen("unix", path)
}
