package m2mtoken

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"time"

	"golang.org/x/oauth2"

	"github.com/m2mtoken/m2mtoken/internal/printable"
)

// TokenError is a failed token request. For an answer from the endpoint it
// wraps an [*oauth2.RetrieveError] (find it with [errors.As]); for a
// network failure, the network error. Its message gives the status and the
// endpoint's error code and description, never the secret or a token, and
// no control character: ESC, CR, LF and the like in what the endpoint said
// are escaped (\x1b, \r, \n), so that an answer cannot rewrite a terminal
// or forge a log line. The wrapped RetrieveError keeps the answer as it
// came (its Body raw): escape it before printing it.
type TokenError struct {
	// URL is the token endpoint.
	URL string
	// StatusCode is the HTTP status, or 0 if no answer came.
	StatusCode int
	// Code and Description are the answer's "error" and
	// "error_description", if it had them, with control characters escaped.
	Code, Description string
	// Temporary reports whether a retry may succeed (the list is in
	// docs/errors.md, "What is retried"). Permanent errors are not
	// retried, and are returned for Config.ErrorCacheTTL without asking
	// again.
	Temporary bool
	// RetryAfter is the delay the endpoint asked for, if it asked.
	RetryAfter time.Duration
	// Attempts is how many requests the fetch made, and Elapsed how long
	// they took from the first to the last, when the fetch made more than
	// one; both are zero for a single attempt.
	Attempts int
	Elapsed  time.Duration
	// Hint, if not empty, says what to check for a well-known answer (a
	// wrong client or secret, an unknown audience, a missing grant, a
	// domain that does not exist). It never holds the secret.
	Hint string

	err    error
	unsent bool // no credential to send: nothing reached URL
}

// Error says what the endpoint answered, how often and for how long it was
// asked, and the hint.
func (e *TokenError) Error() string {
	var b strings.Builder
	switch {
	case e.unsent:
		b.WriteString("m2mtoken: no token request sent to ")
		b.WriteString(e.URL)
		if e.Attempts > 1 {
			fmt.Fprintf(&b, " (looked for a credential %d times over %s)", e.Attempts, roundDuration(e.Elapsed))
		}
	default:
		b.WriteString("m2mtoken: token request to ")
		b.WriteString(e.URL)
		b.WriteString(" failed")
		if e.Attempts > 1 {
			fmt.Fprintf(&b, " %d times over %s", e.Attempts, roundDuration(e.Elapsed))
		}
	}
	b.WriteString(": ")
	switch {
	case e.StatusCode == 0 && errors.Is(e.err, syscall.ECONNREFUSED):
		// The URL already names the host and port.
		b.WriteString("connection refused")
	case e.StatusCode == 0:
		b.WriteString(e.err.Error())
	default:
		fmt.Fprintf(&b, "%d %s", e.StatusCode, http.StatusText(e.StatusCode))
		if e.Code != "" {
			fmt.Fprintf(&b, ": %s", e.Code)
		}
		var re *oauth2.RetrieveError
		switch {
		case e.Description != "":
			fmt.Fprintf(&b, ": %s", e.Description)
		case e.err != nil && !errors.As(e.err, &re):
			fmt.Fprintf(&b, ": %v", e.err)
		}
	}
	if e.Hint != "" {
		b.WriteString(" (")
		b.WriteString(e.Hint)
		b.WriteString(")")
	}
	// A network error's text may quote the peer too (a proxy's status
	// line, a certificate's names).
	return printable.Line(b.String(), 0)
}

// roundDuration rounds d for a message: 16.2s, 850ms.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond)
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}

// Unwrap returns the underlying *oauth2.RetrieveError or network error.
func (e *TokenError) Unwrap() error { return e.err }

