package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/m2mtoken/m2mtoken"
)

// attemptReporter prints, from the source's Observer, one plain line for
// each failed attempt that will be retried, so that a user waiting on a
// retried fetch sees why without --verbose. The final error is printed
// once, when the command exits.
//
// A refused connection (a server not started yet, or a mistyped port) is
// said once, with how long the fetch goes on retrying, not once per
// attempt.
type attemptReporter struct {
	w       io.Writer
	mu      sync.Mutex
	refused bool // the refused connection was reported; under mu
}

// observer returns the Observer that reports to r.
func (r *attemptReporter) observer() *m2mtoken.Observer {
	return &m2mtoken.Observer{AttemptDone: r.attemptDone}
}

func (r *attemptReporter) attemptDone(_ context.Context, info m2mtoken.AttemptDoneInfo) {
	if !info.Retry {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var te *m2mtoken.TokenError
	if errors.As(info.Err, &te) && errors.Is(te, syscall.ECONNREFUSED) {
		if r.refused {
			return
		}
		r.refused = true
		where := te.URL
		if u, err := url.Parse(te.URL); err == nil {
			where = u.Host
		}
		fmt.Fprintf(r.w, "m2mtoken: nothing is listening at %s yet; retrying for up to %s; Ctrl-C to stop\n", where, info.RetryWindow.Round(time.Second))
		return
	}
	fmt.Fprintf(r.w, "m2mtoken: attempt %d of %d failed, retrying in %s: %s\n",
		info.Attempt, info.MaxAttempts, info.RetryDelay.Round(time.Millisecond), strings.TrimPrefix(fmt.Sprint(info.Err), "m2mtoken: "))
}

// warningPrinter is a slog.Handler for the library's log that prints one
// plain line for each warning (a cache that fails, a quota used up), with
// the errors it carries. A warning about a failed token request is not
// printed: the retries are said by attemptReporter, and the fetch's error
// when the command exits.
type warningPrinter struct {
	mu *sync.Mutex
	w  io.Writer
}

func newWarningPrinter(w io.Writer) warningPrinter { return warningPrinter{mu: new(sync.Mutex), w: w} }

func (h warningPrinter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h warningPrinter) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h warningPrinter) WithGroup(string) slog.Handler                { return h }

func (h warningPrinter) Handle(_ context.Context, r slog.Record) error {
	line := "m2mtoken: warning: " + r.Message
	tokenRequest := false
	r.Attrs(func(a slog.Attr) bool {
		if err, ok := a.Value.Any().(error); ok {
			tokenRequest = tokenRequest || errors.As(err, new(*m2mtoken.TokenError))
			line += ": " + strings.TrimPrefix(err.Error(), "m2mtoken: ")
		}
		return true
	})
	if tokenRequest {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := fmt.Fprintln(h.w, line)
	return err
}
