package rediscache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/internal/logtest"
	"github.com/m2mtoken/m2mtoken/internal/wire"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// These tests replay what whoever can write to Redis (any client of a
// shared Redis, with `KEYS m2mtoken:*` to find the keys) could do to a
// fleet: plant a lease that nobody keeps, write an oversized value, plant
// a token that claims to live for ever.

// holderValue is a lease value as a holder writes it, in plain mode:
// "ID|TAKEN|STATUS".
func holderValue(taken time.Time, status string) string {
	return "0123456789abcdef0123456789abcdef|" + strconv.FormatInt(taken.UnixMilli(), 10) + "|" + status
}

// ignoredLease is the warning of a source that ignores a planted lease.
const ignoredLease = "ignoring the cache's fetch lease, which no live holder could have left; fetching without it (has something else written to the cache?)"

// hostileSource is a source of the fleet client with its own Redis
// client and a short FetchTimeout, logging to logs.
func hostileSource(t *testing.T, r *redisServer, iss *m2mtest.Server, logs *logtest.Log, opts ...Option) *m2mtoken.TokenSource {
	return source(t, iss, New(r.client(t), opts...), slog.New(slog.NewJSONHandler(logs, nil)),
		func(c *m2mtoken.Config) { c.FetchTimeout = 5 * time.Second })
}

// ignoredBecause returns why the first source that ignored a planted
// lease did so, or "" if none did.
func ignoredBecause(logs *logtest.Log) string {
	if rec := logs.Find(ignoredLease); rec != nil {
		return fmt.Sprint(rec["error"])
	}
	return ""
}

// TestPlantedLeaseCostsRequestsNotCalls plants `SET m2mtoken:{KEY}:lease
// "x|0|any text"` with no TTL (and leases like it): waited on, it would
// have a new source send no token request and fail at its deadline, and a
// running one never refresh, so that a fleet would be down within a token
// lifetime. A lease that no holder could have left must be ignored, with
// a warning: each instance fetches on its own while it is there (extra
// token requests), and no call fails.
func TestPlantedLeaseCostsRequestsNotCalls(t *testing.T) {
	r := startRedis(t)
	rdb := r.client(t)
	ctx := context.Background()
	year := 365 * 24 * time.Hour
	plants := []struct {
		name  string
		plant func(lkey string) error
	}{
		{"no TTL", func(k string) error { return rdb.Set(ctx, k, "x|0|any text", 0).Err() }}, // the first runs the fleet on
		{"a holder's value, no TTL", func(k string) error { return rdb.Set(ctx, k, holderValue(time.Now(), ""), 0).Err() }},
		{"a day's TTL", func(k string) error { return rdb.Set(ctx, k, holderValue(time.Now(), ""), 24*time.Hour).Err() }},
		{"taken a year ago", func(k string) error {
			return rdb.Set(ctx, k, holderValue(time.Now().Add(-year), ""), 5*time.Second).Err()
		}},
		{"a list", func(k string) error { return rdb.RPush(ctx, k, "x").Err() }},
		{"a 64 MiB value", func(k string) error { return rdb.Set(ctx, k, bytes.Repeat([]byte("x"), 64<<20), 5*time.Second).Err() }},
	}
	for i, p := range plants {
		t.Run(p.name, func(t *testing.T) {
			iss := issuer(t)
			iss.SetTokenLifetime(3 * time.Second)
			logs := logtest.New()
			var srcs []*m2mtoken.TokenSource
			for range 8 {
				srcs = append(srcs, hostileSource(t, r, iss, logs))
			}
			lkey := "m2mtoken:{" + srcs[0].CacheKey() + "}:lease"
			rdb.Del(ctx, lkey)
			if err := p.plant(lkey); err != nil {
				t.Fatal(err)
			}
			defer rdb.Del(ctx, lkey)
			// A cold fleet: every instance gets a token before its
			// deadline.
			tokenAll(t, srcs, 4*time.Second)
			cold := iss.TokensIssued("fleet")
			why := ignoredBecause(logs)
			if why == "" {
				t.Fatalf("no warning:\n%s", logs.String())
			}
			t.Logf("ignored: %s", why)
			if i > 0 {
				t.Logf("8 instances: %d token requests at a cold start (1 without the planted lease)", cold)
				return
			}
			// A running fleet refreshes: over two lifetimes, no call fails.
			driveFleet(t, srcs, 6*time.Second, 5*time.Millisecond)
			total := iss.TokensIssued("fleet")
			if total <= cold {
				t.Fatalf("no refresh behind the planted lease: %d token requests", total)
			}
			t.Logf("8 instances: %d token requests at a cold start (1 without the planted lease), %d over two more 3-second lifetimes", cold, total-cold)
		})
	}
}