// WaitError is returned to a caller whose context ended while it waited
// for a token: it says what the token endpoint last answered, if anything
// went wrong. errors.Is finds the context's error; errors.As finds the
// endpoint's *TokenError.
type WaitError struct {
	Ctx  error // context.Canceled or context.DeadlineExceeded
	Last error // the last failed attempt's *TokenError, or nil
	// Lease, if not nil, says that the fetch this caller waited for was
	// itself waiting for another instance, which held the fleet's fetch
	// lease (Config.Cache is a [Leaser]), and what was known of it.
	Lease *LeaseInfo
	// Attempt, if not 0, says that the fetch this caller waited for had
	// sent its Attempt'th token request, which had waited AttemptElapsed
	// for the endpoint's answer: the endpoint is slow, not failing (yet).
	Attempt        int
	AttemptElapsed time.Duration
}

// Error says why the caller stopped waiting and what was known then: the
// lease it waited on, the last failed attempt, the attempt in flight.
func (e *WaitError) Error() string {
	msg := "m2mtoken: no token yet: " + e.Ctx.Error()
	if e.Lease != nil {
		msg += "; another instance holds the fleet's fetch lease (" + e.Lease.String() + ")"
	}
	if e.Last != nil {
		msg += "; last attempt: " + e.Last.Error()
	}
	if e.Attempt > 0 {
		msg += fmt.Sprintf("; attempt %d in flight for %v", e.Attempt, roundDuration(e.AttemptElapsed))
	}
	return msg
}

// Unwrap returns the context's error and the last attempt's.
func (e *WaitError) Unwrap() []error {
	if e.Last == nil {
		return []error{e.Ctx}
	}
	return []error{e.Ctx, e.Last}
}

// ErrClosed is returned by a source after [TokenSource.Close], or after its
// [Pool] dropped it: closing drops the token, so the callers waiting for
// one and every later call get ErrClosed.
var ErrClosed = errors.New("m2mtoken: token source is closed")

// ConfigError is a configuration that [New] or [ConfigFromEnv] refuses. Its
// message names each field at fault as Config.Field, or, from
// ConfigFromEnv, as the environment variable that sets it; a program that
// sets fields from its own flags names them its way with
// [Config.FieldNames].
type ConfigError struct {
	// Fields are the Config fields at fault, such as "ClientID".
	Fields []string

	format string // fmt format with {Field} placeholders
	args   []any
	name   func(field string) string
	note   string // appended: variables set with a typo in their name
}

// withNames makes a *ConfigError name fields with names (Config.FieldNames),
// if not nil.
func withNames(err error, names func(field string) string) error {
	ce, ok := err.(*ConfigError)
	if !ok || names == nil {
		return err
	}
	c := *ce
	c.name = names
	return &c
}

// configErr returns a *ConfigError. format names fields as {Field}, or as
// {Field|Other}: the first of them that Config.FieldNames names as a flag,
// variable or file field, else the first.
func configErr(format string, args ...any) *ConfigError {
	e := &ConfigError{format: format, args: args}
	rest := format
	for {
		_, after, ok := strings.Cut(rest, "{")
		if !ok {
			break
		}
		field, after, ok := strings.Cut(after, "}")
		if !ok {
			break
		}
		e.Fields = append(e.Fields, strings.Split(field, "|")...)
		rest = after
	}
	return e
}

// Error says what to fix, naming each field as Config.FieldNames does
// (Config.Field if it is nil).
func (e *ConfigError) Error() string {
	f := e.format
	for {
		before, after, ok := strings.Cut(f, "{")
		if !ok {
			break
		}
		field, rest, ok := strings.Cut(after, "}")
		if !ok {
			break
		}
		alts := strings.Split(field, "|")
		n, _ := fieldName(e.name, alts[0])
		for _, alt := range alts {
			// The first the user sets other than in code, if any.
			if an, ok := fieldName(e.name, alt); ok && an != "Config."+alt {
				n = an
				break
			}
		}
		f = before + strings.ReplaceAll(n, "%", "%%") + rest
	}
	msg := "m2mtoken: " + fmt.Sprintf(f, e.args...)
	if e.note != "" {
		msg += "; " + e.note
	}
	return msg
}
