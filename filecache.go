package m2mtoken

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/atomicfile"
)

// FileCache is a [Cache] in a directory: one file per key, so that a token
// outlives the process that fetched it. Scripts, cron jobs and the
// m2mtoken command use it to spend one token per token lifetime instead of
// one per run.
//
// Files are written to a temporary file and renamed, mode 0600 in a 0700
// directory, and hold the token, its issue time and expiry: never the
// client secret. A missing file is a miss; a corrupt one is a miss that the
// source logs. An entry whose token has expired is removed, with its lock
// file, and so is a lock file left without an entry (a request the
// endpoint refused), unless a process holds that lock: at the first Set
// or Lease of a FileCache, then at most every 10 minutes. So a directory
// holds the files of tokens that are still valid, however many requests
// have come and gone. On Unix, FileCache is also a [Leaser] through an advisory
// lock (flock) per key, so that overlapping runs on one machine
// make one token request between them; the lock is released when its
// holder exits, however it exits. A process killed while it writes leaves
// no partial file, and on Linux no temporary file either (elsewhere the
// next sweep, below, removes it).
//
// On Unix, a directory that another user owns, or that its group or
// others may write, is refused: every method returns an error that names
// it and says why (see [FileCache.Check]). Files in it are opened without
// following symbolic links, and an entry or lock file that another user
// owns is refused too, so that no other local user can plant a token for
// this process to use, or a link for it to write through.
//
// The token in the file is a bearer credential: keep the directory on a
// disk only its owner can read.
type FileCache struct {
	dir string

	mu    sync.Mutex
	swept time.Time // the last sweep (see sweep)
}

// NewFileCache returns a cache in dir. The directory is created (0700) on
// the first Set or Lease.
func NewFileCache(dir string) *FileCache { return &FileCache{dir: dir} }

// DefaultCacheDir is the m2mtoken directory under the user's cache
// directory ($XDG_CACHE_HOME or ~/.cache on Linux).
func DefaultCacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "m2mtoken"), nil
}

// Check returns an error if the cache's directory exists but may not be
// used: on Unix, when another user (other than root) owns it, or its
// group or others may write it. The error names the directory and says
// why. A directory that does not exist yet is fine: Set creates it.
func (c *FileCache) Check() error {
	err := c.checkDir()
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// checkDir is Check, but a missing directory is an error that wraps
// fs.ErrNotExist.
func (c *FileCache) checkDir() error {
	if err := atomicfile.CheckDir(c.dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return fmt.Errorf("m2mtoken: file cache: %w", err)
	}
	return nil
}

// makeDir creates the directory (0700) if it is missing, and checks it.
func (c *FileCache) makeDir() error {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return fmt.Errorf("m2mtoken: file cache: %w", err)
	}
	return c.checkDir()
}

// path maps a key to a file name. Keys made by TokenSource are safe names
// already; any other key is hashed.
func (c *FileCache) path(key, ext string) string {
	if !safeKey(key) {
		sum := sha256.Sum256([]byte(key))
		key = "k-" + hex.EncodeToString(sum[:16])
	}
	return filepath.Join(c.dir, key+ext)
}

