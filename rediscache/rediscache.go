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
// moved to another key does not open.
package rediscache

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
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
	seal    cipher.AEAD   // nil: values are stored in plain JSON
	open    []cipher.AEAD // seal first, then old keys
	log     *slog.Logger
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
// values are not accepted.
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
		c.seal = aead
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
			c.open = append(c.open, aead)
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
		release: redis.NewScript(releaseScript),
		keep:    redis.NewScript(keepScript),
	}
	for _, o := range opts {
		o(c)
	}
	if c.seal != nil {
		c.open = append([]cipher.AEAD{c.seal}, c.open...)
	} else if len(c.open) > 0 && c.err == nil {
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
// the client's timeouts; its result is dropped. An answer that is there
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

// Err reports a configuration error, or nil.
func (c *Cache) Err() error { return c.err }

const sealedMagic = "m2mtoken-gcm1:"

// Get returns the entry under key, nil if there is none. An error means
// Redis failed, or the value was corrupt or did not decrypt; either way the
// source treats it as a miss.
func (c *Cache) Get(ctx context.Context, key string) (*m2mtoken.Entry, error) {
	if c.err != nil {
		return nil, c.err
	}
	rkey := c.entryKey(key)
	var b []byte
	err := c.bounded(ctx, func(ctx context.Context) error {
		var err error
		b, err = c.rdb.Get(ctx, rkey).Bytes()
		return err
	})
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("rediscache: GET: %w", err)
	}
	e, err := c.decode(rkey, b)
	if err != nil {
		c.log.Warn("rediscache: ignoring a stored value", slog.String("key", rkey), slog.Any("error", err))
		return nil, fmt.Errorf("rediscache: value at %s: %w", rkey, err)
	}
	return e, nil
}

func (c *Cache) decode(rkey string, b []byte) (*m2mtoken.Entry, error) {
	if len(b) > 1<<20 {
		return nil, errors.New("over 1 MiB")
	}
	if c.seal != nil {
		if len(b) < len(sealedMagic) || string(b[:len(sealedMagic)]) != sealedMagic {
			return nil, errors.New("not sealed, but an encryption key is set")
		}
		b = b[len(sealedMagic):]
		var plain []byte
		for _, aead := range c.open {
			ns := aead.NonceSize()
			if len(b) < ns {
				break
			}
			if p, err := aead.Open(nil, b[:ns], b[ns:], []byte(rkey)); err == nil {
				plain = p
				break
			}
		}
		if plain == nil {
			return nil, errors.New("does not decrypt with any configured key (wrong key, or moved from another key)")
		}
		b = plain
	}
	e := new(m2mtoken.Entry)
	if err := e.UnmarshalBinary(b); err != nil {
		return nil, err
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
	if c.seal != nil {
		nonce := make([]byte, c.seal.NonceSize(), c.seal.NonceSize()+len(b)+c.seal.Overhead())
		if _, err := rand.Read(nonce); err != nil {
			return fmt.Errorf("rediscache: %w", err)
		}
		b = append([]byte(sealedMagic), c.seal.Seal(nonce, nonce, b, []byte(rkey))...)
	}
	err = c.bounded(ctx, func(ctx context.Context) error { return c.rdb.Set(ctx, rkey, b, ttl).Err() })
	if err != nil {
		return fmt.Errorf("rediscache: SET: %w", err)
	}
	return nil
}

// Lease values are "ID|TAKEN|STATUS": ID is random for every attempt, so
// that only the attempt that took a lease keeps or releases it; TAKEN is
// when it was taken (Unix milliseconds, by the holder's clock); STATUS is
// what the holder last reported (see m2mtoken.Lease.Keep).
const (
	// keepScript extends the lease and records a new status if it still
	// belongs to the holder whose "ID|TAKEN|" is ARGV[1].
	keepScript = `local v = redis.call("GET", KEYS[1])
if v and string.sub(v, 1, #ARGV[1]) == ARGV[1] then
  redis.call("SET", KEYS[1], ARGV[1] .. ARGV[3], "PX", ARGV[2])
  return 1
end
return 0`
	// releaseScript deletes the lease if it still belongs to that holder,
	// so that a holder whose lease lapsed cannot release the next one's.
	releaseScript = `local v = redis.call("GET", KEYS[1])
if v and string.sub(v, 1, #ARGV[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0`
)

// Lease takes the fetch lease for key for ttl, with SET NX PX and a value of
// its own, and makes Cache an [m2mtoken.Leaser]: its holder keeps it alive
// with a compare-and-extend (a Lua script), so that a short ttl tells a dead
// holder from a slow one.
//
// If the SET NX got no answer in time, or failed on the way, it may still
// have taken the lease: Lease then reports the error (the source fetches
// without the lease) and deletes the lease if it holds its value
// (compare-and-delete), once the SET's own outcome is known; a lease it
// could not delete lapses after ttl, as nobody keeps it.
func (c *Cache) Lease(ctx context.Context, key string, ttl time.Duration) (m2mtoken.Lease, bool, error) {
	if c.err != nil {
		return nil, false, c.err
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, false, err
	}
	l := &lease{c: c, key: c.leaseKey(key), head: hex.EncodeToString(b[:]) + "|" + strconv.FormatInt(time.Now().UnixMilli(), 10) + "|"}
	var ok bool
	var setErr error
	err := c.boundedOr(ctx, func(ctx context.Context) error {
		ok, setErr = c.rdb.SetNX(ctx, l.key, l.head, ttl).Result()
		if setErr != nil {
			l.undo(ctx) // failed on the way: it may have been applied
		}
		return setErr
	}, func() {
		if ok && setErr == nil {
			l.undo(ctx) // taken, but the caller had given up
		}
	})
	if err != nil {
		return nil, false, fmt.Errorf("rediscache: SET NX: %w", err)
	}
	if !ok {
		return nil, false, nil
	}
	return l, true, nil
}

// LeaseInfo reports on the lease for key: when it was taken, how long it
// has left, and its holder's last status; nil if none is held.
func (c *Cache) LeaseInfo(ctx context.Context, key string) (*m2mtoken.LeaseInfo, error) {
	if c.err != nil {
		return nil, c.err
	}
	lkey := c.leaseKey(key)
	var v string
	var ttl time.Duration
	err := c.bounded(ctx, func(ctx context.Context) error {
		p := c.rdb.Pipeline()
		get, pttl := p.Get(ctx, lkey), p.PTTL(ctx, lkey)
		p.Exec(ctx)
		var err error
		if v, err = get.Result(); err != nil {
			return err
		}
		ttl, err = pttl.Result()
		return err
	})
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("rediscache: lease info: %w", err)
	}
	info := &m2mtoken.LeaseInfo{Remaining: max(ttl, 0)}
	if parts := strings.SplitN(v, "|", 3); len(parts) == 3 {
		if ms, err := strconv.ParseInt(parts[1], 10, 64); err == nil {
			info.Age = max(time.Since(time.UnixMilli(ms)), 0)
		}
		info.Status = parts[2]
	}
	return info, nil
}

