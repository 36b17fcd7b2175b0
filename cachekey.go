// The cache key: under which key a token is stored in Config.Cache, and so
// which sources share it. It is built here alone; [TokenSource.CacheKey]'s
// doc is the one description of what it covers, and the others (the
// Cache doc, docs/caches.md) point to it.
//
// Each step hashes the one before with SHA-256, a version string and
// length-prefixed parts, and keeps the first 16 bytes: cacheKey the
// endpoint, client, method and request; dpopCacheKey then the DPoP key's
// thumbprint (together, requestKey); credentialKey then the credential's
// ID (credValue.cacheID, derived once per value of the credential: a
// secret's slow hash, a key's public key, an assertion's identity). A
// credential that changes in its file changes the key of the next token
// fetched; the token in use is kept until it is replaced. TestCacheKeyIsStable pins the result: a key that
// changes makes every holder of a shared cache fetch anew once.

package m2mtoken

import (
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// requestKey returns the part of the cache key of a token of this client
// for req that does not change while it runs: everything but the
// credential.
func (c *client) requestKey(req *TokenRequest) string {
	k := cacheKey(c.tokenURL, c.cfg.ClientID, req.Audience, req.Scopes, req.Organization, req.Params, c.cfg.AuthMethod)
	if c.dpop != nil {
		k = dpopCacheKey(k, c.dpop.key.Thumbprint())
	}
	return k
}

// cacheKeyFor returns the cache key of a token whose request has the
// requestKey rk, earned with the credential's value v over a connection
// that presented the client certificate cv (nil without one; see the
// file's comment). Without Config.Cache it is rk: each source keeps its
// tokens to itself, so nothing names the credential.
func (c *client) cacheKeyFor(rk string, v *credValue, cv *certValue) string {
	if c.cfg.Cache == nil || v == nil {
		return rk
	}
	id := v.cacheID(c.tokenURL, c.cfg.ClientID)
	if cv != nil {
		// A token may be bound to the certificate it was fetched over:
		// only holders of the same certificate share it.
		id += ";x5t#S256:" + cv.thumb
	}
	return credentialKey(rk, id)
}

// cacheKey derives the first step of the key: the endpoint, client,
// method and request, and nothing secret. Scopes are sorted (their order
// does not change the token); endpoint parameters are encoded sorted by
// url.Values.Encode.
func cacheKey(tokenURL, clientID, audience string, scopes []string, org string, params url.Values, method AuthMethod) string {
	sorted := slices.Clone(scopes)
	slices.Sort(sorted)
	h := sha256.New()
	for _, part := range []string{"m2mtoken/v1", tokenURL, clientID, audience, strings.Join(sorted, " "), org, params.Encode(), method.String()} {
		fmt.Fprintf(h, "%d:%s;", len(part), part)
	}
	return "m2mtoken-" + hex.EncodeToString(h.Sum(nil)[:16])
}

// dpopCacheKey folds the key's thumbprint into the cache key: a bound
// token is usable only with its key, so holders with different keys never
// share one, and holders of one key share as before.
func dpopCacheKey(key, jkt string) string {
	sum := sha256.Sum256([]byte(key + "\x00dpop:" + jkt))
	return "m2mtoken-dpop-" + hex.EncodeToString(sum[:16])
}

// credentialIterations is the PBKDF2-HMAC-SHA256 work factor of
// credentialID: tens of milliseconds on one core (many times that under
// the race detector), paid once per process and credential, and as much
// again for every guess of someone who holds a cache key and tries to find
// the secret behind it.
const credentialIterations = 100_000

// credentialKey joins the source's credential into key, the cache key of
// everything else, so that a token in a shared cache is handed only to a
// source that holds the credential it was issued for: a mistyped or
// rotated secret misses the cache and gets the endpoint's answer at once,
// instead of a token that another credential earned. Sources with the
// same credential (a fleet) still share one key.
//
// A source without Config.Cache keeps its tokens to itself, so it skips
// the derivation and keeps key as it is (see cacheKeyFor).
func credentialKey(key, id string) string {
	h := sha256.New()
	for _, part := range []string{"m2mtoken/credential/v1", key, id} {
		fmt.Fprintf(h, "%d:%s;", len(part), part)
	}
	return "m2mtoken-" + hex.EncodeToString(h.Sum(nil)[:16])
}

// secretID names a client secret without revealing it: a slow, salted
// hash, PBKDF2-HMAC-SHA256 with credentialIterations, salted with the
// server's host and the client ID so that no table of precomputed guesses
// serves two clients. Only a hash of the result reaches the cache key, and
// the key is all a cache stores.
func secretID(tokenURL, clientID, secret string) string {
	// The server's host name, not its whole URL: enough to keep a table of
	// guesses for one client from serving another, and a program's sources
	// for one client (or a test suite's servers on loopback ports) share
	// one derivation.
	host := tokenURL
	if u, err := url.Parse(tokenURL); err == nil {
		host = u.Hostname()
	}
	salt := fmt.Sprintf("m2mtoken/secret/v1;%d:%s;%d:%s", len(host), host, len(clientID), clientID)
	return derivedSecrets.get(salt, secret)
}

// derivedSecrets remembers the derivations of this process, so that a
// program (or a test suite) that creates many sources for one credential
// pays for the derivation once. It holds what the process holds already
// (the secret, in Config), only in memory, and at most
// maxDerivedSecrets of them.
var derivedSecrets = &secretMemo{m: map[[32]byte]string{}}

const maxDerivedSecrets = 64

type secretMemo struct {
	mu sync.Mutex
	m  map[[32]byte]string
}

func (c *secretMemo) get(salt, secret string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d:%s;%s", len(salt), salt, secret)
	var k [32]byte
	h.Sum(k[:0])
	c.mu.Lock()
	id, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return id
	}
	dk, err := pbkdf2.Key(sha256.New, secret, []byte(salt), credentialIterations, 32)
	if err != nil {
		// Only FIPS 140-only mode refuses these parameters; the key then
		// names no secret, as before.
		return "secret:unavailable"
	}
	id = "secret:" + hex.EncodeToString(dk)
	c.mu.Lock()
	if len(c.m) >= maxDerivedSecrets {
		clear(c.m)
	}
	c.m[k] = id
	c.mu.Unlock()
	return id
}
