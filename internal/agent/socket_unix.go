//go:build unix

package agent

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"

	"github.com/m2mtoken/m2mtoken/internal/atomicfile"
)

// listenUnixPrivate listens on a Unix socket at path that never has a
// looser mode than its final one, and that nobody else can swap while it
// is set up:
//
//   - The socket's directory must be one that only the agent's user (or
//     root) may write: a user who may write it could replace the socket,
//     or put a link where the agent sets its group.
//   - Without a group (gid -1), the socket is created with mode 0600
//     under a umask. The umask is the process's: the agent opens its
//     listeners before it starts any other goroutine that creates files.
//   - With one, the socket is created 0600 in a new private (0700)
//     directory beside path, given its group (Lchown) and mode 0660
//     there, where no other user can reach it, and renamed to path. No
//     chown or chmod ever goes through path, so a link planted there is
//     replaced, never followed.
//
// The listener does not remove its socket file when closed: the agent
// does, at path.
func listenUnixPrivate(path string, gid int) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := atomicfile.CheckDir(dir); err != nil {
		return nil, fmt.Errorf("the socket's directory: %w", err)
	}
	if gid < 0 {
		return bindPrivate(path)
	}
	priv, err := os.MkdirTemp(dir, ".m2m")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(priv)
	tmp := filepath.Join(priv, "s")
	ln, err := bindPrivate(tmp)
	if err != nil {
		return nil, err
	}
	if err = os.Lchown(tmp, -1, gid); err == nil {
		err = os.Chmod(tmp, 0o660) // in priv, which only we can write
	}
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("--group: giving the socket to group %d: %w (the agent's user must be a member of the group)", gid, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// bindPrivate binds a Unix socket at path with mode 0600 from the start.
func bindPrivate(path string) (net.Listener, error) {
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	return ln, nil
}
