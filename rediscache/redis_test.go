package rediscache

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

const aud = "https://api.example.com/"

func issuer(t testing.TB) *m2mtest.Server {
	s := m2mtest.NewServer(m2mtest.Client{ID: "fleet", Secret: "fleet-secret-CANARY", Audiences: []string{aud}})
	t.Cleanup(s.Close)
	return s
}

// source is a source of the fleet's client on cache, with the changes
// mods make to its Config.
func source(t testing.TB, iss *m2mtest.Server, cache m2mtoken.Cache, logger *slog.Logger, mods ...func(*m2mtoken.Config)) *m2mtoken.TokenSource {
	t.Helper()
	cfg := m2mtoken.Config{TokenURL: iss.TokenURL(), ClientID: "fleet", ClientSecret: "fleet-secret-CANARY", Audience: aud, Cache: cache, Logger: logger}
	for _, m := range mods {
		m(&cfg)
	}
	s, err := m2mtoken.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestColdStartFleetMakesOneRequest(t *testing.T) {
	r := startRedis(t)
	iss := issuer(t)
	iss.SetLatency(200 * time.Millisecond)
	var srcs []*m2mtoken.TokenSource
	for i := 0; i < 8; i++ { // eight instances, each with its own Redis client
		srcs = append(srcs, source(t, iss, New(r.client(t)), nil))
	}
	toks := make([]string, len(srcs))
	var wg sync.WaitGroup
	for i, s := range srcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := s.Token()
			if err != nil {
				t.Error(err)
				return
			}
			toks[i] = tok.AccessToken
		}()
	}
	wg.Wait()
	if n := iss.TokensIssued("fleet"); n != 1 {
		t.Fatalf("fleet of 8 made %d token requests, want 1", n)
	}
	for _, tk := range toks {
		if tk != toks[0] {
			t.Fatal("instances hold different tokens")
		}
	}
}

// TestSteadyState runs a fleet over several short lifetimes: about one
// token request per lifetime, not one per instance.
func TestSteadyState(t *testing.T) {
	r := startRedis(t)
	iss := issuer(t)
	iss.SetTokenLifetime(2 * time.Second)
	const n, lifetimes = 8, 4
	var srcs []*m2mtoken.TokenSource
	for i := 0; i < n; i++ {
		srcs = append(srcs, source(t, iss, New(r.client(t)), nil))
	}
	driveFleet(t, srcs, lifetimes*2*time.Second, 5*time.Millisecond)
	got := iss.TokensIssued("fleet")
	t.Logf("%d instances over %d lifetimes: %d token requests", n, lifetimes, got)
	if got > lifetimes+3 {
		t.Fatalf("%d token requests over %d lifetimes for %d instances, want about one per lifetime", got, lifetimes, n)
	}
}

// tokenAll has every source ask for its first token at once, as a fleet
// that starts together does; each call fails the test. A timeout above 0
// bounds each call.
func tokenAll(tb testing.TB, srcs []*m2mtoken.TokenSource, timeout time.Duration) {
	var wg sync.WaitGroup
	for _, s := range srcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			if _, err := s.TokenContext(ctx); err != nil {
				tb.Error(err)
			}
		}()
	}
	wg.Wait()
}

// driveFleet has every source ask for a token every few milliseconds for
// d, as busy instances would.
func driveFleet(tb testing.TB, srcs []*m2mtoken.TokenSource, d, every time.Duration) {
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	for _, s := range srcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				if _, err := s.Token(); err != nil {
					tb.Error(err)
					return
				}
				time.Sleep(every)
			}
		}()
	}
	wg.Wait()
}