// safeKey reports whether key can be a file name as it is: 1 to 128
// letters, digits, dashes and underscores.
func safeKey(key string) bool {
	if key == "" || len(key) > 128 {
		return false
	}
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// Get reads the entry for key. A missing file gives nil and no error; an
// unreadable or corrupt one gives nil and an error that says which file.
func (c *FileCache) Get(_ context.Context, key string) (*Entry, error) {
	if err := c.checkDir(); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	return c.read(c.path(key, ".json"))
}

// read reads the entry in the file p: nil and no error if there is none.
func (c *FileCache) read(p string) (*Entry, error) {
	f, err := atomicfile.OpenOwned(p, os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("m2mtoken: file cache: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxStoredEntry+1))
	if err != nil {
		return nil, fmt.Errorf("m2mtoken: file cache: reading %s: %w", p, err)
	}
	e := new(Entry)
	if err := e.UnmarshalBinary(b); err != nil {
		return nil, fmt.Errorf("m2mtoken: file cache: %s is corrupt (%v); it will be replaced", p, err)
	}
	return e, nil
}

// Set writes e for key atomically: readers see the old file or the new
// one, never a part.
func (c *FileCache) Set(_ context.Context, key string, e *Entry) error {
	if err := c.makeDir(); err != nil {
		return err
	}
	b, err := e.MarshalBinary()
	if err != nil {
		return fmt.Errorf("m2mtoken: file cache: %w", err)
	}
	final := c.path(key, ".json")
	err = atomicfile.WriteExpiring(final, filepath.Base(final)+".tmp-*", b, e.Expiry)
	if err != nil {
		return fmt.Errorf("m2mtoken: file cache: writing %s: %w", final, err)
	}
	c.maybeSweep()
	return nil
}

// Lease takes the advisory lock (flock) for key without waiting, and makes
// FileCache a [Leaser]. ttl is not used: the lock lasts as long as its
// holder, and the operating system drops it when the holder exits,
// however it exits (SIGKILL included), so a waiter notices a dead holder
// at its next poll. The lock file records when the lease was taken and the
// holder's status (see [Lease.Keep]), for [FileCache.LeaseInfo].
func (c *FileCache) Lease(_ context.Context, key string, _ time.Duration) (Lease, bool, error) {
	if err := c.makeDir(); err != nil {
		return nil, false, err
	}
	f, err := tryLock(c.path(key, ".lock"))
	if f == nil || err != nil {
		return nil, false, err
	}
	l := &fileLease{f: f, since: time.Now()}
	if err := l.write(""); err != nil {
		unlock(f)
		return nil, false, err
	}
	c.maybeSweep() // this key's lock is held: the sweep leaves it
	return l, true, nil
}

// LeaseInfo reports when the lease for key was taken and its holder's last
// status, from the lock file; nil if no holder has written one. It does not
// probe the lock: a dead holder's record stays until the next holder
// overwrites it, but a source asks only after the lock was refused.
func (c *FileCache) LeaseInfo(_ context.Context, key string) (*LeaseInfo, error) {
	if err := c.checkDir(); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var b []byte
	f, err := atomicfile.OpenOwned(c.path(key, ".lock"), os.O_RDONLY, 0)
	if err == nil {
		b, err = io.ReadAll(io.LimitReader(f, 4<<10))
		f.Close()
	}
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(b) == 0) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("m2mtoken: file cache lock: %w", err)
	}
	var ms int64
	var status string
	head, rest, _ := strings.Cut(string(b), "\n")
	if _, err := fmt.Sscanf(head, "m2mtoken-lease %d", &ms); err != nil {
		return nil, nil // not ours, or cut short: nothing known
	}
	status = strings.TrimSpace(rest)
	return &LeaseInfo{Age: max(time.Since(time.UnixMilli(ms)), 0), Status: truncate(status, 300)}, nil
}

// fileLease is a held file lock.
type fileLease struct {
	mu    sync.Mutex
	f     *os.File // nil once released
	since time.Time
}

// write records the lease's start and status in the lock file.
func (l *fileLease) write(status string) error {
	b := fmt.Appendf(nil, "m2mtoken-lease %d\n%s\n", l.since.UnixMilli(), truncate(strings.ReplaceAll(status, "\n", " "), 300))
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("m2mtoken: file cache lock: %w", err)
	}
	if _, err := l.f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("m2mtoken: file cache lock: %w", err)
	}
	return nil
}

// Keep records status; the lock itself needs no keeping.
func (l *fileLease) Keep(_ context.Context, _ time.Duration, status string) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return false, nil
	}
	return true, l.write(status)
}

// Release clears the record and drops the lock.
func (l *fileLease) Release(context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	l.f.Truncate(0)
	unlock(l.f)
	l.f = nil
	return nil
}
