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
	"time"
)

// FileCache is a [Cache] in a directory: one file per key, so that a token
// outlives the process that fetched it. Scripts, cron jobs and the
// m2mtoken command use it to spend one token per token lifetime instead of
// one per run.
//
// Files are written to a temporary file and renamed, mode 0600 in a 0700
// directory, and hold the token, its issue time and expiry: never the
// client secret. A missing file is a miss; a corrupt one is a miss that the
// source logs. On Unix, FileCache is also a [Leaser] through an advisory
// lock (flock) per key, so that overlapping runs on one machine make one
// token request between them; the lock is released when its holder exits,
// however it exits.
//
// The token in the file is a bearer credential: keep the directory on a
// disk only its owner can read.
type FileCache struct {
	dir string
}

// NewFileCache returns a cache in dir. The directory is created (0700) on
// the first Set.
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

// Dir returns the cache's directory.
func (c *FileCache) Dir() string { return c.dir }

// path maps a key to a file name. Keys made by TokenSource are safe names
// already; any other key is hashed.
func (c *FileCache) path(key, ext string) string {
	safe := key != "" && len(key) <= 128
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			safe = false
			break
		}
	}
	if !safe {
		sum := sha256.Sum256([]byte(key))
		key = "k-" + hex.EncodeToString(sum[:16])
	}
	return filepath.Join(c.dir, key+ext)
}

// Get reads the entry for key. A missing file gives nil and no error; an
// unreadable or corrupt one gives nil and an error that says which file.
func (c *FileCache) Get(_ context.Context, key string) (*Entry, error) {
	p := c.path(key, ".json")
	f, err := os.Open(p)
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
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return fmt.Errorf("m2mtoken: file cache: %w", err)
	}
	b, err := e.MarshalBinary()
	if err != nil {
		return fmt.Errorf("m2mtoken: file cache: %w", err)
	}
	final := c.path(key, ".json")
	tmp, err := os.CreateTemp(c.dir, filepath.Base(final)+".tmp-*")
	if err != nil {
		return fmt.Errorf("m2mtoken: file cache: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename this is a no-op
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.Write(b)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), final)
	}
	if err != nil {
		return fmt.Errorf("m2mtoken: file cache: writing %s: %w", final, err)
	}
	return nil
}

// TryLease takes the advisory lock for key without waiting. ttl is not
// used: the operating system drops the lock when its holder exits.
func (c *FileCache) TryLease(_ context.Context, key string, _ time.Duration) (func(), bool, error) {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("m2mtoken: file cache: %w", err)
	}
	return tryLock(c.path(key, ".lock"))
}
