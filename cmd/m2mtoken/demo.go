package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

const demoAudience = "https://api.demo.local/"

type demoOptions struct {
	callers      int
	duration     time.Duration
	ttl          time.Duration
	tokenLatency time.Duration
	compare      bool
	progress     bool
	terminal     bool          // stderr is a terminal: redraw the progress line in place
	plainEvery   time.Duration // otherwise, print a line this often
	dpop         bool
}

func cmdDemo(args []string, stdout, stderr io.Writer) error {
	c := newFlags("demo", `Starts a local Auth0-compatible issuer with short tokens and a slow token
endpoint, and a protected API; drives concurrent callers through the
library's http.Client across several token lifetimes; and prints what
happened. With --compare it runs the same load through x/oauth2's
clientcredentials.Config.Client and prints both side by side. With
AUTH0_DOMAIN (or M2MTOKEN_TOKEN_URL), AUTH0_CLIENT_ID, AUTH0_CLIENT_SECRET and
AUTH0_AUDIENCE set (the variables m2mtoken.ConfigFromEnv reads) it gets its
tokens from that server instead (on Auth0 each run costs a few M2M tokens).
With --dpop the tokens are DPoP-bound to a fresh P-256 key, and the local
issuer and API require DPoP proofs and nonces: every API call carries a new
proof. Exit status 0 only if no API call through m2mtoken failed.`)
	fs := c.fs
	var o demoOptions
	fs.IntVar(&o.callers, "callers", 32, "concurrent callers")
	fs.DurationVar(&o.duration, "duration", 15*time.Second, "how long each load runs")
	fs.DurationVar(&o.ttl, "ttl", 4*time.Second, "lifetime of the local issuer's tokens")
	fs.DurationVar(&o.tokenLatency, "token-latency", 250*time.Millisecond, "how long the local token endpoint takes to answer")
	fs.BoolVar(&o.compare, "compare", false, "also run the load through x/oauth2 clientcredentials and compare")
	fs.BoolVar(&o.dpop, "dpop", false, "DPoP-bound tokens: a proof per API call, nonces at the issuer and the API")
	quiet := fs.Bool("quiet", false, "no live progress")
	fs.DurationVar(&o.plainEvery, "progress-every", 5*time.Second, "when stderr is not a terminal (a log, a pipe), print a progress line this often")
	if ok, err := c.parse(args, stdout, stderr); !ok {
		return err
	}
	if o.callers < 1 || o.duration <= 0 || o.ttl < time.Second || o.plainEvery <= 0 {
		return c.usageError(stderr, "--callers must be at least 1, --duration and --progress-every positive, --ttl at least 1s")
	}
	if o.dpop && o.compare {
		return c.usageError(stderr, "--dpop and --compare do not go together: x/oauth2 cannot make DPoP proofs")
	}
	o.progress = !*quiet
	o.terminal = isTerminal(stderr)

	tgt, cleanup, err := demoTarget(o, stdout)
	if err != nil {
		return err
	}
	defer cleanup()

	results := []loadResult{}
	ours, err := runLoad(o, tgt, "m2mtoken", stderr)
	if err != nil {
		return err
	}
	results = append(results, ours)
	if o.compare {
		anchor, err := runLoad(o, tgt, "x/oauth2", stderr)
		if err != nil {
			return err
		}
		results = append(results, anchor)
	}
	printResults(stdout, o, tgt, results)
	return demoFailed(ours, tgt.remote, os.Getenv)
}

// demoFailed is the demo's error if any API call through m2mtoken failed.
// Against a server named in the environment it says which variable named
// it: the variables may be left over from a 'm2mtoken serve' that has
// stopped.
func demoFailed(ours loadResult, remote bool, getenv func(string) string) error {
	if ours.failed == 0 {
		return nil
	}
	if !remote {
		return fmt.Errorf("%d of %d API calls through m2mtoken failed", ours.failed, ours.calls)
	}
	v := "M2MTOKEN_TOKEN_URL"
	if getenv("AUTH0_DOMAIN") != "" {
		v = "AUTH0_DOMAIN"
	}
	return fmt.Errorf("%d of %d API calls through m2mtoken failed; the demo took its endpoint from %s in the environment: unset it to run the demo against its own local issuer",
		ours.failed, ours.calls, v)
}

// target is where the load goes: the token endpoint and the API.
type target struct {
	cfg m2mtoken.Config
	// tokenURL is where the library sends token requests (its normalized
	// URL), for the comparison column too, and for counting them.
	tokenURL string
	apiURL   string
	remote   bool
}

