package m2mtoken

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// Entry is a token as a [Cache] stores it. It keeps the token's original
// issue time, so that every holder of a shared entry computes the same
// refresh window from it.
//
// Entry holds an access token: its String, Format and LogValue methods
// print only a fingerprint.
type Entry struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	// IssuedAt is when the token was requested; Expiry is when it expires.
	IssuedAt time.Time `json:"issued_at"`
	Expiry   time.Time `json:"expiry"`
	// Latency is how long the token endpoint took to answer the request
	// that issued the token (0 if not known). A slow endpoint gets its
	// refresh started earlier: every holder computes the same window.
	Latency time.Duration `json:"latency,omitempty"`
	// Extra holds the token response's other fields (scope among them).
	Extra map[string]any `json:"extra,omitempty"`
}

// Token returns the entry as an [oauth2.Token], with Extra available
// through [oauth2.Token.Extra].
func (e *Entry) Token() *oauth2.Token {
	t := &oauth2.Token{AccessToken: e.AccessToken, TokenType: e.TokenType, Expiry: e.Expiry}
	if e.Extra != nil {
		return t.WithExtra(e.Extra)
	}
	return t
}

// Valid reports whether e has an access token and an expiry after issue.
// Decoders of stored entries use it to tell a usable entry from a corrupt one.
func (e *Entry) Valid() bool {
	return e != nil && e.AccessToken != "" && !e.IssuedAt.IsZero() && e.Expiry.After(e.IssuedAt)
}

// storedEntry is the stored form of an Entry; V lets later versions
// change it.
type storedEntry struct {
	V     int    `json:"v"`
	Entry *Entry `json:"entry"`
}

// maxStoredEntry bounds what UnmarshalBinary reads.
const maxStoredEntry = 1 << 20

// MarshalBinary encodes e for a cache that stores bytes (a file, Redis):
// versioned JSON with the token, its type, issue time, expiry and extra
// fields. It holds the access token, so store it as a credential.
func (e *Entry) MarshalBinary() ([]byte, error) {
	return json.Marshal(storedEntry{V: 1, Entry: e})
}

// UnmarshalBinary decodes what [Entry.MarshalBinary] wrote. It refuses
// more than 1 MiB, another version, and an entry that is not [Entry.Valid],
// so that a cache never hands back an empty token or one without expiry.
func (e *Entry) UnmarshalBinary(b []byte) error {
	if len(b) > maxStoredEntry {
		return errors.New("over 1 MiB")
	}
	var se storedEntry
	if err := json.Unmarshal(b, &se); err != nil {
		return errors.New("not JSON")
	}
	if se.V != 1 {
		return fmt.Errorf("unknown version %d", se.V)
	}
	if !se.Entry.Valid() {
		return errors.New("no usable token")
	}
	*e = *se.Entry
	return nil
}

// String describes the entry without its token.
func (e *Entry) String() string {
	if e == nil {
		return "<nil>"
	}
	return fmt.Sprintf("m2mtoken.Entry{token:%s expiry:%s}", Fingerprint(e.AccessToken), e.Expiry.UTC().Format(time.RFC3339))
}

// Format makes every fmt verb print String, so that no verb prints the token.
func (e *Entry) Format(f fmt.State, _ rune) { fmt.Fprint(f, e.String()) }

// LogValue logs the entry without its token.
func (e *Entry) LogValue() slog.Value {
	if e == nil {
		return slog.StringValue("<nil>")
	}
	return slog.GroupValue(slog.String("token", Fingerprint(e.AccessToken)), slog.Time("expiry", e.Expiry))
}

// Cache stores tokens under a key, so that a token outlives one
// [TokenSource]: across sources in one process ([NewMemoryCache]), across
// runs of a program ([NewFileCache]) or across a fleet (the rediscache
// module).
//
// Keys come from [TokenSource] and identify the token URL, client,
// audience, scopes, organization, endpoint parameters, authentication
// method and credential (through a slow hash of the secret, or the public
// key), so that a token goes only to a source holding the credential it
// was issued for. They reveal none of these. A Cache never sees the client
// secret.
//
// A Cache must be safe for concurrent use. Its errors are logged and
// otherwise ignored: a cache that fails makes the source fetch from the
// token endpoint, never fails a caller. A cache that stores bytes can use
// [Entry.MarshalBinary] and [Entry.UnmarshalBinary].
type Cache interface {
	// Get returns the entry stored under key, or nil and no error if there
	// is none.
	Get(ctx context.Context, key string) (*Entry, error)
	// Set stores e under key until e.Expiry.
	Set(ctx context.Context, key string, e *Entry) error
}

// Leaser is implemented by caches shared between processes that can make
// one of them the only one to fetch a token at a time. When a source finds
// no fresh token in the cache it calls TryLease; if ok, it fetches, stores
// the token and calls release. If not, another holder is fetching: the
// source waits, polling Get, and tries the lease again, so that if the
// holder dies its lease expires after ttl and someone else fetches. As such
// a lease cannot tell a dead holder from a slow one, its ttl
// (Config.LeaseTTL) must outlast a fetch, and a waiter whose own token is
// about to become unusable stops waiting and fetches itself.
//
// An error from TryLease is logged and the source fetches on its own. An
// error does not say that the lease was not taken (a request that timed
// out may still have taken it): a Leaser releases, or lets expire, a lease
// whose outcome it could not learn.
type Leaser interface {
	TryLease(ctx context.Context, key string, ttl time.Duration) (release func(), ok bool, err error)
}

