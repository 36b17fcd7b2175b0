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

// attemptReporter is a slog.Handler for the library's log that prints one
// plain line for each failed attempt that will be retried (a debug line
// of the library's), and one for each warning (a cache that fails), so
// that a user waiting on a retried fetch sees why without --verbose. The final error is printed once, when
// the command exits, so the library's last "token request failed" is not.
//
// A refused connection (a server not started yet, or a mistyped port) is
// said once, with how long the fetch goes on retrying, not once per
// attempt.
type attemptReporter struct {
	mu      *sync.Mutex
	w       io.Writer
	refused *bool // the refused connection was reported; under mu
}

func newAttemptReporter(w io.Writer) attemptReporter {
	return attemptReporter{mu: new(sync.Mutex), w: w, refused: new(bool)}
}

func (h attemptReporter) Enabled(context.Context, slog.Level) bool { return true }
func (h attemptReporter) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h attemptReporter) WithGroup(string) slog.Handler            { return h }

func (h attemptReporter) Handle(_ context.Context, r slog.Record) error {
	var errText string
	var attempt, maxAttempts int64
	var delay, window time.Duration
	var te *m2mtoken.TokenError
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "error":
			errText = strings.TrimPrefix(fmt.Sprint(a.Value.Any()), "m2mtoken: ")
			if err, ok := a.Value.Any().(error); ok {
				errors.As(err, &te)
			}
		case "retrying_for_at_most":
			window = a.Value.Duration()
		case "attempt":
			attempt = a.Value.Int64()
		case "max_attempts":
			maxAttempts = a.Value.Int64()
		case "delay":
			delay = a.Value.Duration()
		}
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	var line string
	switch {
	case r.Level < slog.LevelWarn && r.Message != "token request failed; retrying":
		return nil
	case r.Message == "token request failed; retrying" && te != nil && errors.Is(te, syscall.ECONNREFUSED):
		if *h.refused {
			return nil
		}
		*h.refused = true
		where := te.URL
		if u, err := url.Parse(te.URL); err == nil {
			where = u.Host
		}
		line = fmt.Sprintf("m2mtoken: nothing is listening at %s yet; retrying for up to %s; Ctrl-C to stop", where, window.Round(time.Second))
	case r.Message == "token request failed; retrying":
		line = fmt.Sprintf("m2mtoken: attempt %d of %d failed, retrying in %s: %s", attempt, maxAttempts, delay.Round(time.Millisecond), errText)
	case strings.HasPrefix(r.Message, "token request failed"):
		return nil
	case errText != "":
		line = "m2mtoken: warning: " + r.Message + ": " + errText
	default:
		line = "m2mtoken: warning: " + r.Message
	}
	_, err := fmt.Fprintln(h.w, line)
	return err
}
