// Package m2mtokenotel records what an m2mtoken.TokenSource does as
// OpenTelemetry metrics and spans. It is a module of its own
// (github.com/m2mtoken/m2mtoken/m2mtokenotel, named like go-redis's
// redisotel), so that users of the core module never pull in OpenTelemetry.
//
//	obs, err := m2mtokenotel.New() // the global MeterProvider and TracerProvider
//	src, err := m2mtoken.New(m2mtoken.Config{ /* ... */ Observer: obs})
//
// One observer can serve many sources, and every token of an
// m2mtoken.Pool: each source's measurements carry its client ID, audience,
// organization (when it has one) and token URL host. Nothing else
// identifies a source: never a token, a secret or a fingerprint. A pool
// with a token per Auth0 Organization makes the organization a
// high-cardinality attribute: one series per organization.
//
// # Metrics
//
// All in the m2mtoken namespace, with UCUM units:
//
//	m2mtoken.token.requests          counter {request}   HTTP requests to the token endpoint, by outcome (success, failure, nonce_required) and http.response.status_code
//	m2mtoken.fetch.duration          histogram s          fetches, by reason, origin and outcome
//	m2mtoken.tokens                  counter {token}      tokens obtained, by origin (endpoint, cache)
//	m2mtoken.refreshes               counter {refresh}    background refreshes, by outcome
//	m2mtoken.waits                   counter {wait}       callers that found no usable token and waited, by reason and outcome
//	m2mtoken.wait.duration           histogram s          how long they waited, by reason and outcome
//	m2mtoken.invalidations           counter {invalidation}  Invalidate calls with the current token, by m2mtoken.applied
//	m2mtoken.cache.errors            counter {error}      Config.Cache failures, by m2mtoken.cache.operation
//	m2mtoken.token.remaining_lifetime  gauge s            the current token's time to expiry
//	m2mtoken.quota.remaining         gauge {token}        Auth0 quota left, by m2mtoken.quota.scope and m2mtoken.quota.bucket
//	m2mtoken.quota.limit             gauge {token}        Auth0 quota per period, likewise
//	m2mtoken.rate_limit.remaining    gauge {request}      the tenant-wide X-RateLimit-Remaining
//	m2mtoken.pool.tokens             gauge {token}        tokens a pool holds (m2mtoken.Pool's Stats().Tokens), by client and server only
//	m2mtoken.pool.evictions          counter {token}      tokens a pool dropped for Config.MaxTokens, likewise
//	m2mtoken.client_certificate.remaining_validity  gauge s  time until the client certificate (Config.ClientCertFile) expires, likewise
//
// Every measurement has m2mtoken.client_id, m2mtoken.audience,
// m2mtoken.organization (for a token requested for one) and
// server.address (the token URL's host), plus [WithAttributes]; the pool
// instruments have all but the audience and organization.
//
// # Traces
//
// Each fetch is one span, m2mtoken.fetch, with a child span per token
// request (m2mtoken.token_request; an instrumented Config.HTTPClient puts
// its own spans under it). A fetch serves every caller waiting for it, so
// it starts a trace of its own, linked to the span of the caller that
// started it; and each waiting caller whose context has a span gets a
// m2mtoken.wait child span, linked to the fetch.
package m2mtokenotel

import (
	"context"
	"errors"
	"net/url"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/m2mtoken/m2mtoken"
)

// ScopeName is the instrumentation scope of the meter and tracer.
const ScopeName = "github.com/m2mtoken/m2mtoken/m2mtokenotel"

