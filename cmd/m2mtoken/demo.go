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
	dpop         bool
}

func cmdDemo(args []string, stdout, stderr io.Writer) error {
	fs, showVersion := newFlags("demo", `Starts a local Auth0-compatible issuer with short tokens and a slow token
endpoint, and a protected API; drives concurrent callers through the
library's http.Client across several token lifetimes; and prints what
happened. With --compare it runs the same load through x/oauth2's
clientcredentials.Config.Client and prints both side by side. With
AUTH0_DOMAIN, AUTH0_CLIENT_ID, AUTH0_CLIENT_SECRET and AUTH0_AUDIENCE set it
gets its tokens from that tenant instead (each run costs a few M2M tokens).
With --dpop the tokens are DPoP-bound to a fresh P-256 key, and the local
issuer and API require DPoP proofs and nonces: every API call carries a new
proof. Exit status 0 only if no API call through m2mtoken failed.`, stderr)
	var o demoOptions
	fs.IntVar(&o.callers, "callers", 32, "concurrent callers")
	fs.DurationVar(&o.duration, "duration", 15*time.Second, "how long each load runs")
	fs.DurationVar(&o.ttl, "ttl", 4*time.Second, "lifetime of the local issuer's tokens")
	fs.DurationVar(&o.tokenLatency, "token-latency", 250*time.Millisecond, "how long the local token endpoint takes to answer")
	fs.BoolVar(&o.compare, "compare", false, "also run the load through x/oauth2 clientcredentials and compare")
	fs.BoolVar(&o.dpop, "dpop", false, "DPoP-bound tokens: a proof per API call, nonces at the issuer and the API")
	quiet := fs.Bool("quiet", false, "no live progress")
	if ok, err := parse(fs, args, showVersion, stdout); !ok {
		return err
	}
	if o.callers < 1 || o.duration <= 0 || o.ttl < time.Second {
		fmt.Fprintln(stderr, "m2mtoken demo: --callers must be at least 1, --duration positive, --ttl at least 1s")
		return errUsage
	}
	if o.dpop && o.compare {
		fmt.Fprintln(stderr, "m2mtoken demo: --dpop and --compare do not go together: x/oauth2 cannot make DPoP proofs")
		return errUsage
	}
	o.progress = !*quiet

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
	if ours.failed > 0 {
		return fmt.Errorf("%d of %d API calls through m2mtoken failed", ours.failed, ours.calls)
	}
	return nil
}

// target is where the load goes: the token endpoint and the API.
type target struct {
	cfg    m2mtoken.Config
	apiURL string
	remote bool
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
	if d := os.Getenv("AUTH0_DOMAIN"); d != "" {
		cfg := m2mtoken.Config{Domain: d, ClientID: os.Getenv("AUTH0_CLIENT_ID"), ClientSecret: os.Getenv("AUTH0_CLIENT_SECRET"), Audience: os.Getenv("AUTH0_AUDIENCE"), DPoPKey: dpopKey}
		// The tenant's tokens are checked by the tenant; the local API
		// only requires that one is present.
		api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if len(r.Header.Get("Authorization")) < len("Bearer x") {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			ok(w, r)
		}))
		fmt.Fprintf(stdout, "demo against Auth0 tenant %s (audience %s)\n", d, cfg.Audience)
		return target{cfg: cfg, apiURL: api.URL, remote: true}, api.Close, nil
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
	return target{cfg: cfg, apiURL: api.URL}, func() { api.Close(); iss.Close() }, nil
}

type loadResult struct {
	name          string
	calls, failed int64
	tokenRequests int64
	p50, p99, max time.Duration
	waitedRefresh int64 // calls that overlapped a token request after the first token, and took long enough to have waited on it
	waitedFirst   int64 // calls that waited for the first token
	firstFailure  string
}

type span struct{ start, end time.Time }

// countingTransport records the token requests it sends.
type countingTransport struct {
	base     http.RoundTripper
	tokenURL string
	mu       sync.Mutex
	spans    []span
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.String() != c.tokenURL {
		return c.base.RoundTrip(r)
	}
	// The span ends when the headers arrive: the local endpoint's delay
	// comes before them, and its body is small.
	start := time.Now()
	resp, err := c.base.RoundTrip(r)
	c.mu.Lock()
	c.spans = append(c.spans, span{start, time.Now()})
	c.mu.Unlock()
	return resp, err
}

func tunedBase() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost = 256, 100
	return t
}

// runLoad drives o.callers goroutines against the API for o.duration
// through the named implementation.
func runLoad(o demoOptions, tgt target, impl string, stderr io.Writer) (loadResult, error) {
	tokenURL := tgt.cfg.TokenURL
	if tokenURL == "" {
		tokenURL = "https://" + tgt.cfg.Domain + "/oauth/token"
	}
	counter := &countingTransport{base: tunedBase(), tokenURL: tokenURL}
	var client *http.Client
	switch impl {
	case "m2mtoken":
		cfg := tgt.cfg
		cfg.HTTPClient = &http.Client{Transport: counter}
		src, err := m2mtoken.New(cfg)
		if err != nil {
			return loadResult{}, err
		}
		defer src.Close()
		client = &http.Client{Transport: &m2mtoken.Transport{Source: src, Base: tunedBase()}}
	default:
		cc := clientcredentials.Config{
			ClientID: tgt.cfg.ClientID, ClientSecret: tgt.cfg.ClientSecret, TokenURL: tokenURL,
			EndpointParams: url.Values{"audience": {tgt.cfg.Audience}}, AuthStyle: oauth2.AuthStyleInParams,
		}
		// The same tuned transport carries the anchor's API calls; its token
		// requests go through the counter.
		ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: counter})
		src := cc.TokenSource(ctx)
		client = &http.Client{Transport: &oauth2.Transport{Source: src, Base: tunedBase()}}
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
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
loop:
	for {
		select {
		case <-done:
			break loop
		case <-tick.C:
			if o.progress {
				counter.mu.Lock()
				treq := len(counter.spans)
				counter.mu.Unlock()
				fmt.Fprintf(stderr, "\r  %-9s %5.1fs/%v  API calls %8d  failed %d  token requests %d   ",
					impl, time.Since(start).Seconds(), o.duration, calls.Load(), failed.Load(), treq)
			}
		}
	}
	if o.progress {
		fmt.Fprintln(stderr)
	}

	r := loadResult{name: impl, calls: calls.Load(), failed: failed.Load()}
	if p := firstFailure.Load(); p != nil {
		r.firstFailure = *p
	}
	counter.mu.Lock()
	spans := slices.Clone(counter.spans)
	counter.mu.Unlock()
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
	for _, r := range rs {
		if r.firstFailure != "" {
			fmt.Fprintf(w, "  first failure through %s: %s\n", r.name, r.firstFailure)
		}
	}
	if !tgt.remote {
		cycles := float64(o.duration) / float64(o.ttl)
		fmt.Fprintf(w, "\n  %.1f token lifetimes ran. A call 'waited on refresh' if it overlapped a token request after the\n  first token and took at least half as long as the fastest token request.\n", cycles)
		if o.compare && o.ttl <= 10*time.Second {
			fmt.Fprintln(w, "  Note: x/oauth2 treats a token as expired 10 s before its expiry, so with tokens of 10 s or less\n  it fetches a new token for every call, one caller at a time.")
		}
	}
}
