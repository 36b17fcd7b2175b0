// Package rediscache is an m2mtoken.Cache in Redis, so that a fleet of
// processes shares one token, and one token request, per token lifetime.
//
// Auth0 bills and rate-limits machine-to-machine tokens per tenant: fifty
// replicas that each fetch their own token cost fifty times as much. With a
// Cache from this package as m2mtoken.Config.Cache:
//
//   - a source that needs a token first looks in Redis, and adopts a fresh
//     token another instance stored (a new process with no token adopts a
//     stale one that is still usable, and refreshes it in the background);
//   - if there is none, one instance takes a short lease (SET NX PX, 750
//     ms by default) and keeps it alive while it fetches, while the others
//     poll Redis for its token, bounded by their contexts; if the lease
//     holder dies, its lease lapses within a second and another instance
//     fetches; if it is alive but the token endpoint fails, it retries for
//     the whole fleet, and callers that give up waiting learn why;
//   - entries expire in Redis with their token (PX).
//
// Each source keeps its token in memory too, so the hot path makes no
// network call: Redis is consulted only when a token is missing or due for
// refresh. Redis being down, slow or returning garbage costs extra token
// requests and a warning in the log, never a failed call: every Redis call
// is bounded by a short timeout, and the source goes on with the token
// endpoint.
//
// With [WithEncryptionKey], values are sealed with AES-256-GCM bound to
// their Redis key, so a reader of Redis sees no usable token and a value
// moved to another key does not open; so are the leases' status lines, so
// that a lease that someone without the key planted is ignored.
//
// Whoever can write to Redis can delete entries, plant leases and write
// values of any size. A value is measured in Redis before it is read (one
// over 1 MiB is a miss, and never crosses the network), and a lease that
// no holder could have left (without an expiry, held longer than a fetch
// lasts, or, with a key, not sealed with it) is ignored: that costs token
// requests, never a caller's call. Without a key, a writer can also plant
// a token of its choosing, which sources use for up to 366 days; see the
// caches page of the manual.
package rediscache

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/m2mtoken/m2mtoken"
)

// Cache is an [m2mtoken.Cache] and [m2mtoken.Leaser] in Redis. Create it
// with [New]; it is safe for concurrent use.
type Cache struct {
	rdb     redis.UniversalClient
	prefix  string
	timeout time.Duration
	sealer  cipher.AEAD   // nil: values are stored in plain JSON
	openers []cipher.AEAD // sealer first, then old keys
	log     *slog.Logger
	get     *redis.Script
	info    *redis.Script
	release *redis.Script
	keep    *redis.Script
	err     error // a configuration error, returned by every call

	beforeWait func() // tests only: runs between starting a call and waiting for it
}

// Option configures a Cache.
type Option func(*Cache)

// WithTimeout bounds each Redis call (default 250 ms). A call that takes
// longer counts as a cache miss, whatever the client's own timeouts.
func WithTimeout(d time.Duration) Option {
	return func(c *Cache) {
		if d > 0 {
			c.timeout = d
		}
	}
}

// WithLogger sets where warnings about undecryptable values go (default:
// nowhere). Errors are also returned to the token source, which logs them.
func WithLogger(l *slog.Logger) Option { return func(c *Cache) { c.log = l } }

// WithEncryptionKey seals values with AES-256-GCM under key, which must be
// 32 bytes (from a secret store, not from code). The Redis key is the
// additional data, so a value copied to another key does not open. A value
// that does not open is a miss (and a warning). With a key set, plaintext
// values are not accepted. The status line of a fetch lease is sealed too,
// bound to the lease's key and its holder's ID and start, so that a lease
// planted by whoever can write to Redis without the key is ignored (the
// source fetches without it) rather than waited on.
//
// To rotate keys: deploy the new key with WithEncryptionKey and the old one
// with [WithDecryptionKeys]; once the old entries have expired (one token
// lifetime), drop the old key.
func WithEncryptionKey(key []byte) Option {
	return func(c *Cache) {
		aead, err := newAEAD(key)
		if err != nil {
			c.err = fmt.Errorf("rediscache: WithEncryptionKey: %w", err)
			return
		}
		c.sealer = aead
	}
}

