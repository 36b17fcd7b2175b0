package rediscache

import (
	"strings"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/fleet"
)

// TestFleetClusterMasterKilled: 8 processes, each with its own
// ClusterClient, share a real 3-master Redis Cluster (no replicas); the
// master that serves the token's slot is killed with SIGKILL and, some
// lifetimes later, restarted (empty: nothing is persisted). While it is
// down it refuses the fleet's keys, and once the others mark it failed the
// whole cluster refuses every key. Goals: no failed call; the "cache get failed" warning once
// per process and outage, and a line with its count when the outage ends;
// about one token request per lifetime again within two lifetimes of the
// restart. M2MTOKEN_SOAK=1 runs it longer (README, Reliability).
func TestFleetClusterMasterKilled(t *testing.T) {
	env := newFleetEnvNoRedis(t)
	life, steady, down := 4*time.Second, 8*time.Second, 8*time.Second
	if fleet.Soak() {
		life, steady, down = 10*time.Second, 60*time.Second, 60*time.Second
	}
	env.iss.SetTokenLifetime(life)
	env.iss.SetLatency(100 * time.Millisecond)
	// A node timeout of 2 s (Redis's default is 15 s) makes the cluster
	// mark the dead master failed, and refuse every key, within the test.
	c := startCluster(t, 3, 2*time.Second)
	probe := New(nil)
	owner, leaseOwner := c.owner(t, probe.entryKey(env.key)), c.owner(t, probe.leaseKey(env.key))
	t.Logf("the token's key is served by %s, its lease's by %s", owner.addr, leaseOwner.addr)

	f := env.fleet(t, strings.Join(c.addrs, ","), "-call-timeout", "2s", "-every", "10ms", "-callers", "4")
	for i := 0; i < 8; i++ {
		f.Start()
	}
	f.Warm(t)
	ph := newPhases(f, env.iss)
	time.Sleep(steady)
	before := ph.mark("before")

	owner.stop()
	time.Sleep(down)
	ph.mark("master killed")

	owner.start(t)
	restarted := time.Now()
	c.waitOK(t)
	clusterOK := time.Since(restarted)
	time.Sleep(time.Until(restarted.Add(2 * life)))
	ph.mark("2 lifetimes after")
	time.Sleep(steady)
	after := ph.mark("after")

	r := f.Report()
	ph.log(t, life)
	warned, mostWarned := f.Logged("cache get failed")
	ended, _ := f.Logged("cache get works again")
	t.Logf("cluster ok %v after the restart; %d calls, %d failed, longest call %v, %d tokens issued; %q logged %d times (at most %d by one process), %q %d times; go-redis lines: %d through slog, %d raw",
		clusterOK.Round(time.Millisecond), r.Calls, r.Failed, r.MaxCall.Round(time.Millisecond), env.iss.TokensIssued("fleet"),
		"cache get failed", warned, mostWarned, "cache get works again", ended, r.Routed, r.RedisRaw)
	if r.Failed != 0 {
		t.Errorf("%d of %d calls failed: %v", r.Failed, r.Calls, r.Failures)
	}
	if r.RedisRaw != 0 {
		t.Errorf("go-redis wrote %d lines to stderr itself", r.RedisRaw)
	}
	// About one token request per lifetime before the kill, and again from
	// two lifetimes after the restart.
	before.onePerCycle(t, life)
	after.onePerCycle(t, life)
	// Once per outage: the restarted master may refuse once more while the
	// cluster agrees that it is back.
	if mostWarned > 2 {
		t.Errorf("a process logged %q %d times in one outage; want once, and its count when it ends", "cache get failed", mostWarned)
	}
	if n := env.api.Unauthenticated.Load() + env.api.Rejected.Load(); n != 0 {
		t.Errorf("%d API requests without a valid token", n)
	}
}