// Attribute keys.
const (
	KeyClientID     = attribute.Key("m2mtoken.client_id")
	KeyAudience     = attribute.Key("m2mtoken.audience")
	KeyOrganization = attribute.Key("m2mtoken.organization")
	KeyServer       = attribute.Key("server.address")
	KeyOutcome      = attribute.Key("m2mtoken.outcome") // success, failure; token requests: nonce_required; waits: canceled
	KeyStatusCode   = attribute.Key("http.response.status_code")
	KeyReason       = attribute.Key("m2mtoken.reason") // first, refresh, expired, invalidated
	KeyOrigin       = attribute.Key("m2mtoken.origin") // endpoint, cache, none
	KeyApplied      = attribute.Key("m2mtoken.applied")
	KeyCacheOp      = attribute.Key("m2mtoken.cache.operation") // get, set, lease, keep_alive, release
	KeyQuotaScope   = attribute.Key("m2mtoken.quota.scope")     // client, organization
	KeyQuotaBucket  = attribute.Key("m2mtoken.quota.bucket")    // per_hour, per_day, ...
	KeyAttempt      = attribute.Key("m2mtoken.attempt")
	KeyAttempts     = attribute.Key("m2mtoken.attempts")
	KeyRetries      = attribute.Key("m2mtoken.retries")
	KeyNonceRetry   = attribute.Key("m2mtoken.nonce_retry")
	KeyNonceRetries = attribute.Key("m2mtoken.nonce_retries")
	KeyQuotaReset   = attribute.Key("m2mtoken.quota.reset")
	KeyTokenExpires = attribute.Key("m2mtoken.token.expiry")
)

// Option configures [New].
type Option func(*config)

type config struct {
	mp    metric.MeterProvider
	tp    trace.TracerProvider
	attrs []attribute.KeyValue
}

// WithMeterProvider sets the MeterProvider; the default is the global one
// (otel.GetMeterProvider).
func WithMeterProvider(mp metric.MeterProvider) Option { return func(c *config) { c.mp = mp } }

// WithTracerProvider sets the TracerProvider; the default is the global
// one (otel.GetTracerProvider).
func WithTracerProvider(tp trace.TracerProvider) Option { return func(c *config) { c.tp = tp } }

// WithAttributes adds attributes to every measurement and span, such as
// the name of the API a source is for. Keep them low-cardinality.
func WithAttributes(attrs ...attribute.KeyValue) Option {
	return func(c *config) { c.attrs = append(c.attrs, attrs...) }
}

// durationBuckets suit token requests: tens of milliseconds when all is
// well, seconds to a minute (the default FetchTimeout) with retries.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// observer holds the instruments and the sources it has seen.
type observer struct {
	cfg    config
	tracer trace.Tracer

	requests, tokens, refreshes, waits, invalidations, cacheErrors metric.Int64Counter
	fetchDuration, waitDuration                                    metric.Float64Histogram
	lifetime, certValidity                                         metric.Float64ObservableGauge
	quotaRemaining, quotaLimit, rateRemaining, poolTokens          metric.Int64ObservableGauge
	poolEvictions                                                  metric.Int64ObservableCounter

	mu      sync.Mutex
	sources map[*m2mtoken.TokenSource]*source
}

// source is what the observer keeps per TokenSource: its attributes.
type source struct {
	attrs []attribute.KeyValue
	set   attribute.Set
}

// New returns an observer to put in m2mtoken.Config.Observer. It creates
// its instruments from the MeterProvider and its spans from the
// TracerProvider (the global ones unless set with options), and returns an
// error if an instrument cannot be created.
//
// The gauges read the Stats of every source the observer has seen, until
// the source is closed.
func New(opts ...Option) (*m2mtoken.Observer, error) {
	o := &observer{sources: map[*m2mtoken.TokenSource]*source{}}
	for _, opt := range opts {
		opt(&o.cfg)
	}
	if o.cfg.mp == nil {
		o.cfg.mp = otel.GetMeterProvider()
	}
	if o.cfg.tp == nil {
		o.cfg.tp = otel.GetTracerProvider()
	}
	o.tracer = o.cfg.tp.Tracer(ScopeName)
	if err := o.instruments(o.cfg.mp.Meter(ScopeName)); err != nil {
		return nil, err
	}
	return &m2mtoken.Observer{
		FetchStart:   o.fetchStart,
		FetchDone:    o.fetchDone,
		AttemptStart: o.attemptStart,
		AttemptDone:  o.attemptDone,
		Wait:         o.wait,
		Invalidate:   o.invalidate,
		CacheError:   o.cacheError,
		Limits:       o.limits,
		Closed:       o.closed,
	}, nil
}