// LeaseKeeper is a [Leaser] whose leases are kept alive by their holder
// while it fetches, so that a short Config.LeaseTTL tells a dead holder
// from a slow one: a holder that dies stops keeping its lease, which lapses
// within the TTL, and another instance takes it over; a holder that is
// alive, however long its fetch and its retries take, keeps it, and the
// other instances wait for its token instead of fetching too (one instance
// retries for the fleet during an outage).
//
// When Config.Cache is a LeaseKeeper, a source uses AcquireLease instead
// of TryLease; while it fetches it calls [Lease.Keep] every third of the
// TTL, with what it knows (the last failed attempt), and [Lease.Release]
// when done. Waiting instances call LeaseInfo to tell their callers why
// they wait (see [WaitError]). The rediscache module's Cache and
// [FileCache] (on Unix) are LeaseKeepers.
type LeaseKeeper interface {
	Leaser
	// AcquireLease takes the fetch lease for key for ttl, without waiting.
	// It reports false if another holder has it. Each call must use a
	// value of its own, so that only this lease's holder can keep or
	// release it.
	AcquireLease(ctx context.Context, key string, ttl time.Duration) (l Lease, ok bool, err error)
	// LeaseInfo reports on the lease for key held by someone: nil and no
	// error if none is held.
	LeaseInfo(ctx context.Context, key string) (*LeaseInfo, error)
}

// Lease is a fetch lease held through a [LeaseKeeper].
type Lease interface {
	// Keep extends the lease to ttl from now if this holder still holds
	// it, and records status for waiters to read in [LeaseInfo] (a short
	// line with nothing secret: the last failed attempt, or ""). It
	// reports false if the lease was lost (it lapsed and another holder
	// took it).
	Keep(ctx context.Context, ttl time.Duration, status string) (held bool, err error)
	// Release gives the lease up if this holder still holds it.
	Release(ctx context.Context) error
}

// LeaseInfo is what a waiter knows of another holder's fetch lease.
type LeaseInfo struct {
	// Age is how long the lease has been held, by the holder's clock; 0 if
	// not known.
	Age time.Duration
	// Remaining is how long the lease lasts unless its holder keeps it
	// alive; 0 if it lasts as long as its holder lives (a file lock).
	Remaining time.Duration
	// Status is what the holder last recorded: its last failed attempt,
	// or "" if it has reported none.
	Status string
}

// String describes the lease in a few words, for an error message.
func (li *LeaseInfo) String() string {
	if li == nil {
		return "unknown"
	}
	var b strings.Builder
	if li.Age > 0 {
		b.WriteString("held for " + li.Age.Round(time.Millisecond).String())
	}
	if li.Remaining > 0 {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		b.WriteString(li.Remaining.Round(time.Millisecond).String() + " left unless kept alive")
	}
	if li.Status != "" {
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString("its holder's last attempt: " + li.Status)
	}
	if b.Len() == 0 {
		return "nothing more known"
	}
	return b.String()
}

// MemoryCache is a [Cache] in process memory. A source with no
// Config.Cache keeps its token in memory on its own; share a MemoryCache
// between sources to let them share tokens for the same key.
type MemoryCache struct {
	mu sync.Mutex
	m  map[string]*Entry
}

// NewMemoryCache returns an empty MemoryCache.
func NewMemoryCache() *MemoryCache { return &MemoryCache{m: make(map[string]*Entry)} }

// Get returns the entry under key, if any. The source decides whether it
// is still fresh.
func (c *MemoryCache) Get(_ context.Context, key string) (*Entry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[key], nil
}

// Set stores e under key, unless the entry there already expires later.
func (c *MemoryCache) Set(_ context.Context, key string, e *Entry) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.m[key]; old != nil && old.Expiry.After(e.Expiry) {
		return nil
	}
	c.m[key] = e
	return nil
}

// Fingerprint returns a short, non-reversible name for a secret or token
// that is safe to log: "sha256:" and the first 8 hex digits of its hash.
func Fingerprint(s string) string {
	if s == "" {
		return "none"
	}
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:4])
}

// cacheKey derives the cache key from everything that identifies a token
// and nothing secret. Scopes are sorted (their order does not change the
// token); endpoint parameters are encoded sorted by url.Values.Encode.
func cacheKey(tokenURL, clientID, audience string, scopes []string, org string, params url.Values, method AuthMethod) string {
	sorted := slices.Clone(scopes)
	slices.Sort(sorted)
	h := sha256.New()
	for _, part := range []string{"m2mtoken/v1", tokenURL, clientID, audience, strings.Join(sorted, " "), org, params.Encode(), method.String()} {
		fmt.Fprintf(h, "%d:%s;", len(part), part)
	}
	return "m2mtoken-" + hex.EncodeToString(h.Sum(nil)[:16])
}