// demoTarget starts the API and, unless AUTH0_* is set, the issuer.
func demoTarget(o demoOptions, stdout io.Writer) (target, func(), error) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	var dpopKey crypto.Signer
	if o.dpop {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return target{}, nil, err
		}
		dpopKey = k
	}
	if os.Getenv("AUTH0_DOMAIN") != "" || os.Getenv("M2MTOKEN_TOKEN_URL") != "" {
		cfg, err := m2mtoken.ConfigFromEnv()
		if err != nil {
			return target{}, nil, err
		}
		if dpopKey != nil {
			cfg.DPoPKey = dpopKey
		}
		tokenURL, err := normalizedTokenURL(cfg)
		if err != nil {
			return target{}, nil, err
		}
		// The tenant's tokens are checked by the tenant; the local API
		// only requires that one is present.
		api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if len(r.Header.Get("Authorization")) < len("Bearer x") {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			ok(w, r)
		}))
		fmt.Fprintf(stdout, "demo against %s (audience %s)\n", tokenURL, cfg.Audience)
		return target{cfg: cfg, tokenURL: tokenURL, apiURL: api.URL, remote: true}, api.Close, nil
	}
	secret := make([]byte, 0, 32)
	secret = fmt.Appendf(secret, "demo-%d", time.Now().UnixNano())
	iss := m2mtest.NewServer(m2mtest.Client{ID: "demo-client", Secret: string(secret), Audiences: []string{demoAudience}, Scopes: []string{"read:messages"}, RequireDPoP: o.dpop})
	iss.SetTokenLifetime(o.ttl)
	iss.SetLatency(o.tokenLatency)
	iss.RequireDPoPNonce(o.dpop, o.dpop)
	api := httptest.NewServer(iss.Protect(demoAudience, []string{"read:messages"}, ok))
	cfg := m2mtoken.Config{TokenURL: iss.TokenURL(), ClientID: "demo-client", ClientSecret: string(secret), Audience: demoAudience, DPoPKey: dpopKey, RequireDPoP: o.dpop}
	fmt.Fprintf(stdout, "demo: %d callers for %v; local issuer with %v tokens answering in %v; protected API checks every token\n",
		o.callers, o.duration, o.ttl, o.tokenLatency)
	if o.dpop {
		fmt.Fprintln(stdout, "demo: DPoP-bound tokens (ES256); the issuer and the API require proofs and their own nonces; every API call carries a new proof")
	}
	tokenURL, err := normalizedTokenURL(cfg)
	if err != nil {
		api.Close()
		iss.Close()
		return target{}, nil, err
	}
	return target{cfg: cfg, tokenURL: tokenURL, apiURL: api.URL}, func() { api.Close(); iss.Close() }, nil
}

// normalizedTokenURL is the URL the library sends cfg's token requests to.
func normalizedTokenURL(cfg m2mtoken.Config) (string, error) {
	src, err := m2mtoken.New(cfg)
	if err != nil {
		return "", err
	}
	defer src.Close()
	return src.TokenURL(), nil
}

type loadResult struct {
	name          string
	calls, failed int64
	tokenRequests int64
	p50, p99, max time.Duration
	// waitedRefresh: for m2mtoken, Stats().Waits, the calls that found no
	// usable token after the first; for x/oauth2, the calls that
	// overlapped a token request after the first token and took long
	// enough to have waited on it (a timing rule: it has no such counter).
	waitedRefresh int64
	waitedFirst   int64 // calls that waited for the first token
	firstFailure  string
}

type span struct{ start, end time.Time }

// runLoad drives o.callers goroutines against the API for o.duration
// through the named implementation.
func runLoad(o demoOptions, tgt target, impl string, stderr io.Writer) (loadResult, error) {
	reqs := &tokenRequests{}
	cfg := tgt.cfg
	if impl == "m2mtoken" {
		cfg.Observer = reqs.observer()
	}
	// A source of each run's own: the library's tokens and client, or
	// (for x/oauth2) a fresh transport like the library's.
	src, err := m2mtoken.New(cfg)
	if err != nil {
		return loadResult{}, err
	}
	defer src.Close()
	client := src.Client()
	if impl != "m2mtoken" {
		base, err := libraryBase(src)
		if err != nil {
			return loadResult{}, err
		}
		cc := clientcredentials.Config{
			ClientID: tgt.cfg.ClientID, ClientSecret: tgt.cfg.ClientSecret, TokenURL: tgt.tokenURL,
			EndpointParams: url.Values{"audience": {tgt.cfg.Audience}}, AuthStyle: oauth2.AuthStyleInParams,
		}
		counter := &countingTransport{base: base, tokenURL: tgt.tokenURL, reqs: reqs}
		ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: counter})
		client = &http.Client{Transport: &oauth2.Transport{Source: cc.TokenSource(ctx), Base: base}}
	}

	var (
		calls, failed atomic.Int64
		mu            sync.Mutex
		all           []span
		firstFailure  atomic.Pointer[string]
		wg            sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(o.duration)
	for i := 0; i < o.callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]span, 0, 4096)
			for time.Now().Before(deadline) {
				t0 := time.Now()
				resp, err := client.Get(tgt.apiURL)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = errors.New(resp.Status)
					}
				}
				local = append(local, span{t0, time.Now()})
				calls.Add(1)
				if err != nil {
					failed.Add(1)
					msg := err.Error()
					firstFailure.CompareAndSwap(nil, &msg)
				}
			}
			mu.Lock()
			all = append(all, local...)
			mu.Unlock()
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	// On a terminal the progress line is redrawn in place; in a log or a
	// pipe, a plain line every few seconds.
	every := 250 * time.Millisecond
	if !o.terminal {
		every = o.plainEvery
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	drawn := false
loop:
	for {
		select {
		case <-done:
			break loop
		case <-tick.C:
			if o.progress {
				reqs.mu.Lock()
				treq := len(reqs.spans)
				reqs.mu.Unlock()
				line := fmt.Sprintf("  %-9s %5.1fs/%v  API calls %8d  failed %d  token requests %d",
					impl, time.Since(start).Seconds(), o.duration, calls.Load(), failed.Load(), treq)
				if o.terminal {
					fmt.Fprintf(stderr, "\r%s   ", line)
					drawn = true
				} else {
					fmt.Fprintln(stderr, line)
				}
			}
		}
	}
	if drawn {
		fmt.Fprintln(stderr)
	}

	r := loadResult{name: impl, calls: calls.Load(), failed: failed.Load()}
	if p := firstFailure.Load(); p != nil {
		r.firstFailure = *p
	}
	reqs.mu.Lock()
	spans := slices.Clone(reqs.spans)
	reqs.mu.Unlock()
	r.tokenRequests = int64(len(spans))
	durs := make([]time.Duration, len(all))
	for i, c := range all {
		durs[i] = c.end.Sub(c.start)
	}
	slices.Sort(durs)
	if n := len(durs); n > 0 {
		r.p50, r.p99, r.max = durs[n/2], durs[n*99/100], durs[n-1]
	}
	r.waitedFirst, r.waitedRefresh = classifyWaits(all, spans)
	if impl == "m2mtoken" {
		// The source knows which calls waited: no timing guess.
		r.waitedRefresh = int64(src.Stats().Waits)
	}
	return r, nil
}

