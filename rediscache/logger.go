package rediscache

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// RedisLogger routes go-redis's own log lines (its connection pool's dial
// failures during a Redis outage, for one) into a [*slog.Logger], instead
// of the standard error that go-redis writes them to by default. Create it
// with [Logger] and install it with redis.SetLogger:
//
//	redis.SetLogger(rediscache.Logger(logger))
//
// go-redis's logger is one for the whole process, so installing it is the
// program's decision: this package never calls redis.SetLogger itself.
type RedisLogger struct {
	log   *slog.Logger
	level slog.Level
}

// Logger returns a RedisLogger that writes go-redis's lines to l at level
// Warn (they report failures), with the attribute component=go-redis and
// without go-redis's own "redis: " prefix. A nil l discards them.
func Logger(l *slog.Logger) *RedisLogger {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return &RedisLogger{log: l.With(slog.String("component", "go-redis")), level: slog.LevelWarn}
}

// WithLevel returns a copy of r that logs at level.
func (r *RedisLogger) WithLevel(level slog.Level) *RedisLogger {
	c := *r
	c.level = level
	return &c
}

// Printf is the method go-redis calls (its internal.Logging interface).
func (r *RedisLogger) Printf(ctx context.Context, format string, v ...any) {
	if !r.log.Enabled(ctx, r.level) {
		return
	}
	msg := strings.TrimSpace(strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: "))
	r.log.Log(ctx, r.level, msg)
}
