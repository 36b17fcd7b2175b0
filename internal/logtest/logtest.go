// Package logtest reads a JSON log (log/slog's JSONHandler, one record a
// line) as it is written, for tests that wait for what a program logs:
// the agent in-process, or a process's stderr. A plain-text log can be
// waited on too ([Log.WaitText]). Tests only.
package logtest

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
)

// Log is a JSON log, line by line. It is an io.Writer; writes may split
// or join lines.
type Log struct {
	mu      sync.Mutex
	raw     bytes.Buffer
	lines   []map[string]any
	part    []byte        // a line not yet ended
	changed chan struct{} // closed at the next line
}

// New returns an empty Log.
func New() *Log { return &Log{changed: make(chan struct{})} }

// Write adds p to the log.
func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.raw.Write(p)
	l.part = append(l.part, p...)
	for {
		i := bytes.IndexByte(l.part, '\n')
		if i < 0 {
			break
		}
		var m map[string]any
		if json.Unmarshal(l.part[:i], &m) == nil {
			l.lines = append(l.lines, m)
		}
		l.part = l.part[i+1:]
	}
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

// Count returns how many records have the message msg and the attributes
// given as key, value pairs, and a channel closed at the next write.
func (l *Log) Count(msg string, attrs ...any) (int, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.lines {
		if match(m, msg, attrs) {
			n++
		}
	}
	return n, l.changed
}

// Find returns the first record with msg and attrs, or nil.
func (l *Log) Find(msg string, attrs ...any) map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.lines {
		if match(m, msg, attrs) {
			return m
		}
	}
	return nil
}

func match(m map[string]any, msg string, attrs []any) bool {
	if m["msg"] != msg {
		return false
	}
	for i := 0; i+1 < len(attrs); i += 2 {
		if k, _ := attrs[i].(string); m[k] != attrs[i+1] {
			return false
		}
	}
	return true
}

// Records returns the records so far.
func (l *Log) Records() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]map[string]any(nil), l.lines...)
}

// String returns the log as written.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.raw.String()
}

// Wait waits for the n-th record with msg and attrs, and returns it. It
// fails t if the program stops first (stopped is closed) or after
// timeout.
func (l *Log) Wait(t testing.TB, stopped <-chan struct{}, timeout time.Duration, n int, msg string, attrs ...any) map[string]any {
	t.Helper()
	deadline := time.After(timeout)
	for {
		got, changed := l.Count(msg, attrs...)
		if got >= n {
			return l.nth(n, msg, attrs)
		}
		select {
		case <-changed:
		case <-stopped:
			if got, _ := l.Count(msg, attrs...); got >= n {
				return l.nth(n, msg, attrs)
			}
			t.Fatalf("the program stopped before logging %q (%d of %d):\n%s", msg, got, n, l)
		case <-deadline:
			t.Fatalf("%d of %d %q in the log after %v:\n%s", got, n, msg, timeout, l)
		}
	}
}

// WaitText waits until the log, as written, holds text: for a program
// that logs plain lines. It fails t after timeout.
func (l *Log) WaitText(t testing.TB, timeout time.Duration, text string) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		l.mu.Lock()
		found, changed := strings.Contains(l.raw.String(), text), l.changed
		l.mu.Unlock()
		if found {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("no %q in the log after %v:\n%s", text, timeout, l)
		}
	}
}

func (l *Log) nth(n int, msg string, attrs []any) map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.lines {
		if match(m, msg, attrs) {
			if n--; n == 0 {
				return m
			}
		}
	}
	return nil
}