func TestDeadLeaseHolder(t *testing.T) {
	r := startRedis(t)
	iss := issuer(t)
	rdb := r.client(t)
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := source(t, iss, New(rdb, WithLogger(log)), log)
	// A holder took the lease and died before storing a token. The clock
	// starts before the SET, so that a slow answer cannot move the lease's
	// expiry before start+700ms.
	start := time.Now()
	if err := rdb.Set(context.Background(), "m2mtoken:{"+s.CacheKey()+"}:lease", holderValue(start, ""), 700*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	tok, err := s.Token()
	if err != nil || tok.AccessToken == "" {
		t.Fatalf("%v %v", tok, err)
	}
	if waited := time.Since(start); waited < 690*time.Millisecond || waited > 5*time.Second {
		t.Fatalf("fetched after %v; want after the dead lease expired\n%s", waited, logs.String())
	}
	if iss.TokensIssued("fleet") != 1 {
		t.Fatalf("%d requests", iss.TokensIssued("fleet"))
	}
}

func TestRedisStoppedMidRun(t *testing.T) {
	r := startRedis(t)
	iss := issuer(t)
	var logs syncBuffer
	s := source(t, iss, New(r.client(t)), slog.New(slog.NewTextHandler(&logs, nil)))
	tok1, err := s.Token()
	if err != nil {
		t.Fatal(err)
	}
	r.stop()
	s.Invalidate(tok1) // force a fetch with Redis gone
	tok2, err := s.Token()
	if err != nil || tok2.AccessToken == tok1.AccessToken {
		t.Fatalf("with Redis down: %v %v", tok2, err)
	}
	if !strings.Contains(logs.String(), "level=WARN") {
		t.Error("no warning logged for the Redis failure")
	}
	// Redis unreachable from the start: still no failed call.
	dead := redis.NewClient(&redis.Options{Addr: r.addr, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer dead.Close()
	if _, err := source(t, iss, New(dead), nil).Token(); err != nil {
		t.Fatal(err)
	}
}

func TestSlowRedisIsBounded(t *testing.T) {
	// A listener that accepts and never answers, like a hung Redis.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	iss := issuer(t)
	rdb := redis.NewClient(&redis.Options{Addr: l.Addr().String(), MaxRetries: -1})
	defer rdb.Close()
	start := time.Now()
	if _, err := source(t, iss, New(rdb, WithTimeout(100*time.Millisecond)), nil).Token(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("a hung Redis delayed the token by %v", d)
	}
}

func TestEncryption(t *testing.T) {
	r := startRedis(t)
	iss := issuer(t)
	rdb := r.client(t)
	key := bytes.Repeat([]byte{7}, 32)
	a := source(t, iss, New(rdb, WithEncryptionKey(key)), nil)
	tok, err := a.Token()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	keys, _ := rdb.Keys(ctx, "*").Result()
	for _, k := range keys {
		v, _ := rdb.Get(ctx, k).Bytes()
		if bytes.Contains(v, []byte(tok.AccessToken)) || bytes.Contains(v, []byte(tok.AccessToken[:20])) || bytes.Contains(v, []byte("fleet-secret")) {
			t.Fatalf("%s holds the token or secret in the clear", k)
		}
	}
	// Same key: adopted. Wrong key: a miss and a fetch, never an error.
	if b, _ := source(t, iss, New(rdb, WithEncryptionKey(key)), nil).Token(); b.AccessToken != tok.AccessToken {
		t.Fatal("same key did not share the token")
	}
	var logs syncBuffer
	wrong := New(rdb, WithEncryptionKey(bytes.Repeat([]byte{8}, 32)), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if c, err := source(t, iss, wrong, nil).Token(); err != nil || c.AccessToken == tok.AccessToken {
		t.Fatalf("wrong key: %v %v", c, err)
	}
	if !strings.Contains(logs.String(), "does not decrypt") {
		t.Errorf("wrong key not logged: %s", logs.String())
	}
	// Rotation: new key, old one for decryption.
	rotated := New(rdb, WithEncryptionKey(bytes.Repeat([]byte{9}, 32)), WithDecryptionKeys(bytes.Repeat([]byte{8}, 32)))
	e, err := rotated.Get(ctx, a.CacheKey())
	if err != nil || e == nil {
		t.Fatalf("old key did not decrypt during rotation: %v", err)
	}
	// A value moved to another key does not open.
	v, _ := rdb.Get(ctx, "m2mtoken:{"+a.CacheKey()+"}").Bytes()
	rdb.Set(ctx, "m2mtoken:{other}", v, time.Minute)
	if e, err := New(rdb, WithEncryptionKey(bytes.Repeat([]byte{8}, 32))).Get(ctx, "other"); e != nil || err == nil {
		t.Fatal("a value moved to another key opened")
	}
	if New(rdb, WithEncryptionKey([]byte("short"))).Err() == nil {
		t.Fatal("short key accepted")
	}
}

func TestPrefixIsolation(t *testing.T) {
	r := startRedis(t)
	iss := issuer(t)
	a := source(t, iss, New(r.client(t), WithPrefix("app-a:")), nil)
	b := source(t, iss, New(r.client(t), WithPrefix("app-b:")), nil)
	ta, _ := a.Token()
	tb, _ := b.Token()
	if ta.AccessToken == tb.AccessToken || iss.TokensIssued("fleet") != 2 {
		t.Fatal("prefixes shared a token")
	}
	keys, _ := r.client(t).Keys(context.Background(), "*").Result()
	for _, k := range keys {
		if !strings.HasPrefix(k, "app-a:") && !strings.HasPrefix(k, "app-b:") {
			t.Errorf("key %q outside the prefixes", k)
		}
	}
}

func TestCorruptValues(t *testing.T) {
	r := startRedis(t)
	iss := issuer(t)
	rdb := r.client(t)
	ctx := context.Background()
	for i, garbage := range []string{"garbage", `{"v":1}`, `{"v":1,"entry":{"access_token":""}}`, `{"v":2,"entry":{}}`, "\xff\xfe", strings.Repeat("x", 2<<20)} {
		s := source(t, iss, New(rdb), nil)
		rdb.Set(ctx, "m2mtoken:{"+s.CacheKey()+"}", garbage, time.Minute)
		tok, err := s.Token()
		if err != nil || tok.AccessToken == "" {
			t.Fatalf("garbage %d: %v %v", i, tok, err)
		}
		if e, err := New(rdb).Get(ctx, s.CacheKey()); err != nil || e.AccessToken != tok.AccessToken {
			t.Fatalf("garbage %d not replaced: %v", i, err)
		}
	}
	if n := iss.TokensIssued("fleet"); n != 6 {
		t.Fatalf("%d tokens issued, want one per corrupt value", n)
	}
}

func TestEntriesExpireWithToken(t *testing.T) {
	r := startRedis(t)
	iss := issuer(t)
	iss.SetTokenLifetime(time.Hour)
	rdb := r.client(t)
	s := source(t, iss, New(rdb), nil)
	s.Token()
	ttl, _ := rdb.PTTL(context.Background(), "m2mtoken:{"+s.CacheKey()+"}").Result()
	if ttl < 59*time.Minute || ttl > time.Hour {
		t.Fatalf("PTTL %v, want about an hour", ttl)
	}
}

// TestBoundedPrefersTheAnswer: a call that answered is never reported as
// timed out, however late the caller gets to look. (The call's context was
// once cancelled as soon as the call returned, so a caller scheduled late
// saw both the answer and the deadline, and picked either: under CPU load,
// a fleet lost its lease and its cache.)
func TestBoundedPrefersTheAnswer(t *testing.T) {
	c := New(unreachable(t), WithTimeout(time.Millisecond))
	answered := make(chan struct{})
	// The caller looks only after the call answered and the deadline passed.
	c.beforeWait = func() { <-answered; time.Sleep(5 * time.Millisecond) }
	for i := 0; i < 20; i++ {
		err := c.bounded(context.Background(), func(context.Context) error {
			defer func() { answered <- struct{}{} }()
			return nil
		})
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
}

// TestBoundedReportsWhatEnded tells a slow Redis from a caller that gave up.
func TestBoundedReportsWhatEnded(t *testing.T) {
	c := New(unreachable(t), WithTimeout(20*time.Millisecond))
	block := func(ctx context.Context) error { <-ctx.Done(); time.Sleep(10 * time.Millisecond); return ctx.Err() }
	err := c.bounded(context.Background(), block)
	if err == nil || !strings.Contains(err.Error(), "no answer within 20ms") {
		t.Fatalf("slow Redis: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.bounded(ctx, block); !errors.Is(err, context.Canceled) {
		t.Fatalf("caller gave up: %v, want context.Canceled", err)
	}
}

// unreachable is a client for tests that never reach Redis.
func unreachable(t *testing.T) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { c.Close() })
	return c
}
