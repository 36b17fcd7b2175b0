package rediscache

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/internal/fleet"
)

var _ m2mtoken.Leaser = (*Cache)(nil)

// TestLeaseKeepAndInfo: a held lease is extended by its holder alone, says
// how old it is, how long it has left and what its holder reported, and
// a holder whose lease lapsed can neither keep nor release the next one.
func TestLeaseKeepAndInfo(t *testing.T) {
	r := startRedis(t)
	rdb := r.client(t)
	c := New(rdb)
	ctx := context.Background()
	l, ok, err := c.Lease(ctx, "k", 300*time.Millisecond)
	if !ok || err != nil {
		t.Fatal(ok, err)
	}
	if _, ok, _ := c.Lease(ctx, "k", time.Second); ok {
		t.Fatal("a second lease granted while the first is held")
	}
	time.Sleep(150 * time.Millisecond)
	if held, err := l.Keep(ctx, 2*time.Second, "token request failed: EOF"); !held || err != nil {
		t.Fatalf("keep: %v %v", held, err)
	}
	info, err := c.LeaseInfo(ctx, "k")
	if err != nil || info == nil {
		t.Fatal(info, err)
	}
	if info.Remaining < time.Second || info.Age < 100*time.Millisecond || info.Age > 10*time.Second || info.Status != "token request failed: EOF" {
		t.Fatalf("info %+v", info)
	}
	// It lapses; another holder takes it; the first can no longer keep or
	// release it.
	rdb.PExpire(ctx, "m2mtoken:{k}:lease", time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	l2, ok, _ := c.Lease(ctx, "k", time.Minute)
	if !ok {
		t.Fatal("lease not granted after it lapsed")
	}
	if held, err := l.Keep(ctx, time.Minute, "late"); held || err != nil {
		t.Fatalf("a lapsed holder kept the next one's lease: %v %v", held, err)
	}
	l.Release(ctx)
	if info, _ := c.LeaseInfo(ctx, "k"); info == nil || info.Status != "" {
		t.Fatalf("a lapsed holder touched the next one's lease: %+v", info)
	}
	l2.Release(ctx)
	if info, err := c.LeaseInfo(ctx, "k"); info != nil || err != nil {
		t.Fatalf("released lease still reported: %+v %v", info, err)
	}
	// A value this package did not write is reported, without age.
	rdb.Set(ctx, "m2mtoken:{k}:lease", "someone-else", time.Minute)
	if info, err := c.LeaseInfo(ctx, "k"); err != nil || info == nil || info.Age != 0 || info.Remaining < 50*time.Second {
		t.Fatalf("foreign lease: %+v %v", info, err)
	}
}

// TestUncertainLeaseIsReleased: a SET NX whose answer comes after the
// cache's timeout may still have taken the lease. It must not stay held
// by nobody: once the answer is in, the lease is deleted (it was once
// left for its whole TTL, and the fleet waited on it).
func TestUncertainLeaseIsReleased(t *testing.T) {
	r := startRedis(t)
	p, err := fleet.NewProxy(r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	slow := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1})
	defer slow.Close()
	slow.Ping(context.Background()) // one connection, before the delay
	p.SetDelay(150 * time.Millisecond)
	c := New(slow, WithTimeout(50*time.Millisecond))
	_, ok, err := c.Lease(context.Background(), "k", time.Minute)
	if ok || err == nil || !strings.Contains(err.Error(), "no answer within") {
		t.Fatalf("got %v %v, want a timeout", ok, err)
	}
	direct := r.client(t)
	// The SET lands (about 150 ms on), then must be undone.
	deadline := time.Now().Add(5 * time.Second)
	for n := int64(0); n == 0; n, _ = direct.Exists(context.Background(), "m2mtoken:{k}:lease").Result() {
		if time.Now().After(deadline) {
			t.Fatal("the delayed SET NX never landed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for {
		n, _ := direct.Exists(context.Background(), "m2mtoken:{k}:lease").Result()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			ttl, _ := direct.PTTL(context.Background(), "m2mtoken:{k}:lease").Result()
			t.Fatalf("the lease a timed-out SET NX took is still held (%v left)", ttl)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Had the SET NX answered "taken by another", nothing is deleted.
	p.SetDelay(0)
	other, _, _ := New(direct).Lease(context.Background(), "k", time.Minute)
	p.SetDelay(150 * time.Millisecond)
	if _, ok, err := c.Lease(context.Background(), "k", time.Minute); ok || err == nil {
		t.Fatal(ok, err)
	}
	time.Sleep(500 * time.Millisecond)
	if n, _ := direct.Exists(context.Background(), "m2mtoken:{k}:lease").Result(); n != 1 {
		t.Fatal("another holder's lease was deleted")
	}
	other.Release(context.Background())
}
