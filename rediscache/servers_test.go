package rediscache

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is a throwaway redis-server on a free loopback port.
type redisServer struct {
	port int
	addr string
	dir  string   // its working directory, kept across a restart (a cluster node's nodes.conf)
	args []string // its extra arguments, kept across a restart
	stop func()   // kills the server early (SIGKILL); cleanup does it anyway
}

// startRedis starts a redis-server with extra arguments, in its own
// directory on a free loopback port, and waits until it answers. It skips
// the test if redis-server is not installed (and fails instead when CI is
// set, where the Redis tests must run).
func startRedis(t testing.TB, args ...string) *redisServer {
	t.Helper()
	s := &redisServer{port: freePort(t), dir: t.TempDir(), args: args}
	s.addr = addr(s.port)
	s.start(t)
	return s
}

// start starts the server on its port and in its directory, as after a
// stop.
func (s *redisServer) start(t testing.TB) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.addr})
	defer rdb.Close()
	s.stop = launch(t, "redis-server on "+s.addr, func() bool { return rdb.Ping(context.Background()).Err() == nil },
		"redis-server", append([]string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", s.dir}, s.args...)...)
}

func (s *redisServer) client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	return c
}

// launch starts the program name (see requireProgram) with args, kills it
// at cleanup, and waits until ready holds. It returns a function that
// kills the program early.
func launch(t testing.TB, what string, ready func() bool, name string, args ...string) func() {
	t.Helper()
	cmd := exec.Command(requireProgram(t, name), args...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	var once sync.Once
	stop := func() { once.Do(func() { cmd.Process.Kill(); cmd.Wait() }) }
	t.Cleanup(stop)
	waitFor(t, what, out, ready)
	return stop
}

// requireProgram returns the path of the program name, or skips the test
// if it is not on PATH (and fails instead when CI is set).
func requireProgram(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not on PATH, and CI is set: the Redis tests must run (apt-get install -y redis-server)", name)
		}
		t.Skipf("%s is not on PATH: skipping the Redis tests (apt-get install -y redis-server to run them)", name)
	}
	return path
}

// waitFor polls ok for up to 20 s; on failure it shows the server's output.
func waitFor(t testing.TB, what string, out *syncBuffer, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s:\n%s", what, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// syncBuffer is a bytes.Buffer safe for concurrent writers: a server's
// output, or a logger's.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// redisCluster is a Redis Cluster of throwaway masters on loopback, with
// no replicas.
type redisCluster struct {
	nodes []*redisServer
	addrs []string
}

// startCluster starts masters cluster-enabled redis-servers, makes them a
// cluster (redis-cli --cluster create), and waits until it serves every
// slot. nodeTimeout is cluster-node-timeout: how long a node may be
// unreachable before the others mark it failed (and, with no replica to
// promote, the cluster refuses every key).
func startCluster(t testing.TB, masters int, nodeTimeout time.Duration) *redisCluster {
	t.Helper()
	cli := requireProgram(t, "redis-cli")
	c := &redisCluster{}
	for i := 0; i < masters; i++ {
		s := startRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.FormatInt(nodeTimeout.Milliseconds(), 10))
		c.nodes, c.addrs = append(c.nodes, s), append(c.addrs, s.addr)
	}
	out, err := exec.Command(cli, append(append([]string{"--cluster", "create"}, c.addrs...), "--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.waitOK(t)
	return c
}

// waitOK waits until every node says cluster_state:ok and a cluster client
// reaches every shard: before that, a CLUSTERDOWN answer makes a source
// fetch without the lease, as it should.
func (c *redisCluster) waitOK(t testing.TB) {
	t.Helper()
	for _, a := range c.addrs {
		probe := redis.NewClient(&redis.Options{Addr: a})
		waitFor(t, "cluster_state:ok on "+a, &syncBuffer{}, func() bool {
			info, _ := probe.ClusterInfo(context.Background()).Result()
			return strings.Contains(info, "cluster_state:ok")
		})
		probe.Close()
	}
	cc := c.client()
	defer cc.Close()
	waitFor(t, "every shard to answer", &syncBuffer{}, func() bool {
		ctx := context.Background()
		for i := 0; i < 32; i++ {
			if cc.Set(ctx, fmt.Sprintf("warm-%d", i), "x", time.Minute).Err() != nil {
				return false
			}
		}
		return cc.ForEachShard(ctx, func(ctx context.Context, c *redis.Client) error { return c.Ping(ctx).Err() }) == nil
	})
}

func (c *redisCluster) client() *redis.ClusterClient {
	return redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.addrs, DialTimeout: 200 * time.Millisecond})
}

// owner returns the master that serves rkey's slot.
func (c *redisCluster) owner(t testing.TB, rkey string) *redisServer {
	t.Helper()
	cc := c.client()
	defer cc.Close()
	m, err := cc.MasterForKey(context.Background(), rkey)
	if err != nil {
		t.Fatalf("the master for %s: %v", rkey, err)
	}
	for _, s := range c.nodes {
		if s.addr == m.Options().Addr {
			return s
		}
	}
	t.Fatalf("the master for %s is %s, not one of %v", rkey, m.Options().Addr, c.addrs)
	return nil
}
