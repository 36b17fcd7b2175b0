// The files serve follows (the client's secret, a trusted platform's
// keys), and what it logs about them and about its servers' connections.

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/internal/follow"
	"github.com/m2mtoken/m2mtoken/internal/printable"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// followEvery is how often serve reads the files it follows.
const followEvery = time.Second

// followed is a file serve follows: its last content taken, and what to do
// with a new one.
type followed struct {
	flag    string
	file    *follow.File
	content []byte
	version uint64
	failing string // the failure last logged, "" if none
	apply   func(content []byte)
}

// startFollowing reads a followed file for the first time: it must read
// well, or serve does not start.
func startFollowing(flag, path string, check func([]byte) error) (*followed, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	f := &followed{flag: flag, file: follow.New(abs, follow.Options{Check: check})}
	snap := f.file.Read(context.Background())
	if snap.Version == 0 {
		return nil, fmt.Errorf("%s: %w", flag, snap.Err)
	}
	f.content, f.version = snap.Content, snap.Version
	return f, nil
}

// poll reads the file again: a new content is applied; a failure is
// logged when it begins and when it ends, not at every read.
func (f *followed) poll(ctx context.Context, logs *serveLog) {
	snap := f.file.Read(ctx)
	if ctx.Err() != nil {
		return
	}
	failing := ""
	if snap.Err != nil {
		failing = snap.Err.Error()
	}
	switch {
	case failing == f.failing:
	case failing != "":
		logs.printf("warning: %s %s; what it held before is still used", f.flag, failing)
	default:
		logs.printf("%s %s reads well again", f.flag, f.file.Path())
	}
	f.failing = failing
	if snap.Version != f.version {
		f.content, f.version = snap.Content, snap.Version
		f.apply(snap.Content)
	}
}

// serveLog writes serve's lines to stderr, one at a time.
type serveLog struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *serveLog) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "m2mtoken serve: "+format+"\n", args...)
}

// secretOf is the secret a secret file holds: its content without the
// final line break, as the library and the command read such a file.
func secretOf(content []byte) string { return strings.TrimRight(string(content), "\r\n") }

func checkSecretFile(content []byte) error {
	if secretOf(content) == "" {
		return errors.New("holds no secret, only line breaks")
	}
	return nil
}

// rotationWords says what a change of the secret file does, for the
// startup lines.
func rotationWords(grace, delay time.Duration) string {
	accepted, refused := "the new secret works at once", "the old one stops"
	if delay > 0 {
		accepted = fmt.Sprintf("the new secret works %v later (--rotation-delay)", delay)
	}
	if grace > 0 {
		refused = fmt.Sprintf("the old one works %v more (--rotation-grace)", grace)
	}
	return accepted + " and " + refused
}

// rotatedWords says what a rotation did, by fingerprints, for the log.
func rotatedWords(old, next string, grace, delay time.Duration) string {
	accepted, refused := "accepted from now", "refused from now"
	if delay > 0 {
		accepted = fmt.Sprintf("accepted in %v", delay)
	}
	if grace > 0 {
		refused = fmt.Sprintf("still accepted for %v", grace)
	}
	return fmt.Sprintf("the new secret %s is %s; the previous one, %s, is %s", m2mtoken.Fingerprint(next), accepted, m2mtoken.Fingerprint(old), refused)
}

// describeKeys names keys for serve's lines: how many, and their kids.
func describeKeys(keys []m2mtest.Key) string {
	var ids []string
	for _, k := range keys {
		if k.ID != "" {
			ids = append(ids, k.ID)
		}
	}
	n := fmt.Sprintf("%d key", len(keys))
	if len(keys) != 1 {
		n += "s"
	}
	if len(ids) > 0 {
		n += " (kid " + strings.Join(ids, ", ") + ")"
	}
	return n
}

// serverLog is the ErrorLog of serve's servers: net/http's lines through
// serve's log, with a failed TLS handshake said from serve's side. A
// client that does not trust serve's CA ends the handshake with an alert
// net/http logs as "remote error: tls: bad certificate", which reads as
// if the client's certificate were bad.
func (l *serveLog) serverLog(caFile string) *log.Logger {
	return log.New(serverLogWriter{l, caFile}, "", 0)
}

type serverLogWriter struct {
	l      *serveLog
	caFile string
}

func (w serverLogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSuffix(string(p), "\n")
	if from, alert, ok := strings.Cut(strings.TrimPrefix(line, "http: TLS handshake error from "), ": remote error: tls: "); ok && from != line {
		switch alert {
		case "bad certificate", "unknown certificate authority", "unknown certificate", "certificate unknown":
			w.l.printf("a client at %s refused serve's certificate (tls: %s): it must trust serve's CA, %s (M2MTOKEN_CA_FILE in the exports)", from, alert, w.caFile)
			return len(p), nil
		}
	}
	w.l.printf("%s", printable.Line(line, 0))
	return len(p), nil
}
