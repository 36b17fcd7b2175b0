package rediscache

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/m2mtoken/m2mtoken"
)

// fleetOnce starts n sources on clients from newClient together and
// reports how many tokens the issuer gave out.
func fleetOnce(t *testing.T, n int, newClient func() redis.UniversalClient) int {
	iss := issuer(t)
	iss.SetLatency(200 * time.Millisecond)
	logs := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sources' log:\n%s", logs.String())
		}
	})
	var srcs []*m2mtoken.TokenSource
	for i := 0; i < n; i++ {
		rdb := newClient()
		t.Cleanup(func() { rdb.Close() })
		srcs = append(srcs, source(t, iss, New(rdb, WithTimeout(time.Second)), slog.New(slog.NewTextHandler(logs, nil))))
	}
	tokenAll(t, srcs, 0)
	return iss.TokensIssued("fleet")
}

// TestCluster runs the cold-start fleet on a 3-master Redis Cluster, and
// checks that a token's entry and its lease share a slot, whatever the
// prefix: a master that dies takes both (see keys.go).
func TestCluster(t *testing.T) {
	c := startCluster(t, 3, 2*time.Second)
	n := fleetOnce(t, 8, func() redis.UniversalClient { return c.client() })
	if n != 1 {
		t.Fatalf("fleet of 8 on a cluster made %d token requests, want 1", n)
	}
	cc := c.client()
	defer cc.Close()
	ctx := context.Background()
	for _, prefix := range []string{"m2mtoken:", "", "{app}:", "a{b:", "a}b{:"} {
		for _, key := range []string{"m2mtoken-09c207802d7fc06ca7dfccf54d4f49a8", "k", "a}b"} {
			cache := New(cc, WithPrefix(prefix))
			es, err1 := cc.ClusterKeySlot(ctx, cache.entryKey(key)).Result()
			ls, err2 := cc.ClusterKeySlot(ctx, cache.leaseKey(key)).Result()
			if err1 != nil || err2 != nil || es != ls {
				t.Errorf("prefix %q, key %q: entry %s in slot %d, lease %s in slot %d (%v, %v)",
					prefix, key, cache.entryKey(key), es, cache.leaseKey(key), ls, err1, err2)
			}
		}
	}
}

// TestSentinel runs the cold-start fleet through Sentinel failover clients.
func TestSentinel(t *testing.T) {
	master := startRedis(t)
	sport := freePort(t)
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("port %d\nbind 127.0.0.1\nsentinel monitor m2m 127.0.0.1 %d 1\nsentinel down-after-milliseconds m2m 5000\n", sport, master.port)), 0o600)
	sc := redis.NewSentinelClient(&redis.Options{Addr: addr(sport)})
	defer sc.Close()
	launch(t, "sentinel", func() bool {
		a, err := sc.GetMasterAddrByName(context.Background(), "m2m").Result()
		return err == nil && len(a) == 2
	}, "redis-server", conf, "--sentinel")
	n := fleetOnce(t, 8, func() redis.UniversalClient {
		return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "m2m", SentinelAddrs: []string{addr(sport)}})
	})
	if n != 1 {
		t.Fatalf("fleet of 8 through Sentinel made %d token requests, want 1", n)
	}
}
