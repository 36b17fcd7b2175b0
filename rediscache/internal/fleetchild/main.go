// Command fleetchild is a process of the Redis fleet tests: see package
// child in the m2mtoken module. Not for use outside the tests.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/m2mtoken/m2mtoken/internal/fleet/child"
	"github.com/m2mtoken/m2mtoken/rediscache"
)

func main() {
	var f child.Flags
	f.Register(flag.CommandLine)
	addr := flag.String("redis", "", "Redis address, or a Redis Cluster's node addresses separated by commas")
	timeout := flag.Duration("redis-timeout", 0, "rediscache.WithTimeout (0: its default)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	redis.SetLogger(rediscache.Logger(log))
	var rdb redis.UniversalClient = redis.NewClient(&redis.Options{Addr: *addr, DialTimeout: 250 * time.Millisecond})
	if strings.Contains(*addr, ",") {
		rdb.Close()
		rdb = redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(*addr, ","), DialTimeout: 250 * time.Millisecond})
	}
	defer rdb.Close()
	opts := []rediscache.Option{rediscache.WithLogger(log)}
	if *timeout > 0 {
		opts = append(opts, rediscache.WithTimeout(*timeout))
	}
	if err := child.Run(f, rediscache.New(rdb, opts...)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
