// Package follow reads a file that other programs change while this
// process runs, and keeps its last good content: a Kubernetes Secret or
// projected token (an atomic swap of the ..data symlink), a file renamed
// over (Vault Agent's templates), or one rewritten in place (truncated,
// then written). A changed content is taken only once two reads a moment
// apart agree, so that a file caught empty or half-written is not; a file
// that vanishes, turns empty or cannot be read leaves the last good
// content in place, with the error beside it.
//
// Reads are bounded, and the path is resolved so that a symbolic link or
// file another user could have planted (one owned by another user, in a
// directory that others may write) is refused rather than followed.
package follow

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/atomicfile"
	"github.com/m2mtoken/m2mtoken/internal/clock"
)

// Defaults of Options.
const (
	DefaultLimit  = 1 << 20
	DefaultSettle = 100 * time.Millisecond
)

// maxTries is how many reads a changing file gets before Read gives up
// on it for this time.
const maxTries = 5

// Options say how a File is read. The zero Options are the defaults.
type Options struct {
	// Limit is the most bytes the file may hold (DefaultLimit if 0).
	Limit int64
	// What names the kind of file in the error of one larger than Limit,
	// such as "a client secret file" ("such a file" if empty).
	What string
	// Settle is the wait between the two reads that must agree before a
	// changed content is taken (DefaultSettle if 0).
	Settle time.Duration
	// Check, if set, refuses a content that does not parse (a PEM key cut
	// short): the last good content is kept, and the error is reported.
	Check func(content []byte) error
	// Clock times the settle waits (clock.Real{} if nil).
	Clock clock.Clock
}

// Snapshot is what a File holds: the last good content, and how the
// last read went.
type Snapshot struct {
	// Content is the last good content; nil before the first.
	Content []byte
	// Version counts the good contents taken: 0 before the first, and
	// one more each time the content changes.
	Version uint64
	// Err is the last read's failure, naming the file; nil if it read
	// well. Content is still the last good one.
	Err error
}

// File is a followed file. It is safe for concurrent use. Reads are made
// one at a time, but a reader waits for another's read only as long as
// its context lets it, and Last never waits.
type File struct {
	path string
	opt  Options

	// turn is held across a read: a one-slot channel rather than a
	// mutex, so that a reader waiting for it can give up when its
	// context is done.
	turn chan struct{}
	snap Snapshot // written under turn
	// last is snap as the last read left it, for Last.
	last atomic.Pointer[Snapshot]
}

// New returns a File for path, unread.
func New(path string, opt Options) *File {
	if opt.Limit <= 0 {
		opt.Limit = DefaultLimit
	}
	if opt.What == "" {
		opt.What = "such a file"
	}
	if opt.Settle <= 0 {
		opt.Settle = DefaultSettle
	}
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	f := &File{path: path, opt: opt, turn: make(chan struct{}, 1)}
	f.last.Store(&Snapshot{})
	return f
}

// Path is the path the File was made with.
func (f *File) Path() string { return f.path }

// Last returns what the last Read left, without reading, and without
// waiting for a Read in progress.
func (f *File) Last() Snapshot { return *f.last.Load() }

// Read reads the file now and returns the snapshot. A content equal to
// the current one costs one read; a different one (or a failure) is read
// again after Settle, until two reads agree, at most a few times, and only
// then taken (or reported). A done ctx ends the waits, for another
// reader's read to end as for the settle: the snapshot is then returned
// as it was, with ctx's error. (A read itself cannot be stopped: on a
// mount that hangs, the reader that began it hangs with it, but no other
// waits past its own ctx.)
func (f *File) Read(ctx context.Context) Snapshot {
	select {
	case f.turn <- struct{}{}: // a free turn is taken even with ctx done
	default:
		select {
		case f.turn <- struct{}{}:
		case <-ctx.Done():
			s := f.Last()
			s.Err = ctx.Err()
			return s
		}
	}
	defer func() { <-f.turn }()
	s := f.read(ctx)
	kept := f.snap
	f.last.Store(&kept)
	return s
}

// read is Read's work; the turn is held. f.snap is what it leaves, and it
// returns what its reader is told (f.snap, or with ctx's error).
func (f *File) read(ctx context.Context) Snapshot {
	content, err := f.readOnce()
	switch {
	case err == nil && f.snap.Version > 0 && bytes.Equal(content, f.snap.Content):
		f.snap.Err = nil
		return f.snap
	case err != nil && f.snap.Err != nil && err.Error() == f.snap.Err.Error():
		return f.snap // a failure already reported
	}
	for range maxTries {
		if werr := f.opt.Clock.Sleep(ctx, f.opt.Settle); werr != nil {
			s := f.snap
			s.Err = werr
			return s
		}
		again, err2 := f.readOnce()
		if sameRead(content, err, again, err2) {
			if err != nil {
				f.snap.Err = err
			} else if f.snap.Version == 0 || !bytes.Equal(content, f.snap.Content) {
				f.snap = Snapshot{Content: content, Version: f.snap.Version + 1}
			} else {
				f.snap.Err = nil
			}
			return f.snap
		}
		content, err = again, err2
	}
	f.snap.Err = fmt.Errorf("%s kept changing over %d reads %v apart; the previous content is kept", f.path, maxTries+1, f.opt.Settle)
	return f.snap
}

// sameRead reports whether two reads agree: the same content, or both
// failed with the same error.
func sameRead(a []byte, aerr error, b []byte, berr error) bool {
	if aerr != nil || berr != nil {
		return aerr != nil && berr != nil && aerr.Error() == berr.Error()
	}
	return bytes.Equal(a, b)
}

// errEmpty is the error of an empty file.
var errEmpty = errors.New("is empty")

// readOnce reads the file once: resolved without a planted link, opened
// without following one, a regular file, at most Limit bytes, not empty,
// and passing Check.
func (f *File) readOnce() ([]byte, error) {
	real, fi, err := resolve(f.path)
	if err != nil {
		return nil, err
	}
	h, err := openNoFollow(real)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.path, err)
	}
	defer h.Close()
	opened, err := h.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.path, err)
	}
	if !opened.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file but %s", f.path, kind(opened.Mode()))
	}
	if !os.SameFile(fi, opened) {
		return nil, fmt.Errorf("%s changed while it was opened", f.path)
	}
	b, err := atomicfile.ReadOpened(h, f.path, f.opt.Limit, f.opt.What)
	var tooLarge *atomicfile.TooLargeError
	switch {
	case errors.As(err, &tooLarge):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("%s: %w", f.path, err)
	case len(b) == 0:
		return nil, fmt.Errorf("%s %w", f.path, errEmpty)
	}
	if f.opt.Check != nil {
		if err := f.opt.Check(b); err != nil {
			return nil, fmt.Errorf("%s: %w", f.path, err)
		}
	}
	return b, nil
}

// kind names a file's type, for errors.
func kind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	}
	return fmt.Sprintf("of type %v", m.Type())
}
