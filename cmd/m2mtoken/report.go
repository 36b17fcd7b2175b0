package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// attemptReporter is a slog.Handler for the library's warnings that prints
// one plain line for each failed attempt that will be retried, and for
// other warnings (a cache that fails), so that a user waiting on a retried
// fetch sees why without --verbose. The final error is printed once, when
// the command exits, so the library's last "token request failed" is not.
type attemptReporter struct {
	mu *sync.Mutex
	w  io.Writer
}

func newAttemptReporter(w io.Writer) attemptReporter {
	return attemptReporter{mu: new(sync.Mutex), w: w}
}

func (h attemptReporter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h attemptReporter) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h attemptReporter) WithGroup(string) slog.Handler                { return h }

func (h attemptReporter) Handle(_ context.Context, r slog.Record) error {
	var errText string
	var attempt, maxAttempts int64
	var delay time.Duration
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "error":
			errText = strings.TrimPrefix(fmt.Sprint(a.Value.Any()), "m2mtoken: ")
		case "attempt":
			attempt = a.Value.Int64()
		case "max_attempts":
			maxAttempts = a.Value.Int64()
		case "delay":
			delay = a.Value.Duration()
		}
		return true
	})
	var line string
	switch {
	case r.Message == "token request failed; retrying":
		line = fmt.Sprintf("m2mtoken: attempt %d of %d failed, retrying in %s: %s", attempt, maxAttempts, delay.Round(time.Millisecond), errText)
	case strings.HasPrefix(r.Message, "token request failed"):
		return nil
	case errText != "":
		line = "m2mtoken: warning: " + r.Message + ": " + errText
	default:
		line = "m2mtoken: warning: " + r.Message
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := fmt.Fprintln(h.w, line)
	return err
}