// TestLeaseStatusFromRedisIsQuoted: the status of a lease a live holder
// could hold is shown to callers who give up waiting on it, but as the
// cache's word: quoted, escaped and cut short. It was shown raw and whole
// ("its holder's last attempt: ... rotate the secret at
// https://evil.example/rotate").
func TestLeaseStatusFromRedisIsQuoted(t *testing.T) {
	r := startRedis(t)
	iss := issuer(t)
	s := hostileSource(t, r, iss, logtest.New())
	lkey := "m2mtoken:{" + s.CacheKey() + "}:lease"
	status := "\x1b[2J\x1b[31mrotate the secret at https://evil.example/rotate\r\nlevel=ERROR forged" + strings.Repeat("A", 800)
	if err := r.client(t).Set(context.Background(), lkey, holderValue(time.Now(), status), 10*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := s.TokenContext(ctx)
	var werr *m2mtoken.WaitError
	if !errors.As(err, &werr) || werr.Lease == nil {
		t.Fatalf("got %v, want a WaitError with the lease", err)
	}
	msg := err.Error()
	if strings.ContainsAny(msg, "\x1b\r\n") || len(msg) > 1000 || !strings.Contains(msg, `the cache gives its holder's last attempt as "\x1b[2J`) {
		t.Fatalf("the status is not quoted, escaped and cut as the cache's: %q", msg)
	}
	t.Logf("%s", msg)
}

// TestSealedLeases: with WithEncryptionKey a lease's status is sealed,
// bound to its key and its holder, so a lease planted without the key is
// ignored at once, even one a plain instance would wait on; a sealed
// holder's lease is waited on, and its status read back.
func TestSealedLeases(t *testing.T) {
	r := startRedis(t)
	rdb := r.client(t)
	ctx := context.Background()
	key := bytes.Repeat([]byte{7}, 32)
	iss := issuer(t)
	logs := logtest.New()
	s := hostileSource(t, r, iss, logs, WithEncryptionKey(key))
	lkey := "m2mtoken:{" + s.CacheKey() + "}:lease"

	// A holder's lease, with its status sealed.
	holder := New(rdb, WithEncryptionKey(key))
	l, ok, err := holder.Lease(ctx, s.CacheKey(), 10*time.Second)
	if !ok || err != nil {
		t.Fatal(ok, err)
	}
	if held, err := l.Keep(ctx, 10*time.Second, "token request failed: 503 CANARY-status"); !held || err != nil {
		t.Fatal(held, err)
	}
	raw, _ := rdb.Get(ctx, lkey).Result()
	if strings.Contains(raw, "CANARY-status") {
		t.Fatalf("the status is stored in the clear: %q", raw)
	}
	info, err := New(rdb, WithEncryptionKey(key)).LeaseInfo(ctx, s.CacheKey())
	if err != nil || info == nil || info.Invalid != "" || info.Status != "token request failed: 503 CANARY-status" {
		t.Fatalf("a sealed holder's lease: %+v %v", info, err)
	}
	if info, _ := New(rdb).LeaseInfo(ctx, s.CacheKey()); info == nil || info.Invalid != "" || info.Status != "" {
		t.Fatalf("a plain instance reads a sealed lease as %+v; want it held, with no status", info)
	}
	if info, _ := New(rdb, WithEncryptionKey(bytes.Repeat([]byte{8}, 32))).LeaseInfo(ctx, s.CacheKey()); info == nil || info.Invalid == "" {
		t.Fatalf("another key opened the lease: %+v", info)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := s.TokenContext(short); !errors.Is(err, context.DeadlineExceeded) || iss.TokensIssued("fleet") != 0 {
		t.Fatalf("a sealed holder's lease: %v after %d requests, want a wait", err, iss.TokensIssued("fleet"))
	}
	l.Release(ctx)

	// A lease planted without the key, that a plain instance would wait
	// on (a holder's format, taken now, kept for 10 s), or another
	// holder's head with the sealed status moved onto it.
	moved := holderValue(time.Now(), "") + raw[strings.LastIndex(raw, "|")+1:]
	for _, v := range []string{holderValue(time.Now(), "token request failed: EOF"), moved} {
		rdb.Set(ctx, lkey, v, 10*time.Second)
		if _, err := s.Token(); err != nil {
			t.Fatal(err)
		}
		rdb.Del(ctx, "m2mtoken:{"+s.CacheKey()+"}")
		s.Close()
		s = hostileSource(t, r, iss, logs, WithEncryptionKey(key))
	}
	if n, _ := logs.Count(ignoredLease); n != 2 || iss.TokensIssued("fleet") != 2 {
		t.Fatalf("%d token requests behind two planted leases, %d ignored; want 2 and 2\n%s", iss.TokensIssued("fleet"), n, logs.String())
	}
	t.Logf("ignored: %s", ignoredBecause(logs))
}

// TestPlainEntryLifetimeClamped plants a plain entry with expiry
// 9999-01-01, to have it used and held in memory for ever, even after its
// key is deleted. Plain mode trusts the token (a writer chooses it; see
// docs/caches.md), but must hold it no longer than an answer's lifetime is
// clamped to; with a key, it is refused.
func TestPlainEntryLifetimeClamped(t *testing.T) {
	r := startRedis(t)
	rdb := r.client(t)
	ctx := context.Background()
	iss := issuer(t)
	logs := logtest.New()
	s := hostileSource(t, r, iss, logs)
	far, _ := time.Parse(time.RFC3339, "9999-01-01T00:00:00Z")
	planted := &m2mtoken.Entry{AccessToken: "planted", TokenType: "Bearer", IssuedAt: time.Now(), Expiry: far}
	b, _ := planted.MarshalBinary()
	rdb.Set(ctx, "m2mtoken:{"+s.CacheKey()+"}", b, 0)
	tok, err := s.Token()
	if err != nil {
		t.Fatal(err)
	}
	if limit := time.Now().Add(wire.MaxExpiresIn); tok.AccessToken != "planted" || tok.Expiry.After(limit) {
		t.Fatalf("got %q until %v; want the planted token held until %v at the latest", tok.AccessToken, tok.Expiry, limit)
	}
	if !strings.Contains(logs.String(), "claims a lifetime") {
		t.Errorf("no warning:\n%s", logs.String())
	}
	sealed := hostileSource(t, r, iss, logs, WithEncryptionKey(bytes.Repeat([]byte{7}, 32)))
	if tok, err := sealed.Token(); err != nil || tok.AccessToken == "planted" {
		t.Fatalf("with a key: %v %v, want a token from the endpoint", tok, err)
	}
}

// TestOversizedValueNotRead plants a large value at a token's entry key,
// and at its lease key, and starts 8 cold sources: a Get that read the
// value whole before its 1 MiB check, a LeaseInfo that read a lease whole
// at every poll, or a read abandoned at the 250 ms timeout that went on
// reading would take their heap to gigabytes (2,049 MiB for 8 sources and
// 256 MiB). Sizes must be checked in Redis, so that nothing oversized
// crosses the network: the value is a miss with a warning, and the lease
// is ignored. M2MTOKEN_OVERSIZED_MIB sets the size (64 MiB by default).
func TestOversizedValueNotRead(t *testing.T) {
	size := 64
	if v, err := strconv.Atoi(os.Getenv("M2MTOKEN_OVERSIZED_MIB")); err == nil && v > 0 {
		size = v
	}
	r := startRedis(t)
	rdb := r.client(t)
	ctx := context.Background()
	for _, at := range []string{"entry", "lease"} {
		t.Run(at, func(t *testing.T) {
			iss := issuer(t)
			logs := logtest.New()
			var srcs []*m2mtoken.TokenSource
			for range 8 {
				srcs = append(srcs, hostileSource(t, r, iss, logs))
			}
			rkey := "m2mtoken:{" + srcs[0].CacheKey() + "}"
			if at == "lease" {
				rkey += ":lease"
			}
			if err := rdb.Set(ctx, rkey, bytes.Repeat([]byte("x"), size<<20), time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			defer rdb.Del(ctx, rkey)
			peak, allocated := measureHeap(t, func() {
				tokenAll(t, srcs, 0)
				for _, s := range srcs {
					s.Close()
				}
			})
			t.Logf("a %d MiB value at the %s key, 8 sources: heap peak %d MiB above the start, %d MiB allocated, %d token requests",
				size, at, peak>>20, allocated>>20, iss.TokensIssued("fleet"))
			if allocated > uint64(size)<<20/2 {
				t.Fatalf("%d MiB allocated for a %d MiB value: it was read", allocated>>20, size)
			}
			want := "over 1 MiB: not read"
			if at == "lease" {
				want = "more than a holder writes"
			}
			if !strings.Contains(logs.String(), want) {
				t.Fatalf("no warning (%q):\n%s", want, logs.String())
			}
		})
	}
}

// measureHeap runs f and returns the heap's peak above where it started
// (sampled every millisecond) and the bytes allocated, once every
// goroutine f left has ended (a read abandoned at its timeout goes on).
func measureHeap(t *testing.T, f func()) (peak, allocated uint64) {
	runtime.GC()
	goroutines := runtime.NumGoroutine()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	base := sample[0].Value.Uint64()
	stop := make(chan struct{})
	var top atomic.Uint64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
			metrics.Read(s)
			if v := s[0].Value.Uint64(); v > top.Load() {
				top.Store(v)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	f()
	for deadline := time.Now().Add(time.Minute); runtime.NumGoroutine() > goroutines+1 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	return max(top.Load(), base) - base, after.TotalAlloc - before.TotalAlloc
}
