//go:build unix

package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// TestGroupSocketRace: a member of the --group who may write the
// socket's directory swaps the socket's path for a symlink between the
// bind and the chown and chmod, to get a root-owned 0600 file made 0660
// root:group (a chown by path lost that race 3 times in 150 tries). Here a
// goroutine swaps the path for a link to such a file as fast as it can
// while the socket is opened again and again: the file must keep its
// owner and mode, and every socket that opens is 0660 with the group.
func TestGroupSocketRace(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(victim, []byte("root only"), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "agent.sock")
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			// The attacker: whatever is at the path becomes a link.
			if fi, err := os.Lstat(sock); err == nil && fi.Mode()&os.ModeSocket != 0 {
				os.Remove(sock)
				os.Symlink(victim, sock)
			}
		}
	}()
	const tries = 1000
	opened := 0
	for range tries {
		ln, err := listen("--listen", listenSpec{"unix", sock}, nobody)
		if err == nil {
			opened++
			ln.Close()
		}
		os.Remove(sock)
		if fi, err := os.Stat(victim); err != nil || fi.Mode().Perm() != 0o600 || fi.Sys().(*syscall.Stat_t).Gid != 0 {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("after %d sockets the victim is %v gid %d: the chown and chmod went through the planted link", opened, fi.Mode(), fi.Sys().(*syscall.Stat_t).Gid)
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d tries, %d sockets opened, the victim untouched", tries, opened)
	os.Remove(sock) // the attacker's last link, if any

	// Without an attacker, the socket is 0660 with the group.
	ln, err := listen("--listen", listenSpec{"unix", sock}, nobody)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Lstat(sock)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 || fi.Sys().(*syscall.Stat_t).Gid != nobody {
		t.Fatalf("socket %v, %v", fi, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("left in the socket's directory: %v", ents)
	}
}

// TestSocketDirectoryOthersMayWrite: a socket directory that group or
// others may write, or that another user owns, is refused: a user who may
// write it could swap the socket.
func TestSocketDirectoryOthersMayWrite(t *testing.T) {
	needRoot(t)
	for name, prepare := range map[string]func(string) error{
		"group-writable":        func(d string) error { return os.Chmod(d, 0o770) },
		"like /tmp":             func(d string) error { return os.Chmod(d, 0o777|os.ModeSticky) },
		"owned by another user": func(d string) error { return os.Chown(d, nobody, nobody) },
	} {
		dir := t.TempDir()
		if err := prepare(dir); err != nil {
			t.Fatal(err)
		}
		for _, gid := range []int{-1, nobody} {
			ln, err := listen("--listen", listenSpec{"unix", filepath.Join(dir, "s")}, gid)
			if err == nil {
				ln.Close()
				t.Fatalf("%s, gid %d: the socket was opened", name, gid)
			}
			if !strings.Contains(err.Error(), dir) {
				t.Fatalf("%s: %v; want the directory named", name, err)
			}
			t.Logf("%s: %v", name, err)
		}
	}
}

// TestProxyUnixSocketGroup: a proxy on a Unix socket with Group is
// 0660, owned by the group, like the token endpoint's socket; a
// required header on it is refused, in the user's words.
func TestProxyUnixSocketGroup(t *testing.T) {
	s := issuer(t)
	sock := filepath.Join(t.TempDir(), "api.sock")
	gid := os.Getgid()
	startAgent(t, Config{Sources: []Source{source(s)}, Group: strconv.Itoa(gid), Proxies: []Proxy{{Source: "default", Listen: "unix:" + sock, Upstream: "https://api.example.com"}}})
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o660 || int(fi.Sys().(*syscall.Stat_t).Gid) != gid {
		t.Fatalf("the proxy's socket with a group: %v %v", fi.Mode(), err)
	}
	_, err = New(Config{Sources: []Source{source(s)}, Proxies: []Proxy{{Source: "default", Listen: "unix:" + sock, Upstream: "https://api.example.com", RequireHeader: true}}})
	var fe *FlagError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "is for a proxy on TCP") {
		t.Fatalf("a required header on a Unix socket: %v", err)
	}
}
