package rediscache

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestLogger: go-redis's lines arrive in the user's slog, as warnings with
// component=go-redis, without go-redis's prefix. (The fleet tests install
// it with redis.SetLogger in real processes and check their output during
// a Redis outage; this test leaves the process-wide logger alone.)
func TestLogger(t *testing.T) {
	var buf syncBuffer
	l := Logger(slog.New(slog.NewJSONHandler(&buf, nil)))
	_ = func() { redis.SetLogger(l) } // compiles: what users call with it
	l.Printf(context.Background(), "redis: connection pool: failed to dial after %d attempts: %v", 5, "connection refused")
	var rec map[string]any
	if err := json.Unmarshal([]byte(buf.String()), &rec); err != nil {
		t.Fatalf("%v: %q", err, buf.String())
	}
	if rec["level"] != "WARN" || rec["component"] != "go-redis" || rec["msg"] != "connection pool: failed to dial after 5 attempts: connection refused" {
		t.Fatalf("record %v", rec)
	}
	var quiet syncBuffer
	Logger(slog.New(slog.NewJSONHandler(&quiet, &slog.HandlerOptions{Level: slog.LevelError}))).Printf(context.Background(), "x")
	if quiet.String() != "" {
		t.Fatalf("a warning passed an error-level handler: %q", quiet.String())
	}
	Logger(nil).WithLevel(slog.LevelInfo).Printf(context.Background(), "discarded") // no panic
}