func (o *observer) instruments(m metric.Meter) error {
	var err, e error
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, e := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		err = errors.Join(err, e)
		return c
	}
	histogram := func(name, desc string) metric.Float64Histogram {
		h, e := m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(durationBuckets...))
		err = errors.Join(err, e)
		return h
	}
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		g, e := m.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		err = errors.Join(err, e)
		return g
	}
	o.requests = counter("m2mtoken.token.requests", "{request}", "HTTP requests sent to the token endpoint, retries included.")
	o.tokens = counter("m2mtoken.tokens", "{token}", "Tokens obtained, by origin: the token endpoint, or a cache another holder filled.")
	o.refreshes = counter("m2mtoken.refreshes", "{refresh}", "Background refreshes of a token in its refresh window.")
	o.waits = counter("m2mtoken.waits", "{wait}", "Callers that found no usable token and waited for a fetch.")
	o.invalidations = counter("m2mtoken.invalidations", "{invalidation}", "Invalidations of the current token (an API answered 401).")
	o.cacheErrors = counter("m2mtoken.cache.errors", "{error}", "Failed operations of the configured cache.")
	o.fetchDuration = histogram("m2mtoken.fetch.duration", "Duration of fetches (from the cache or the token endpoint, retries included).")
	o.waitDuration = histogram("m2mtoken.wait.duration", "How long callers waited for a token.")
	o.lifetime, e = m.Float64ObservableGauge("m2mtoken.token.remaining_lifetime", metric.WithUnit("s"),
		metric.WithDescription("Time until the current token expires."))
	err = errors.Join(err, e)
	o.certValidity, e = m.Float64ObservableGauge("m2mtoken.client_certificate.remaining_validity", metric.WithUnit("s"),
		metric.WithDescription("Time until the client certificate (mTLS) expires; renew it before."))
	err = errors.Join(err, e)
	o.quotaRemaining = gauge("m2mtoken.quota.remaining", "{token}", "Tokens left in an Auth0 quota bucket, as of the last answer (the limit once the bucket has reset).")
	o.quotaLimit = gauge("m2mtoken.quota.limit", "{token}", "Tokens an Auth0 quota bucket allows per period.")
	o.rateRemaining = gauge("m2mtoken.rate_limit.remaining", "{request}", "The tenant-wide rate limit's remaining requests (X-RateLimit-Remaining), as of the last answer.")
	o.poolTokens = gauge("m2mtoken.pool.tokens", "{token}", "Tokens an m2mtoken.Pool holds.")
	o.poolEvictions, e = m.Int64ObservableCounter("m2mtoken.pool.evictions", metric.WithUnit("{token}"),
		metric.WithDescription("Tokens an m2mtoken.Pool dropped because it held Config.MaxTokens."))
	err = errors.Join(err, e)
	if err != nil {
		return err
	}
	_, err = m.RegisterCallback(o.observe, o.lifetime, o.certValidity, o.quotaRemaining, o.quotaLimit, o.rateRemaining, o.poolTokens, o.poolEvictions)
	return err
}

// src returns the attributes of s, registering s for the gauges.
func (o *observer) src(s *m2mtoken.TokenSource) *source {
	o.mu.Lock()
	defer o.mu.Unlock()
	if src, ok := o.sources[s]; ok {
		return src
	}
	req := s.Request()
	attrs := []attribute.KeyValue{KeyClientID.String(s.ClientID()), KeyAudience.String(req.Audience)}
	if org := req.Organization; org != "" {
		attrs = append(attrs, KeyOrganization.String(org))
	}
	if u, err := url.Parse(s.TokenURL()); err == nil {
		attrs = append(attrs, KeyServer.String(u.Hostname()))
	}
	attrs = append(attrs, o.cfg.attrs...)
	src := &source{attrs: attrs, set: attribute.NewSet(attrs...)}
	o.sources[s] = src
	return src
}

// with returns the source's attributes and more, as a measurement option.
func (src *source) with(more ...attribute.KeyValue) metric.MeasurementOption {
	if len(more) == 0 {
		return metric.WithAttributeSet(src.set)
	}
	all := make([]attribute.KeyValue, 0, len(src.attrs)+len(more))
	return metric.WithAttributes(append(append(all, src.attrs...), more...)...)
}

func outcome(err error) attribute.KeyValue {
	if err != nil {
		return KeyOutcome.String("failure")
	}
	return KeyOutcome.String("success")
}

