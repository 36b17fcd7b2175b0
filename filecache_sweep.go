// Removing the files of tokens that have expired: a FileCache writes an
// entry and a lock file per token request, and requests that keep
// changing (a pool whose organizations come from its callers) would
// otherwise leave them in its directory for ever.

package m2mtoken

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/atomicfile"
)

// sweepEvery is how often a FileCache looks for files to remove: at its
// first Set or Lease, then at most this often.
const sweepEvery = 10 * time.Minute

// maybeSweep sweeps the directory if it was not swept in the last
// sweepEvery.
func (c *FileCache) maybeSweep() {
	now := time.Now()
	c.mu.Lock()
	due := c.swept.IsZero() || now.Sub(c.swept) >= sweepEvery
	if due {
		c.swept = now
	}
	c.mu.Unlock()
	if due {
		c.sweep(now)
	}
}

// sweep removes from the cache's directory each entry whose token expired
// before now, with its lock file, and each lock file without an entry. It
// returns how many files it removed. It also removes the temporary files
// of writers that died (Set does not look for them: that would read the
// whole directory at every write).
//
// It removes a key's files only while it holds the key's lock, and leaves
// them while another holder has it (a process fetching that token). A
// process that opened the lock file before it was removed finds, once it
// has the lock, that the file is no longer at its path, and locks the one
// there now (see tryLock): no two holders ever have a key's lease at once.
//
// An entry's modification time is its token's expiry (Set writes it so),
// so a stat tells the entries that may have expired; only those are read,
// to be sure, and one that has not expired, or is corrupt, is left with
// its lock file. Names a FileCache does not write, and anything but a
// regular file (a link, a directory), are left alone; files are opened
// with the checks of atomicfile.OpenOwned, and removing a name never
// follows a link.
func (c *FileCache) sweep(now time.Time) int {
	if c.checkDir() != nil {
		return 0
	}
	atomicfile.RemoveDeadTemps(c.dir, func(name string) bool {
		key, _, ok := strings.Cut(name, ".json.tmp-")
		return ok && safeKey(key)
	})
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return 0
	}
	type files struct{ entry, lock fs.DirEntry }
	byKey := make(map[string]*files)
	for _, e := range ents {
		key, ext, ok := cacheFileName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		f := byKey[key]
		if f == nil {
			f = &files{}
			byKey[key] = f
		}
		if ext == ".json" {
			f.entry = e
		} else {
			f.lock = e
		}
	}
	removed := 0
	for key, f := range byKey {
		if f.entry != nil {
			if fi, err := f.entry.Info(); err != nil || fi.ModTime().After(now) {
				continue
			}
		}
		removed += c.sweepKey(key, now, f.lock != nil)
	}
	return removed
}

// sweepKey removes key's entry if its token expired before now, and then
// key's lock file, holding its lock. hadLock says whether the lock file
// was there before (taking the lock creates it). It returns how many of
// the files that were there it removed.
func (c *FileCache) sweepKey(key string, now time.Time, hadLock bool) int {
	lockPath := filepath.Join(c.dir, key+".lock")
	l, err := tryLock(lockPath)
	if l == nil || err != nil {
		return 0 // a holder is fetching this token
	}
	entryPath := filepath.Join(c.dir, key+".json")
	e, err := c.read(entryPath)
	removed := 0
	switch {
	case err != nil || e != nil && e.Expiry.After(now):
		unlock(l)
		return 0
	case e != nil:
		if os.Remove(entryPath) != nil {
			unlock(l)
			return 0
		}
		removed++
	}
	if dropLock(l, lockPath) == nil && hadLock {
		removed++
	}
	return removed
}

// cacheFileName splits a file name that a FileCache writes into its key
// and extension (".json" for an entry, ".lock" for a lock file).
func cacheFileName(name string) (key, ext string, ok bool) {
	for _, ext := range []string{".json", ".lock"} {
		if key, ok := strings.CutSuffix(name, ext); ok && safeKey(key) {
			return key, ext, true
		}
	}
	return "", "", false
}
