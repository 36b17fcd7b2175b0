// Package child is the body of the fleet tests' processes: a service that
// calls a protected API through a TokenSource's Client() as fast as its
// flags say, and reports every call to its parent on stdout.
//
// Lines written to stdout, one per event:
//
//	ready
//	first DURATION_US              the first successful call, token included
//	slow START_MS DURATION_US      a later call that took more than -slow
//	fail START_MS DURATION_US ERROR
//	stats OK FAILED MAX_US         cumulative, every 250 ms
//
// The source's debug log goes to stderr: the parent learns from it when a
// process took the fetch lease.
package child

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/m2mtoken/m2mtoken"
)

// Flags are the options every child takes; the cache is the caller's.
type Flags struct {
	TokenURL, ClientID, Secret, Audience, API string
	Every, CallTimeout, Slow                  time.Duration
	LeaseTTL, RefreshWindow, MaxBackoff       time.Duration
	Callers                                   int
}

// Register adds the flags to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.TokenURL, "token-url", "", "token endpoint")
	fs.StringVar(&f.ClientID, "client-id", "", "client ID")
	fs.StringVar(&f.Secret, "secret", "", "client secret")
	fs.StringVar(&f.Audience, "audience", "", "audience")
	fs.StringVar(&f.API, "api", "", "protected API to call")
	fs.DurationVar(&f.Every, "every", 50*time.Millisecond, "pause between a caller's calls")
	fs.DurationVar(&f.CallTimeout, "call-timeout", 20*time.Second, "timeout of each call")
	fs.DurationVar(&f.Slow, "slow", 100*time.Millisecond, "report calls slower than this")
	fs.DurationVar(&f.LeaseTTL, "lease-ttl", 0, "Config.LeaseTTL")
	fs.DurationVar(&f.RefreshWindow, "refresh-window", 0, "Config.RefreshWindow")
	fs.DurationVar(&f.MaxBackoff, "max-backoff", 0, "Config.MaxBackoff")
	fs.IntVar(&f.Callers, "callers", 2, "concurrent callers")
}

// Run serves calls until the process is killed (or stdin closes, so that
// a child whose parent died does not linger).
func Run(f Flags, cache m2mtoken.Cache) error {
	out := &lines{w: bufio.NewWriter(os.Stdout)}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	src, err := m2mtoken.New(m2mtoken.Config{
		TokenURL: f.TokenURL, ClientID: f.ClientID, ClientSecret: f.Secret, Audience: f.Audience,
		Cache: cache, Logger: log, LeaseTTL: f.LeaseTTL, RefreshWindow: f.RefreshWindow, MaxBackoff: f.MaxBackoff,
	})
	if err != nil {
		return err
	}
	defer src.Close()
	client := src.Client()
	var mu sync.Mutex
	var ok, failed int64
	var maxDur time.Duration
	var firstOnce sync.Once
	call := func(first bool) {
		ctx, cancel := context.WithTimeout(context.Background(), f.CallTimeout)
		defer cancel()
		start := time.Now()
		err := get(ctx, client, f.API)
		d := time.Since(start)
		mu.Lock()
		if err != nil {
			failed++
		} else {
			ok++
		}
		if !first {
			maxDur = max(maxDur, d)
		}
		mu.Unlock()
		switch {
		case err != nil:
			out.printf("fail %d %d %s", start.UnixMilli(), d.Microseconds(), strings.ReplaceAll(err.Error(), "\n", " "))
		case d > f.Slow && !first:
			out.printf("slow %d %d", start.UnixMilli(), d.Microseconds())
		}
		if err == nil {
			firstOnce.Do(func() { out.printf("first %d", d.Microseconds()) })
		}
	}
	out.printf("ready")
	// The first call alone, so that its latency is the first call's. It
	// is reported as "first" only: stall figures are for a process that
	// had a token.
	call(true)
	for i := 0; i < f.Callers; i++ {
		go func() {
			for {
				call(false)
				time.Sleep(f.Every)
			}
		}()
	}
	stdinClosed := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(stdinClosed) }()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			mu.Lock()
			o, fl, m := ok, failed, maxDur
			mu.Unlock()
			out.printf("stats %d %d %d", o, fl, m.Microseconds())
		case <-stdinClosed:
			return nil
		}
	}
}

func get(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("API answered %s", resp.Status)
	}
	return nil
}

// lines writes whole lines, flushed at once, from any goroutine.
type lines struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (l *lines) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format+"\n", args...)
	l.w.Flush()
}