func (o *observer) fetchStart(ctx context.Context, info m2mtoken.FetchStartInfo) context.Context {
	src := o.src(info.Source)
	opts := []trace.SpanStartOption{
		trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(src.attrs...), trace.WithAttributes(KeyReason.String(info.Reason.String())),
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		// The caller that started the fetch; the fetch serves others too.
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
	}
	ctx, _ = o.tracer.Start(ctx, "m2mtoken.fetch", opts...)
	return ctx
}

func (o *observer) fetchDone(ctx context.Context, info m2mtoken.FetchDoneInfo) {
	src := o.src(info.Source)
	reason, origin := KeyReason.String(info.Reason.String()), KeyOrigin.String(info.Origin.String())
	o.fetchDuration.Record(ctx, info.Duration.Seconds(), src.with(reason, origin, outcome(info.Err)))
	if info.Err == nil {
		o.tokens.Add(ctx, 1, src.with(origin))
	}
	if info.Reason == m2mtoken.FetchRefresh {
		o.refreshes.Add(ctx, 1, src.with(outcome(info.Err)))
	}
	span := trace.SpanFromContext(ctx)
	// Retries are the attempts after the first that were not the DPoP
	// nonce dance, which the protocol asks for.
	span.SetAttributes(origin, KeyAttempts.Int(info.Attempts), KeyNonceRetries.Int(info.NonceRetries),
		KeyRetries.Int(max(info.Attempts-1-info.NonceRetries, 0)))
	if info.StatusCode != 0 {
		span.SetAttributes(KeyStatusCode.Int(info.StatusCode))
	}
	if info.Err == nil {
		span.SetAttributes(KeyTokenExpires.String(info.Expiry.UTC().Format(time.RFC3339)))
	} else {
		var qe *m2mtoken.QuotaError
		if errors.As(info.Err, &qe) {
			span.SetAttributes(KeyQuotaScope.String(qe.Scope), KeyQuotaBucket.String(qe.Quota.Bucket),
				KeyQuotaReset.String(qe.Quota.Reset.UTC().Format(time.RFC3339)))
		}
		span.RecordError(info.Err)
		span.SetStatus(codes.Error, info.Err.Error())
	}
	span.End()
}

func (o *observer) attemptStart(ctx context.Context, info m2mtoken.AttemptStartInfo) context.Context {
	src := o.src(info.Source)
	ctx, _ = o.tracer.Start(ctx, "m2mtoken.token_request", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(src.attrs...),
		trace.WithAttributes(KeyAttempt.Int(info.Attempt), KeyNonceRetry.Bool(info.NonceRetry),
			attribute.String("http.request.method", "POST")))
	return ctx
}

func (o *observer) attemptDone(ctx context.Context, info m2mtoken.AttemptDoneInfo) {
	src := o.src(info.Source)
	oc := outcome(info.Err)
	if info.NonceRequired {
		oc = KeyOutcome.String("nonce_required") // the protocol, not a failure
	}
	more := []attribute.KeyValue{oc}
	if info.StatusCode != 0 {
		more = append(more, KeyStatusCode.Int(info.StatusCode))
	}
	o.requests.Add(ctx, 1, src.with(more...))
	span := trace.SpanFromContext(ctx)
	if info.StatusCode != 0 {
		span.SetAttributes(KeyStatusCode.Int(info.StatusCode))
	}
	if info.Err != nil && !info.NonceRequired {
		span.RecordError(info.Err)
		span.SetStatus(codes.Error, info.Err.Error())
	}
	span.End()
}

func (o *observer) wait(ctx context.Context, info m2mtoken.WaitInfo) {
	src := o.src(info.Source)
	oc := outcome(info.Err)
	var we *m2mtoken.WaitError
	if errors.As(info.Err, &we) {
		oc = KeyOutcome.String("canceled")
	}
	reason := KeyReason.String(info.Reason.String())
	o.waits.Add(ctx, 1, src.with(reason, oc))
	o.waitDuration.Record(ctx, info.Duration.Seconds(), src.with(reason, oc))
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return // a caller without a span: no orphan span per wait
	}
	end := time.Now()
	opts := []trace.SpanStartOption{trace.WithTimestamp(end.Add(-info.Duration)), trace.WithAttributes(src.attrs...),
		trace.WithAttributes(reason)}
	if info.Fetch != nil {
		if sc := trace.SpanContextFromContext(info.Fetch); sc.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
		}
	}
	_, span := o.tracer.Start(ctx, "m2mtoken.wait", opts...)
	if info.Err != nil {
		span.RecordError(info.Err)
		span.SetStatus(codes.Error, info.Err.Error())
	}
	span.End(trace.WithTimestamp(end))
}