// WithDecryptionKeys adds old keys that values may still be sealed with,
// during a key rotation. New values are always sealed with the key given to
// [WithEncryptionKey].
func WithDecryptionKeys(keys ...[]byte) Option {
	return func(c *Cache) {
		for i, k := range keys {
			aead, err := newAEAD(k)
			if err != nil {
				c.err = fmt.Errorf("rediscache: WithDecryptionKeys: key %d: %w", i, err)
				return
			}
			c.openers = append(c.openers, aead)
		}
	}
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("the key is %d bytes; AES-256 needs 32", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// New returns a Cache on rdb: a *redis.Client, *redis.ClusterClient, a
// Sentinel failover client or a *redis.Ring. A bad option (an encryption key
// of the wrong size) makes every call return the error; [Cache.Err] reports
// it at startup.
func New(rdb redis.UniversalClient, opts ...Option) *Cache {
	c := &Cache{
		rdb: rdb, prefix: "m2mtoken:", timeout: 250 * time.Millisecond,
		get:     redis.NewScript(getScript),
		info:    redis.NewScript(leaseInfoScript),
		release: redis.NewScript(releaseScript),
		keep:    redis.NewScript(keepScript),
	}
	for _, o := range opts {
		o(c)
	}
	if c.sealer != nil {
		c.openers = append([]cipher.AEAD{c.sealer}, c.openers...)
	} else if len(c.openers) > 0 && c.err == nil {
		c.err = errors.New("rediscache: WithDecryptionKeys needs WithEncryptionKey")
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c
}

// bounded runs f with a context that ends after the cache's timeout, and
// returns when f does or when the timeout passes, whichever is first. The
// context alone is not enough: go-redis ignores context deadlines unless
// the client was built with ContextTimeoutEnabled, and then waits for its
// own ReadTimeout (3 s by default). An abandoned call ends by itself within
// the client's timeouts; its result is dropped. No answer is large: values
// are measured in Redis before they are read, so an abandoned call reads at
// most 1 MiB. An answer that is there
// when the wait ends wins over the deadline, however late this goroutine
// was scheduled: under CPU load, reporting it as a timeout would cost a
// fleet its lease.
func (c *Cache) bounded(ctx context.Context, f func(context.Context) error) error {
	return c.boundedOr(ctx, f, nil)
}

// boundedOr is bounded; if the caller stopped waiting before f returned,
// late runs after f returns (in f's goroutine), so that what f did can be
// undone in order: a SET NX whose answer came too late may still have
// taken the lease.
func (c *Cache) boundedOr(ctx context.Context, f func(context.Context) error, late func()) error {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	done := make(chan error, 1)
	var state atomic.Int32 // 0 waiting, 1 answered, 2 abandoned
	go func() {
		defer cancel()
		err := f(ctx)
		if state.CompareAndSwap(0, 1) {
			done <- err
			return
		}
		if late != nil {
			late()
		}
	}()
	if c.beforeWait != nil {
		c.beforeWait()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		if !state.CompareAndSwap(0, 2) {
			return <-done // answered just now
		}
		if err := parent.Err(); err != nil {
			return err
		}
		return fmt.Errorf("no answer within %v", c.timeout)
	}
}

// runScript runs s on key with args, bounded (see bounded). A script that
// returned nil (redis.Nil) gives a nil answer and no error.
func (c *Cache) runScript(ctx context.Context, s *redis.Script, key string, args ...any) (any, error) {
	var v any
	err := c.bounded(ctx, func(ctx context.Context) error {
		var err error
		v, err = s.Run(ctx, c.rdb, []string{key}, args...).Result()
		return err
	})
	switch {
	case errors.Is(err, redis.Nil):
		return nil, nil
	case err != nil:
		return nil, err // v may still be written by a call abandoned at its timeout
	}
	return v, nil
}

// Err reports a configuration error, or nil.
func (c *Cache) Err() error { return c.err }

// maxValue bounds the values Get reads: a token's entry is far smaller
// (m2mtoken.Entry.UnmarshalBinary refuses more).
const maxValue = 1 << 20

// getScript returns the value at KEYS[1] if it is at most ARGV[1] bytes,
// else its size, so that a value planted to exhaust memory is measured in
// Redis, never read. A missing (or empty) value is nil.
const getScript = `local n = redis.call("STRLEN", KEYS[1])
if n == 0 then return false end
if n > tonumber(ARGV[1]) then return n end
return redis.call("GET", KEYS[1])`

// Get returns the entry under key, nil if there is none. An error means
// Redis failed, or the value was corrupt, over 1 MiB (it is not read: its
// size is checked in Redis) or did not decrypt; either way the source
// treats it as a miss, and warns.
func (c *Cache) Get(ctx context.Context, key string) (*m2mtoken.Entry, error) {
	if c.err != nil {
		return nil, c.err
	}
	rkey := c.entryKey(key)
	v, err := c.runScript(ctx, c.get, rkey, maxValue)
	if err != nil {
		return nil, fmt.Errorf("rediscache: GET: %w", err)
	}
	var e *m2mtoken.Entry
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		e, err = c.decode(rkey, []byte(v))
	case int64:
		err = fmt.Errorf("%d bytes, over 1 MiB: not read", v)
	default:
		err = fmt.Errorf("an answer of type %T", v)
	}
	if err != nil {
		c.log.Warn("rediscache: ignoring a stored value", slog.String("key", rkey), slog.Any("error", err))
		return nil, fmt.Errorf("rediscache: value at %s: %w", rkey, err)
	}
	return e, nil
}

// Set stores e under key until e.Expiry.
func (c *Cache) Set(ctx context.Context, key string, e *m2mtoken.Entry) error {
	if c.err != nil {
		return c.err
	}
	ttl := time.Until(e.Expiry)
	if ttl < time.Millisecond {
		return nil
	}
	b, err := e.MarshalBinary()
	if err != nil {
		return fmt.Errorf("rediscache: %w", err)
	}
	rkey := c.entryKey(key)
	if c.sealer != nil {
		sealed, err := c.seal(b, []byte(rkey))
		if err != nil {
			return fmt.Errorf("rediscache: %w", err)
		}
		b = append([]byte(sealedMagic), sealed...)
	}
	err = c.bounded(ctx, func(ctx context.Context) error { return c.rdb.Set(ctx, rkey, b, ttl).Err() })
	if err != nil {
		return fmt.Errorf("rediscache: SET: %w", err)
	}
	return nil
}
