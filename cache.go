package m2mtoken

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/m2mtoken/m2mtoken/internal/wire"
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
	if !wire.IsHeaderSafeToken(se.Entry.AccessToken) {
		// As the token parser refuses it: it could add headers.
		return errors.New("the access token has characters a header cannot carry")
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
// module). This comment and those of [Leaser], [Lease] and [LeaseInfo]
// are all a store for another database has to follow.
//
// Get and Set make a cache: every process that finds no fresh token in it
// fetches its own (one request per process, however many of its callers
// wait). Add [Leaser] to make one process of a fleet fetch for all. A
// Cache must be safe for concurrent use. A cache that stores bytes uses
// [Entry.MarshalBinary] and [Entry.UnmarshalBinary], which refuses
// anything but a usable entry; the file and Redis caches do.
//
// Keys are [TokenSource.CacheKey]'s, whose doc says what they identify:
// letters, digits and dashes, safe as a file name or a Redis key, and
// revealing nothing. A Cache never sees the client secret.
//
// Errors are logged, reported to Observer.CacheError and otherwise
// ignored: a cache that fails costs token requests, never a caller's
// call. A failing Get is a miss, warned about once per outage; a fetch
// that waits on another holder's lease while Get fails stops waiting, as
// the holder's token could not reach it. A failing Set loses the token
// for the other holders. The source calls the cache while callers wait:
// bound every network call (rediscache gives each 250 ms) and honour ctx.
type Cache interface {
	// Get returns the entry stored under key, or nil and no error if there
	// is none. It returns what is stored, stale or not: the source decides
	// whether a token is still usable.
	Get(ctx context.Context, key string) (*Entry, error)
	// Set stores e under key until e.Expiry. It may keep an entry already
	// there that expires later (MemoryCache does).
	Set(ctx context.Context, key string, e *Entry) error
}

// Leaser is implemented by a [Cache] shared between processes that can
// make one of them the only one to fetch a token at a time: a fetch lease
// per key, kept alive by its holder while it fetches, so that a short
// Config.LeaseTTL (750 ms by default) tells a dead holder from a slow one.
// The rediscache module's Cache (SET NX PX) and [FileCache] (flock, on
// Unix) are Leasers.
//
// A source that finds no fresh token in the cache calls Lease. If it gets
// the lease, it reads the cache once more (the holder before it may have
// just stored a token), fetches, calls [Lease.Keep] every third of the ttl
// until the fetch ends, stores the token with Set, and calls
// [Lease.Release] once. If another holder has the lease, the source polls
// Get for that holder's token (from 50 ms, doubling up to a fifth of the
// ttl, and just as the lease would lapse, from [LeaseInfo.Remaining]),
// asking Lease again each time, and tells its callers why they wait from
// LeaseInfo (see [WaitError]); an error from LeaseInfo only leaves them
// knowing less. It waits as long as the lease is kept, up to
// Config.FetchTimeout: a live holder retries for the fleet however long
// the token endpoint fails. A holder that dies stops keeping its lease,
// which lapses within the ttl, and the next waiter to ask takes it over.
// So a lease must lapse when it is not kept, or, like a file lock, end
// with its holder.
//
// A lease is read from the cache, so whoever can write to the cache can
// plant one. A source does not wait on a lease that no live holder could
// have left, as [LeaseInfo] describes it: one it marks Invalid, or one set
// to last, or held for, longer than twice Config.FetchTimeout plus
// Config.LeaseTTL (a holder keeps its lease only while it fetches, and a
// fetch ends within FetchTimeout). It fetches without the lease, and logs a
// warning: a planted lease costs token requests (each source fetches its
// own while it is there), not the sources' tokens.
//
// An error from Lease is logged: a source with no usable token fetches
// without the lease at once; a refresh (its token still usable) asks
// again every 250 to 500 ms, and fetches without the lease once half of
// its token's stale window has passed, so that a short fault of the store
// does not make every instance fetch. An error does not say that the
// lease was not taken (a request that timed out may have been applied): a
// Leaser releases, or lets lapse, a lease whose outcome it did not learn.
type Leaser interface {
	// Lease takes the fetch lease for key for ttl, without waiting. It
	// reports false and no error if another holder has it. Each call must
	// take the lease with a value of its own, so that only the holder of
	// this lease can keep or release it, never the next holder's after
	// this one lapsed.
	Lease(ctx context.Context, key string, ttl time.Duration) (l Lease, ok bool, err error)
	// LeaseInfo reports on the lease for key held by someone, for a waiter
	// to tell its callers: nil and no error if none is held.
	LeaseInfo(ctx context.Context, key string) (*LeaseInfo, error)
}

// Lease is a fetch lease taken through a [Leaser]. The source calls Keep
// and Release from one goroutine at a time, Release once.
type Lease interface {
	// Keep extends the lease to ttl from now if this holder still holds
	// it, and records status for waiters to read in [LeaseInfo] (a short
	// line with nothing secret: the fetch's last failed attempt, or "";
	// rediscache and FileCache keep 300 bytes of it). It reports false if
	// the lease was lost (it lapsed and another holder took it): the source
	// stops keeping it and finishes its fetch. An error is logged, and the
	// next Keep comes a third of the ttl later; ctx ends by then.
	Keep(ctx context.Context, ttl time.Duration, status string) (held bool, err error)
	// Release gives the lease up if this holder still holds it, when the
	// fetch ends, whether it got a token or not. An error is logged: the
	// lease lapses on its own.
	Release(ctx context.Context) error
}

// LeaseInfo is what a waiter knows of another holder's fetch lease. It is
// read from the cache, so whoever can write to the cache can plant it: a
// source does not wait on one that no live holder could have left (see
// [Leaser]), and shows Status only quoted and escaped, as the cache's word.
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
	// Invalid, if not empty, says why the lease cannot be one that a
	// holder took through this cache: it never lapses (it has no expiry),
	// or its value is not one a holder writes (or, in a cache that seals
	// its values, does not open). A source does not wait on such a lease.
	Invalid string
}

