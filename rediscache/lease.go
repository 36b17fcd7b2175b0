package rediscache

// The fetch lease: one key per token, PREFIX{KEY}:lease, taken with SET NX
// PX, kept alive and released by its holder with compare-and-set scripts.
//
// Whoever can write to Redis can write this key too. A lease value that no
// holder could have written (no expiry, another type, too long, not this
// format, or not sealed when values are) is reported as Invalid, and a
// source does not wait on it (see m2mtoken.Leaser); with WithEncryptionKey
// the value is sealed, so that a planted one does not open. Nothing in it
// is read whole: its size is checked in Redis.

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/internal/printable"
)

// Lease values are "ID|TAKEN|STATUS": ID is 32 random hex digits for every
// attempt, so that only the attempt that took a lease keeps or releases
// it; TAKEN is when it was taken (Unix milliseconds, by the holder's
// clock); STATUS is what the holder last reported (see m2mtoken.Lease.Keep),
// at most maxStatus bytes. With an encryption key, STATUS is sealed (see
// sealStatus), bound to the lease's key and to "ID|TAKEN|", so that a value
// nobody with the key wrote does not open.
const (
	// keepScript extends the lease and records a new status if it still
	// belongs to the holder whose "ID|TAKEN|" is ARGV[1]. It reads no
	// more of the value than that.
	keepScript = `if redis.call("GETRANGE", KEYS[1], 0, #ARGV[1] - 1) == ARGV[1] then
  redis.call("SET", KEYS[1], ARGV[1] .. ARGV[3], "PX", ARGV[2])
  return 1
end
return 0`
	// releaseScript deletes the lease if it still belongs to that holder,
	// so that a holder whose lease lapsed cannot release the next one's.
	releaseScript = `if redis.call("GETRANGE", KEYS[1], 0, #ARGV[1] - 1) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0`
	// leaseInfoScript returns the lease's type, its PTTL, its length and
	// its first ARGV[1] bytes (nil if there is none), so that LeaseInfo
	// never reads a value planted to exhaust memory.
	leaseInfoScript = `local t = redis.call("TYPE", KEYS[1])["ok"]
if t == "none" then return false end
local ttl = redis.call("PTTL", KEYS[1])
if t ~= "string" then return {t, ttl, 0, ""} end
return {t, ttl, redis.call("STRLEN", KEYS[1]), redis.call("GETRANGE", KEYS[1], 0, tonumber(ARGV[1]) - 1)}`
)

// maxStatus bounds the status stored with a lease.
const maxStatus = 300

// maxLeaseValue bounds a lease value: "ID|TAKEN|" and a status of at most
// maxStatus bytes and "...", sealed (base64 of nonce, status and tag) or
// not, fit with room to spare.
const maxLeaseValue = 1 << 10

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
	status, err := l.status("")
	if err != nil {
		return nil, false, err
	}
	var ok bool
	var setErr error
	err = c.boundedOr(ctx, func(ctx context.Context) error {
		ok, setErr = c.rdb.SetNX(ctx, l.key, l.head+status, ttl).Result()
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
// has left, and its holder's last status; nil if none is held. It reads at
// most 1 KiB of the lease. A lease that no holder could have written is
// reported with Invalid saying why: one without an expiry (a holder always
// sets one), a key of another type, a longer value, or one not in the
// holder's format; with an encryption key, one that does not open.
func (c *Cache) LeaseInfo(ctx context.Context, key string) (*m2mtoken.LeaseInfo, error) {
	if c.err != nil {
		return nil, c.err
	}
	lkey := c.leaseKey(key)
	v, err := c.runScript(ctx, c.info, lkey, maxLeaseValue)
	if v == nil || err != nil {
		if err != nil {
			err = fmt.Errorf("rediscache: lease info: %w", err)
		}
		return nil, err
	}
	r, ok := v.([]any)
	if !ok || len(r) != 4 {
		return nil, fmt.Errorf("rediscache: lease info: an answer of type %T", v)
	}
	typ, _ := r[0].(string)
	pttl, _ := r[1].(int64)
	size, _ := r[2].(int64)
	head, _ := r[3].(string)
	info := &m2mtoken.LeaseInfo{Remaining: max(time.Duration(pttl)*time.Millisecond, 0)}
	switch {
	case typ != "string":
		info.Invalid = "the key " + lkey + " is a Redis " + printable.Line(typ, 20) + ", not a lease"
	case pttl == -1:
		info.Invalid = "the lease at " + lkey + " has no expiry: a holder always sets one"
	case size > maxLeaseValue:
		info.Invalid = fmt.Sprintf("the lease at %s is %d bytes, more than a holder writes", lkey, size)
	default:
		c.readLease(info, lkey, head)
	}
	return info, nil
}

// readLease fills info from the lease value v at lkey, or says in
// info.Invalid why v is no holder's.
func (c *Cache) readLease(info *m2mtoken.LeaseInfo, lkey, v string) {
	id, rest, _ := strings.Cut(v, "|")
	taken, status, ok := strings.Cut(rest, "|")
	ms, err := strconv.ParseInt(taken, 10, 64)
	if _, herr := hex.DecodeString(id); !ok || len(id) != 32 || herr != nil || err != nil || ms <= 0 {
		info.Invalid = "the value at " + lkey + " is not a lease value a holder writes (ID|TAKEN|STATUS)"
		return
	}
	sealed := strings.HasPrefix(status, sealedMagic)
	switch {
	case c.sealer != nil:
		plain, err := c.openStatus(lkey, v[:len(id)+len(taken)+2], status)
		if err != nil {
			info.Invalid = "the lease at " + lkey + " " + err.Error()
			return
		}
		status = string(plain)
	case sealed:
		status = "" // sealed by an instance with a key: not readable here
	}
	info.Age = max(time.Since(time.UnixMilli(ms)), 0)
	info.Status = status
}

// sealStatus seals a lease's status, bound to the lease's key and head:
// sealedMagic, then the base64 of the nonce and ciphertext.
func (c *Cache) sealStatus(lkey, head, status string) (string, error) {
	b, err := c.seal([]byte(status), []byte(lkey+"\x00"+head))
	if err != nil {
		return "", err
	}
	return sealedMagic + base64.RawStdEncoding.EncodeToString(b), nil
}

// openStatus opens what sealStatus sealed.
func (c *Cache) openStatus(lkey, head, sealed string) ([]byte, error) {
	b64, ok := strings.CutPrefix(sealed, sealedMagic)
	if !ok {
		return nil, errors.New("is not sealed, but an encryption key is set")
	}
	b, err := base64.RawStdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.New("is not sealed as a holder seals it")
	}
	return c.open(b, []byte(lkey+"\x00"+head))
}

// lease is a lease this process took.
type lease struct {
	c    *Cache
	key  string
	head string // "ID|TAKEN|"
}

// status is the STATUS part of the lease's value for status: cut to
// maxStatus bytes, its control characters escaped, and sealed if the cache
// seals its values.
func (l *lease) status(status string) (string, error) {
	status = printable.Line(status, maxStatus)
	if l.c.sealer == nil {
		return status, nil
	}
	return l.c.sealStatus(l.key, l.head, status)
}

// Keep extends the lease to ttl if this holder still holds it, and
// records status.
func (l *lease) Keep(ctx context.Context, ttl time.Duration, status string) (bool, error) {
	status, err := l.status(status)
	if err != nil {
		return false, fmt.Errorf("rediscache: keeping the lease: %w", err)
	}
	var n int64
	err = l.c.bounded(ctx, func(ctx context.Context) error {
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
