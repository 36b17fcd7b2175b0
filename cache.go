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
// audience, scopes, organization, endpoint parameters and authentication
// method; they contain no secret. A Cache never sees the client secret.
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
// holder dies its lease expires after ttl and someone else fetches.
//
// An error from TryLease is logged and the source fetches on its own.
type Leaser interface {
	TryLease(ctx context.Context, key string, ttl time.Duration) (release func(), ok bool, err error)
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