// maxLeaseStatus bounds the holder's status that a LeaseInfo shows.
const maxLeaseStatus = 300

// String describes the lease in a few words, for an error message. The
// holder's status is quoted, escaped and cut to 300 bytes, and said to be
// what the cache holds: whoever can write to the cache chose it.
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
		b.WriteString("the cache gives its holder's last attempt as " + strconv.Quote(truncate(li.Status, maxLeaseStatus)))
	}
	if b.Len() == 0 {
		return "nothing more known"
	}
	return b.String()
}

// MemoryCache is a [Cache] in process memory. A source with no
// Config.Cache keeps its token in memory on its own; share a MemoryCache
// between sources to let them share tokens for the same key.
//
// It holds at most MaxEntries tokens, so that requests that keep changing
// (a pool whose organizations come from its callers) cannot grow it
// without end: when it is full, a new token makes room by dropping the
// expired ones, and if none has expired, the sixteenth that expire
// soonest. A dropped token costs a token request for the next source that
// would have taken it (each source keeps its own token in memory anyway).
// The zero value is ready to use.
type MemoryCache struct {
	// MaxEntries bounds the tokens held; zero means 10,000 (a Pool's
	// default MaxTokens). Set it before the first use.
	MaxEntries int

	mu sync.Mutex
	m  map[string]*Entry
}

// defaultMemoryCacheEntries is MemoryCache.MaxEntries' default.
const defaultMemoryCacheEntries = defaultMaxTokens

// NewMemoryCache returns an empty MemoryCache that holds up to 10,000
// tokens.
func NewMemoryCache() *MemoryCache { return &MemoryCache{} }

// limit returns the bound on entries, or an error for a negative one.
func (c *MemoryCache) limit() (int, error) {
	switch {
	case c.MaxEntries < 0:
		return 0, fmt.Errorf("m2mtoken: MemoryCache.MaxEntries is negative (%d): use 0 for the default (%d)", c.MaxEntries, defaultMemoryCacheEntries)
	case c.MaxEntries == 0:
		return defaultMemoryCacheEntries, nil
	}
	return c.MaxEntries, nil
}

// Get returns the entry under key, if any. The source decides whether it
// is still fresh.
func (c *MemoryCache) Get(_ context.Context, key string) (*Entry, error) {
	if _, err := c.limit(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[key], nil
}

// Set stores e under key, unless the entry there already expires later.
func (c *MemoryCache) Set(_ context.Context, key string, e *Entry) error {
	limit, err := c.limit()
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old, ok := c.m[key]
	if ok && old.Expiry.After(e.Expiry) {
		return nil
	}
	if c.m == nil {
		c.m = make(map[string]*Entry)
	}
	if !ok && len(c.m) >= limit {
		c.makeRoom(limit)
	}
	c.m[key] = e
	return nil
}

// makeRoom drops the expired entries, and if that leaves the cache at
// limit, the sixteenth (at least one) that expire soonest. c.mu is held.
func (c *MemoryCache) makeRoom(limit int) {
	now := time.Now()
	for k, e := range c.m {
		if !e.Expiry.After(now) {
			delete(c.m, k)
		}
	}
	if len(c.m) < limit {
		return
	}
	keys := slices.Collect(maps.Keys(c.m))
	slices.SortFunc(keys, func(a, b string) int { return c.m[a].Expiry.Compare(c.m[b].Expiry) })
	for _, k := range keys[:len(c.m)-limit+1+limit/16] {
		delete(c.m, k)
	}
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

// noCache is the cache of a pool without Config.Cache: each token is kept
// by its source alone, so there is nothing to store.
type noCache struct{}

func (noCache) Get(context.Context, string) (*Entry, error) { return nil, nil }
func (noCache) Set(context.Context, string, *Entry) error   { return nil }
