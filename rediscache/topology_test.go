package rediscache

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
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
	var wg sync.WaitGroup
	for _, s := range srcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Token(); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	return iss.TokensIssued("fleet")
}

// TestCluster runs the cold-start fleet on a 3-node Redis Cluster: every
// command the cache sends touches one key, so it works whatever slot the
// entry and its lease hash to.
func TestCluster(t *testing.T) {
	cli := requireProgram(t, "redis-cli")
	var addrs []string
	for i := 0; i < 3; i++ {
		addrs = append(addrs, startRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000").addr)
	}
	out, err := exec.Command(cli, append([]string{"--cluster", "create"}, append(addrs, "--cluster-yes")...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	// Every node must agree the cluster is up, and a cluster client must
	// reach every shard, before the fleet starts: a CLUSTERDOWN answer
	// makes a source fetch without the lease, as it should.
	for _, a := range addrs {
		probe := redis.NewClient(&redis.Options{Addr: a})
		waitFor(t, "cluster_state:ok on "+a, &syncBuffer{}, func() bool {
			info, _ := probe.ClusterInfo(context.Background()).Result()
			return strings.Contains(info, "cluster_state:ok")
		})
		probe.Close()
	}
	warm := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer warm.Close()
	waitFor(t, "every shard to answer", &syncBuffer{}, func() bool {
		ctx := context.Background()
		for i := 0; i < 32; i++ {
			if warm.Set(ctx, fmt.Sprintf("warm-%d", i), "x", time.Minute).Err() != nil {
				return false
			}
		}
		return warm.ForEachShard(ctx, func(ctx context.Context, c *redis.Client) error { return c.Ping(ctx).Err() }) == nil
	})
	n := fleetOnce(t, 8, func() redis.UniversalClient { return redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs}) })
	if n != 1 {
		t.Fatalf("fleet of 8 on a cluster made %d token requests, want 1", n)
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