// lease is a lease this process took.
type lease struct {
	c    *Cache
	key  string
	head string // "ID|TAKEN|"
}

// maxStatus bounds the status stored with a lease.
const maxStatus = 300

// Keep extends the lease to ttl if this holder still holds it, and
// records status.
func (l *lease) Keep(ctx context.Context, ttl time.Duration, status string) (bool, error) {
	if len(status) > maxStatus {
		status = status[:maxStatus] + "..."
	}
	var n int64
	err := l.c.bounded(ctx, func(ctx context.Context) error {
		var err error
		n, err = l.c.keep.Run(ctx, l.c.rdb, []string{l.key}, l.head, ttl.Milliseconds(), status).Int64()
		return err
	})
	if err != nil {
		return false, fmt.Errorf("rediscache: keeping the lease: %w", err)
	}
	return n == 1, nil
}

// Release deletes the lease if this holder still holds it.
func (l *lease) Release(ctx context.Context) error {
	err := l.c.bounded(ctx, func(ctx context.Context) error {
		return l.c.release.Run(ctx, l.c.rdb, []string{l.key}, l.head).Err()
	})
	if err != nil {
		l.c.log.Warn("rediscache: releasing the lease failed; it expires on its own", slog.String("key", l.key), slog.Any("error", err))
		return fmt.Errorf("rediscache: releasing the lease: %w", err)
	}
	return nil
}

// undo deletes a lease whose SET NX outcome was not learned, if it took
// it. It runs after the SET returned, so the DEL cannot overtake it.
func (l *lease) undo(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(l.c.timeout, time.Second))
	defer cancel()
	if err := l.c.release.Run(ctx, l.c.rdb, []string{l.key}, l.head).Err(); err != nil {
		l.c.log.Warn("rediscache: a lease whose SET NX outcome is unknown could not be deleted; it lapses on its own", slog.String("key", l.key), slog.Any("error", err))
	}
}