func (o *observer) invalidate(info m2mtoken.InvalidateInfo) {
	o.invalidations.Add(context.Background(), 1, o.src(info.Source).with(KeyApplied.Bool(info.Applied)))
}

func (o *observer) cacheError(info m2mtoken.CacheErrorInfo) {
	o.cacheErrors.Add(context.Background(), 1, o.src(info.Source).with(KeyCacheOp.String(info.Op)))
}

// limits registers the source, so that the gauges report its quotas even
// before its first fetch ends; the values are read from Stats.
func (o *observer) limits(info m2mtoken.LimitsInfo) { o.src(info.Source) }

func (o *observer) closed(info m2mtoken.ClosedInfo) {
	o.mu.Lock()
	delete(o.sources, info.Source)
	o.mu.Unlock()
}

// observe reports the gauges of every source seen and not closed.
func (o *observer) observe(_ context.Context, obs metric.Observer) error {
	o.mu.Lock()
	srcs := make(map[*m2mtoken.TokenSource]*source, len(o.sources))
	for s, src := range o.sources {
		srcs[s] = src
	}
	o.mu.Unlock()
	now := time.Now()
	pools := map[*m2mtoken.Pool]*m2mtoken.TokenSource{}
	for s, src := range srcs {
		pools[s.Pool()] = s
		st := s.Stats()
		if !st.Expiry.IsZero() {
			obs.ObserveFloat64(o.lifetime, max(st.Expiry.Sub(now), 0).Seconds(), metric.WithAttributeSet(src.set))
		}
		if rl := st.RateLimit; rl != nil {
			obs.ObserveInt64(o.rateRemaining, rl.Remaining, metric.WithAttributeSet(src.set))
		}
		if q := st.Quotas; q != nil {
			o.observeQuotas(obs, src, "client", q.Client, now)
			o.observeQuotas(obs, src, "organization", q.Organization, now)
		}
	}
	// Pools of one client and server (two sources from New, say) share
	// their attributes: one observation each, of their sums.
	type poolSum struct {
		set               attribute.Set
		tokens, evictions int64
		certExpiry        time.Time // the soonest, of those that have one
	}
	sums := map[attribute.Distinct]*poolSum{}
	for p, s := range pools {
		st := p.Stats()
		attrs := []attribute.KeyValue{KeyClientID.String(s.ClientID())}
		if u, err := url.Parse(s.TokenURL()); err == nil {
			attrs = append(attrs, KeyServer.String(u.Hostname()))
		}
		set := attribute.NewSet(append(attrs, o.cfg.attrs...)...)
		sum := sums[set.Equivalent()]
		if sum == nil {
			sum = &poolSum{set: set}
			sums[set.Equivalent()] = sum
		}
		sum.tokens += int64(st.Tokens)
		sum.evictions += int64(st.Evictions)
		if e := st.ClientCertificateExpiry; !e.IsZero() && (sum.certExpiry.IsZero() || e.Before(sum.certExpiry)) {
			sum.certExpiry = e
		}
	}
	for _, sum := range sums {
		opt := metric.WithAttributeSet(sum.set)
		obs.ObserveInt64(o.poolTokens, sum.tokens, opt)
		obs.ObserveInt64(o.poolEvictions, sum.evictions, opt)
		if !sum.certExpiry.IsZero() {
			obs.ObserveFloat64(o.certValidity, sum.certExpiry.Sub(now).Seconds(), opt)
		}
	}
	return nil
}

func (o *observer) observeQuotas(obs metric.Observer, src *source, scope string, buckets []m2mtoken.Quota, now time.Time) {
	for _, b := range buckets {
		opt := src.with(KeyQuotaScope.String(scope), KeyQuotaBucket.String(b.Bucket))
		remaining := b.Remaining
		if !now.Before(b.Reset) {
			remaining = b.Limit // the bucket has refilled since
		}
		obs.ObserveInt64(o.quotaRemaining, remaining, opt)
		obs.ObserveInt64(o.quotaLimit, b.Limit, opt)
	}
}
