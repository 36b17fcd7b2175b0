// Package m2mtoken gives services, jobs and tests an OAuth 2.0
// client-credentials access token that, from the caller's side, never
// expires.
//
// A [TokenSource] fetches a token from Auth0 (or any OAuth 2.0 token
// endpoint), caches it, hands it out with two atomic loads, and refreshes
// it in the background before it expires, so that no caller waits on a
// refresh while a usable token exists. Concurrent callers with no usable token share
// one token request. Failed requests are retried with backoff, honouring
// Retry-After and Auth0's rate-limit headers; a failed refresh keeps serving
// the old token while it lasts. [TokenSource.Client] returns an
// [http.Client] that adds the token to every request and recovers from a
// revoked token.
//
// Auth0 bills and rate-limits machine-to-machine tokens: a source that is
// idle makes no token requests, and [Config.Cache] lets tokens outlive a
// process ([NewFileCache]) or be shared by a fleet (the rediscache module).
//
// Create a source with [New] from a [Config], or from the environment with
// [ConfigFromEnv], which reads the same variables as the m2mtoken command
// (AUTH0_DOMAIN, AUTH0_CLIENT_ID, AUTH0_CLIENT_SECRET, AUTH0_AUDIENCE, ...).
// New validates the configuration, and its [*ConfigError] names the field,
// variable or flag to fix. Use the source as an [oauth2.TokenSource]
// ([TokenSource.Token], [TokenSource.TokenContext]), through
// [TokenSource.Client], or wrap an existing client's transport with
// [Transport].
//
// # Many tokens
//
// One application that calls several APIs, or serves many Auth0
// Organizations, uses a [Pool] ([NewPool]): one client (endpoint,
// credentials, connections, quotas, DPoP key) for a token per
// [TokenRequest], each a [TokenSource] keyed by every field of its request.
// [Pool.Client] and [Pool.Transport] take each request's token from its
// context ([WithTokenRequest]). Errors about the client hold for every
// token; errors about one request for that token alone. [New] is a pool of
// one.
//
// # Refresh model
//
// A token is fresh until its refresh window ([Config.RefreshWindow], by
// default a fifth of its lifetime up to 5 minutes, more for a slow
// endpoint, and widened by
// [Config.RefreshJitter]), then stale: it is still handed out at once, and
// the first caller to see it starts one background refresh. Inside
// [Config.ExpirySkew] before its expiry it is not handed out at all, and
// callers wait for a fetch, each bounded by its own context; the fetch is
// not cancelled with the caller that started it. Timers move a token
// between these states, so [TokenSource.Token] reads no clock and takes no
// lock; after a laptop sleeps or a VM pauses, the wall clock is checked too.
//
// A fetch makes up to [Config.MaxAttempts] requests with exponential
// backoff and full jitter within [Config.FetchTimeout], retrying what may
// pass (a network error, a 5xx, a rate limit); an answer that asking again
// cannot change (a wrong secret, audience or grant) fails at once as a
// [*TokenError] with a hint of what to check, and is remembered for
// [Config.ErrorCacheTTL]. The manual's errors page lists which is which. A
// used-up Auth0 quota fails with a [*QuotaError], and no request is sent
// until it resets.
// [TokenSource.Invalidate] drops a token the API refused, if it is still
// the current one, at most once per [Config.MinInvalidateInterval] (doubled
// while the API keeps refusing the new tokens, up to an hour);
// [TokenSource.Stats] counts requests, refreshes and waits;
// [TokenSource.Close] stops all background work.
//
// # Caches and fleets
//
// [Config.Cache] takes any [Cache]: [NewMemoryCache] for sources in one
// process, [NewFileCache] for scripts and cron jobs on one machine, or the
// rediscache module's cache for a fleet. An [Entry] keeps the token's
// issue time, so every holder computes the same windows, and a new process
// adopts a usable token at once. The cache key ([TokenSource.CacheKey]
// says what it covers) includes a slow hash of the credential, so a token
// is handed only to a source holding the credential it was issued for. A
// cache that is also a [Leaser] makes a whole fleet share one token
// request per lifetime: one instance fetches, keeping its lease alive,
// while the others wait for its token. What a cache holds is checked, not
// trusted: a lease that no live holder could have left is not waited on,
// and a token read from a cache is held no longer than an answer's
// lifetime is clamped to.
//
// # DPoP
//
// With [Config.DPoPKey] tokens are bound to your key (RFC 9449): the token
// endpoint and every API request get a new proof, servers' nonces are
// followed, and caches, fleets and 401 recovery work as with bearer tokens.
// Send DPoP-bound tokens through [TokenSource.Client] or [Transport], or
// build one request's headers with [TokenSource.AuthHeaders];
// [TokenSource.DPoPThumbprint] is the key's public thumbprint.
// [LoadPrivateKey] reads the key from a PEM file.
//
// # Observability
//
// [Config.Observer] takes an [*Observer], a struct of optional functions
// called at each fetch, token request, wait, invalidation, cache error and
// quota reading, never on the hot path. The m2mtokenotel module turns it
// into OpenTelemetry metrics and spans. [Config.Logger] gets warnings for
// failures and, at debug level, every fetch, retry and cache decision; a
// token is only ever logged as its [Fingerprint].
//
// The manual, one page per topic, is in the repository's docs directory.
package m2mtoken