// classifyWaits counts the calls that waited on a token request: calls that
// overlapped one and took at least half as long as the fastest token
// request (the API itself answers in well under a millisecond). Calls that
// started before the first token arrived waited for the first token;
// the others waited on a refresh.
func classifyWaits(calls, tokenReqs []span) (first, refresh int64) {
	if len(tokenReqs) == 0 {
		return 0, 0
	}
	minTok := time.Duration(1<<63 - 1)
	for _, t := range tokenReqs {
		minTok = min(minTok, t.end.Sub(t.start))
	}
	threshold := minTok / 2
	firstEnd := tokenReqs[0].end
	slices.SortFunc(tokenReqs, func(a, b span) int { return a.start.Compare(b.start) })
	for _, c := range calls {
		if c.end.Sub(c.start) < threshold {
			continue
		}
		if c.start.Before(firstEnd) {
			first++
			continue
		}
		for _, t := range tokenReqs {
			if t.start.After(c.end) {
				break
			}
			if t.end.After(c.start) {
				refresh++
				break
			}
		}
	}
	return first, refresh
}

func printResults(w io.Writer, o demoOptions, tgt target, rs []loadResult) {
	fmt.Fprintln(w)
	row := func(label string, f func(loadResult) string) {
		fmt.Fprintf(w, "  %-28s", label)
		for _, r := range rs {
			fmt.Fprintf(w, " %14s", f(r))
		}
		fmt.Fprintln(w)
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
	row("", func(r loadResult) string { return r.name })
	row("API calls", func(r loadResult) string { return fmt.Sprint(r.calls) })
	row("failed calls", func(r loadResult) string { return fmt.Sprint(r.failed) })
	row("token requests", func(r loadResult) string { return fmt.Sprint(r.tokenRequests) })
	row("latency p50", func(r loadResult) string { return ms(r.p50) })
	row("latency p99", func(r loadResult) string { return ms(r.p99) })
	row("latency max", func(r loadResult) string { return ms(r.max) })
	row("calls that waited on refresh", func(r loadResult) string { return fmt.Sprint(r.waitedRefresh) })
	row("calls that waited 1st token", func(r loadResult) string { return fmt.Sprint(r.waitedFirst) })
	fmt.Fprintln(w, "\n  'Waited on refresh', m2mtoken: counted by the source (Stats().Waits), the calls that found no\n  usable token after the first one.")
	if len(rs) > 1 {
		fmt.Fprintln(w, "  x/oauth2 has no such counter: there it is a timing rule, a call that overlapped a token request\n  after the first token and took at least half as long as the fastest token request.")
	}
	for _, r := range rs {
		if r.firstFailure != "" {
			fmt.Fprintf(w, "  first failure through %s: %s\n", r.name, r.firstFailure)
		}
	}
	if !tgt.remote {
		cycles := float64(o.duration) / float64(o.ttl)
		fmt.Fprintf(w, "\n  %.1f token lifetimes ran.\n", cycles)
		if o.compare && o.ttl <= 10*time.Second {
			fmt.Fprintln(w, "  Note: x/oauth2 treats a token as expired 10 s before its expiry, so with tokens of 10 s or less\n  it fetches a new token for every call, one caller at a time.")
		}
	}
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
