package m2mtoken

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// TokenError is a failed token request. For an answer from the endpoint it
// wraps an [*oauth2.RetrieveError] (find it with [errors.As]); for a
// network failure, the network error. Its message gives the status and the
// endpoint's error code and description, never the secret or a token.
type TokenError struct {
	// URL is the token endpoint.
	URL string
	// StatusCode is the HTTP status, or 0 if no answer came.
	StatusCode int
	// Code and Description are the answer's "error" and
	// "error_description", if it had them.
	Code, Description string
	// Temporary reports whether a retry may succeed (network errors, 408,
	// 429, 5xx, a malformed 2xx answer).
	Temporary bool
	// RetryAfter is the delay the endpoint asked for, if it asked.
	RetryAfter time.Duration

	err error
}

func (e *TokenError) Error() string {
	var b strings.Builder
	b.WriteString("m2mtoken: token request to ")
	b.WriteString(e.URL)
	b.WriteString(" failed: ")
	switch {
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
	return b.String()
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
}

func (e *WaitError) Error() string {
	msg := "m2mtoken: no token yet: " + e.Ctx.Error()
	if e.Lease != nil {
		msg += "; another instance holds the fleet's fetch lease (" + e.Lease.String() + ")"
	}
	if e.Last != nil {
		msg += "; last attempt: " + e.Last.Error()
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

// ErrClosed is returned by a source after [TokenSource.Close] when it has
// no usable token left.
var ErrClosed = errors.New("m2mtoken: token source is closed")
