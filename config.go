// Config: what a TokenSource is built from, its defaults, validation and
// redaction. The token endpoint URL it resolves to is endpoint.go's.

package m2mtoken

import (
	"context"
	"crypto"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/jwt"
	"github.com/m2mtoken/m2mtoken/internal/suggest"
)

// AuthMethod is how the client authenticates to the token endpoint.
type AuthMethod int

const (
	// ClientSecretPost sends the client ID and secret in the request body.
	// It is Auth0's default and the zero value.
	ClientSecretPost AuthMethod = iota
	// ClientSecretBasic sends them in an HTTP Basic Authorization header
	// (RFC 6749 section 2.3.1); the body then holds nothing secret.
	ClientSecretBasic
	// PrivateKeyJWT authenticates with a short-lived JWT signed with
	// Config.PrivateKey (RFC 7523, OIDC private_key_jwt): no secret is
	// shared with the server. A new assertion is signed for every request.
	PrivateKeyJWT
	// ClientAssertion authenticates with a client assertion made
	// elsewhere (RFC 7521): a platform's token, from
	// Config.ClientAssertionFile or Config.GetClientAssertion, which a
	// server that trusts the platform accepts (federated credentials). It
	// is the method when either is set.
	ClientAssertion
	// TLSClientAuth authenticates with the client's TLS certificate, one a
	// CA issued (RFC 8705 section 2.1, tls_client_auth): the server checks
	// the certificate's chain and its subject. No secret is sent. It is the
	// method when Config.ClientCertFile (or GetClientCertificate) is the
	// only credential.
	TLSClientAuth
	// SelfSignedTLSClientAuth authenticates with a self-signed certificate
	// registered with the server (RFC 8705 section 2.2,
	// self_signed_tls_client_auth).
	SelfSignedTLSClientAuth
)

// String returns the method's OAuth 2.0 name.
func (m AuthMethod) String() string {
	switch m {
	case ClientSecretPost:
		return "client_secret_post"
	case ClientSecretBasic:
		return "client_secret_basic"
	case PrivateKeyJWT:
		return "private_key_jwt"
	case ClientAssertion:
		return "client_assertion"
	case TLSClientAuth:
		return "tls_client_auth"
	case SelfSignedTLSClientAuth:
		return "self_signed_tls_client_auth"
	}
	return fmt.Sprintf("AuthMethod(%d)", int(m))
}

// Config says where and how to get a token. Only an endpoint (Domain or
// TokenURL), ClientID and a credential (ClientSecret, or one of the
// others: its file, a private key, a client assertion) are required;
// every other field has a default that suits Auth0.
//
// A credential in a file (ClientSecretFile, PrivateKeyFile,
// ClientAssertionFile) is followed: read again for each token request, so
// that a rotation reaches the source without a restart. docs/credentials.md
// in the repository says how to rotate with no failed call.
//
// Config holds a secret: its String, Format and LogValue methods
// redact it.
type Config struct {
	// Domain is an Auth0 tenant or custom domain, such as
	// "tenant.eu.auth0.com" or "https://login.example.com/"; the token URL
	// is then https://DOMAIN/oauth/token. Set Domain or TokenURL, not both.
	Domain string
	// TokenURL is the token endpoint of any OAuth 2.0 server. It must be
	// https, or http to a loopback address.
	TokenURL string

	// ClientID and ClientSecret are the application's credentials. With
	// PrivateKeyJWT or ClientAssertion there is no secret.
	ClientID     string
	ClientSecret string
	// ClientSecretFile is a file that holds the client secret, instead of
	// ClientSecret (a final newline is dropped). It is followed: read when
	// the source is made, then again for each token request, so that a
	// secret rotated in the file (a Kubernetes Secret, a Vault Agent
	// template) is used without a restart. Until the new secret is
	// accepted once, a refusal of it is tried again at once with the one
	// before, for a server that takes a while to take up a rotation.
	ClientSecretFile string
	// AuthMethod says how the client authenticates; see [AuthMethod]. When
	// PrivateKey or PrivateKeyFile is set and AuthMethod is left zero, it
	// is PrivateKeyJWT; with ClientAssertionFile or GetClientAssertion it
	// is ClientAssertion.
	AuthMethod AuthMethod

	// PrivateKey signs client assertions for PrivateKeyJWT: an RSA key of
	// at least 2048 bits or an ECDSA P-256 key (see [LoadPrivateKey]).
	PrivateKey crypto.Signer
	// PrivateKeyFile is a PEM file that holds the private key, instead of
	// PrivateKey, followed as ClientSecretFile is; a new key that cannot
	// sign is not taken (the one before stays, with a warning).
	PrivateKeyFile string
	// KeyID is the assertion's kid header: the key's ID as registered with
	// the server (Auth0 shows it as the credential's Key ID; Auth0 does
	// not need it). With PrivateKeyFile it names the key the file held
	// when the source was made: assertions signed with a later key carry
	// no kid, and a warning says to set KeyID to the new key's ID.
	KeyID string
	// ClientAssertionFile is a file whose content is the client assertion
	// itself, made by the platform: a Kubernetes projected service-account
	// token, a SPIFFE JWT-SVID written by spiffe-helper, a CI's OIDC
	// token. It is read for each token request and sent as
	// client_assertion with client_id, for a server that trusts the
	// platform's tokens (federated credentials: Entra ID, Keycloak).
	// An assertion whose exp has passed is not sent; its cache key names
	// the identity it proves (issuer and subject), not its bytes.
	ClientAssertionFile string
	// GetClientAssertion, instead of ClientAssertionFile, returns the
	// client assertion (a SPIFFE Workload API client, a cloud's metadata
	// server). It is called for each token request, never on the hot
	// path, from any goroutine: it must be safe for concurrent use. An
	// error is retried with backoff, as a network error is.
	GetClientAssertion func(ctx context.Context) (string, error)
	// ClientAssertionType is the client_assertion_type sent with
	// ClientAssertionFile or GetClientAssertion: empty means RFC 7523's
	// "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"; SPIFFE's
	// JWT-SVIDs take "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe".
	// "jwt-bearer" and "jwt-spiffe" are short for them.
	ClientAssertionType string
	// SigningAlgorithm is RS256 (the default for RSA keys), PS256 (RSA) or
	// ES256 (the default, and only choice, for P-256 keys).
	SigningAlgorithm string
	// AssertionAudience is the assertion's aud claim. Empty means
	// https://DOMAIN/ (with the slash, as Auth0 requires) when Domain is
	// set, else TokenURL.
	AssertionAudience string
	// AssertionLifetime is how long each assertion is valid: 1 minute if
	// zero, at most 5 minutes.
	AssertionLifetime time.Duration
	// MTLSTokenURL, if set, is where token requests are sent instead: the
	// token endpoint's mTLS alias (Auth0 serves mTLS client authentication
	// only at its own alias behind a custom domain, listed in its
	// discovery document's mtls_endpoint_aliases). Domain or TokenURL still
	// names the server, and the assertion audience.
	MTLSTokenURL string
	// ClientCertFile and ClientKeyFile are PEM files of the client's TLS
	// certificate (its chain after it) and private key, presented to the
	// token endpoint and, for certificate-bound tokens (RFC 8705), to the
	// APIs through [TokenSource.Client], [Transport] over it, and the
	// m2mtoken agent's proxy. With no other credential, the client
	// authenticates with it (TLSClientAuth). They are followed as
	// ClientSecretFile is: a renewed pair (cert-manager renews every 60 to
	// 90 days) is taken once both files read well and the key matches the
	// certificate, never half-written; new connections present it, and a
	// token bound to the certificate before is fetched anew (an opaque
	// token, which cannot say, is taken to be bound to the certificate it
	// was fetched with; a JWT with no cnf.x5t#S256 is not bound). The
	// certificate's thumbprint is part of the cache key: only holders of
	// the same certificate share a token. A warning is logged (and
	// Observer.CertificateExpiring told) when a tenth of its validity is
	// left. They go with a nil HTTPClient.
	ClientCertFile, ClientKeyFile string
	// GetClientCertificate, instead of ClientCertFile and ClientKeyFile,
	// returns the client certificate: called for each token request and
	// TLS handshake, and every 30 seconds, from any goroutine.
	GetClientCertificate func() (*tls.Certificate, error)

	// DPoPKey, if set, binds tokens to this key with DPoP (RFC 9449): every
	// token request carries a proof signed with it, the token is usable
	// only with proofs from it, and [Transport] adds a new proof to every
	// request. An ECDSA P-256 key (ES256) is the default and the
	// recommendation; RSA (PS256, or RS256) and Ed25519 (EdDSA) work too.
	// It is independent of AuthMethod, and may be the PrivateKey too, but a
	// key of its own is better. The key's thumbprint is part of the cache
	// key: only holders of the same key share a token.
	//
	// Token then returns tokens with TokenType "DPoP". Consumers that
	// cannot make proofs (oauth2.Transport, gRPC's oauth.TokenSource) send
	// them as "Authorization: DPoP <token>" without a proof, which the API
	// refuses; they never send them as bearer tokens. Use
	// [TokenSource.Client], [Transport] or [TokenSource.AuthHeaders]. See
	// docs/dpop.md in the repository.
	DPoPKey crypto.Signer
	// DPoPAlgorithm is the proofs' algorithm: empty means ES256 for P-256,
	// PS256 for RSA (RS256 is the other choice), EdDSA for Ed25519.
	DPoPAlgorithm string
	// RequireDPoP makes a Bearer answer to a token request with a proof an
	// error. Without it such a token (the API does not constrain tokens) is
	// used as a bearer token, and a warning is logged once.
	RequireDPoP bool

	// Audience is the identifier of the API the token is for. Auth0 needs it.
	Audience string
	// Scopes, if any, are sent space-separated as "scope". Auth0 grants an
	// M2M token every scope the client was granted and ignores this.
	Scopes []string
	// Organization, if set, is sent as "organization" (Auth0 then puts
	// org_id in the token).
	Organization string
	// EndpointParams are added to the request body, for example RFC 8707's
	// "resource". They may not repeat a parameter that has its own field.
	EndpointParams url.Values
	// JSONBody sends the request as application/json instead of the
	// default application/x-www-form-urlencoded. Auth0 accepts both.
	JSONBody bool

	// HTTPClient sends token requests; nil means a client over a clone of
	// [http.DefaultTransport], with at most MaxConnsPerHost connections,
	// that [TokenSource.Close] (or [Pool.Close]) closes. Its CheckRedirect is replaced: token requests
	// never follow redirects, so the secret goes nowhere but TokenURL. Its
	// Timeout, if any, bounds each attempt.
	HTTPClient *http.Client
	// CAFile is a PEM file of CA certificates to trust besides the
	// system's, for a server under a private CA (such as the one
	// m2mtoken serve --tls writes with --ca-out). It is trusted by token
	// requests and by [TokenSource.Client] (and so by the m2mtoken agent's
	// proxy): one CA, given once, for both. It goes with a nil HTTPClient:
	// a client of your own trusts what its transport's TLS config says.
	// M2MTOKEN_CA_FILE sets it.
	CAFile string
	// FieldNames, if set, says how error messages and hints name a Config
	// field (such as "ClientID") to the user: as the flag, variable or
	// file field that set it. Nil names it Config.ClientID. It returns ""
	// for a field the user cannot set (a command with no flag for it):
	// messages then leave out advice to change it, and name it
	// Config.Field where they must. [ConfigFromEnv] sets it to name the
	// environment variables.
	FieldNames func(field string) string
	// MaxConnsPerHost caps the connections token requests open to the
	// token endpoint when HTTPClient is nil: every token of a [Pool] shares
	// them, so that thousands of tokens, or a burst of their fetches, hold
	// a handful of connections. As many token requests are in flight at
	// most; the others queue where a 429 that comes back still stops them.
	// Zero means 16. With HTTPClient set, its transport decides.
	MaxConnsPerHost int
	// MaxTokens bounds the tokens a [Pool] holds: beyond it, the least
	// recently used one is dropped (see [Pool.Source]). Zero means 10,000.
	// A source from [New] holds one token and ignores it.
	MaxTokens int
	// NewTokenBurst and NewTokenRate bound the token requests a [Pool]
	// sends for requests it holds no token for (an audience, organization,
	// scopes or parameters it has not seen, or a token it dropped): at most
	// NewTokenBurst at once, then NewTokenRate a second. Past the bound
	// such a request sends nothing and fails at once with a
	// [*NewTokenLimitError]; the tokens the pool holds are unaffected, and
	// one taken from Cache, or the default request's, costs nothing. Zero means 100 at once and 10 a
	// second: one instance of a fleet starting cold (docs/pool.md says
	// why). A negative NewTokenRate means no bound. A source from [New]
	// ignores them.
	NewTokenBurst int
	NewTokenRate  float64

	// Logger receives warnings about failed fetches (one per fetch, however
	// many attempts it made) and, at debug level, a line for every fetch,
	// retry and cache decision. Nil discards them.
	// Nothing secret is logged: tokens appear only as a fingerprint.
	Logger *slog.Logger
	// Cache stores tokens beyond this source; nil keeps them in memory for
	// this source only. See [Cache], [NewMemoryCache], [NewFileCache].
	Cache Cache
	// Observer, if set, is told about fetches, token requests, callers
	// that waited, invalidations, cache errors and rate-limit and quota
	// readings, for metrics and traces (see [Observer], and the otel
	// module). The hot path never calls it. New copies it.
	Observer *Observer

	// RefreshWindow is how long before expiry a token becomes stale: it is
	// still handed out, and the first call that sees it stale starts one
	// background refresh. Zero means the smaller of 5 minutes and a fifth
	// of the token's lifetime, but at least the expiry skew plus twice the
	// time the endpoint took to answer for the token ([Entry.Latency]), so
	// that a slow endpoint's refresh ends before the token is unusable. It
	// is capped at half the lifetime.
	RefreshWindow time.Duration
	// RefreshJitter widens the refresh window of each token by a random
	// fraction of it, up to this much (0 means 0.2; negative means none),
	// so that a fleet sharing a token does not refresh in lockstep.
	RefreshJitter float64
	// ExpirySkew is how long before expiry a token stops being handed out
	// at all, to allow for clock skew and the time the token spends in
	// flight. Zero means the smaller of 10 seconds and a twentieth of the
	// lifetime. It is capped at a quarter of the lifetime. A caller that
	// finds no token outside the skew waits for a fetch.
	ExpirySkew time.Duration
	// DefaultLifetime is the lifetime of a token that came without
	// expires_in and is not a JWT with an exp claim. Zero means 1 hour.
	DefaultLifetime time.Duration

	// FetchTimeout bounds one fetch, retries included. A fetch runs on its
	// own, detached from the caller that started it: a caller whose context
	// ends stops waiting, but the fetch goes on for the others. Zero means
	// 1 minute.
	FetchTimeout time.Duration
	// AttemptTimeout bounds each HTTP request of a fetch. Zero means 15 s.
	AttemptTimeout time.Duration
	// MaxAttempts bounds the requests of one fetch, within FetchTimeout.
	// Network errors, 408, 429, 5xx and 2xx bodies cut short are retried;
	// other errors are not, nor a host name that does not exist, a
	// certificate that does not verify, or a 2xx that is not a token
	// answer. Zero means 8: with the default backoff, a fetch whose
	// attempts fail at once (a refused connection) keeps trying for at most
	// 32 s, 16 s on average, before its waiters get the error.
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the exponential backoff between
	// attempts (with full jitter) and between failed background refreshes.
	// A longer Retry-After or X-RateLimit-Reset is honoured, within
	// FetchTimeout. Zero means 250 ms and 30 s.
	MinBackoff, MaxBackoff time.Duration
	// ErrorCacheTTL is how long a permanent error (400, 401, 403: a wrong
	// secret, audience or grant; a host that does not exist, a certificate
	// that does not verify, a 2xx that is not a token answer) is returned to
	// callers without asking the endpoint again, so that a misconfigured
	// service cannot hammer it.
	// Zero means 5 seconds.
	ErrorCacheTTL time.Duration
	// MinInvalidateInterval is the least time between two invalidations
	// that take effect (see [TokenSource.Invalidate]), so that an API that
	// rejects every token cannot make the source fetch one per request;
	// it doubles while the API keeps rejecting the new tokens, up to an
	// hour ([Stats].InvalidateBackoff). Zero means 30 seconds; negative
	// means no limit.
	MinInvalidateInterval time.Duration
	// LeaseTTL is how long the fetch lease of a shared cache lasts unless
	// its holder keeps it alive, when Cache is a [Leaser] (the rediscache
	// module, FileCache). The holder keeps it alive every third of LeaseTTL
	// while it fetches, so a holder that dies blocks the others for at most
	// this long, and a slow one for as long as it lives. Zero means 750 ms.
	LeaseTTL time.Duration
}

// String describes the configuration with the secret redacted.
func (c Config) String() string {
	endpoint := c.TokenURL
	if c.Domain != "" {
		endpoint = c.Domain
	}
	secret := "<empty>"
	if c.ClientSecret != "" {
		secret = "<redacted>"
	}
	key := "<none>"
	if c.PrivateKey != nil {
		key = "<redacted>"
	}
	// The files' names are not secret: they say where a credential is.
	files := ""
	for _, f := range []struct{ name, path string }{
		{"client_secret_file", c.ClientSecretFile}, {"private_key_file", c.PrivateKeyFile}, {"client_assertion_file", c.ClientAssertionFile},
		{"client_cert_file", c.ClientCertFile}, {"client_key_file", c.ClientKeyFile},
	} {
		if f.path != "" {
			files += fmt.Sprintf(" %s:%q", f.name, f.path)
		}
	}
	if c.GetClientAssertion != nil {
		files += " client_assertion:<func>"
	}
	return fmt.Sprintf("m2mtoken.Config{endpoint:%q client_id:%q client_secret:%s private_key:%s%s audience:%q scopes:%q organization:%q auth:%s%s}",
		endpoint, c.ClientID, secret, key, files, c.Audience, c.Scopes, c.Organization, c.AuthMethod, c.dpopString())
}

// Format makes every fmt verb print String.
func (c Config) Format(f fmt.State, _ rune) { io.WriteString(f, c.String()) }

// LogValue logs the configuration with the secret redacted.
func (c Config) LogValue() slog.Value {
	endpoint := c.TokenURL
	if c.Domain != "" {
		endpoint = c.Domain
	}
	return slog.GroupValue(
		slog.String("endpoint", endpoint),
		slog.String("client_id", c.ClientID),
		slog.Bool("client_secret_set", c.ClientSecret != ""),
		slog.String("client_secret_file", c.ClientSecretFile),
		slog.String("private_key_file", c.PrivateKeyFile),
		slog.String("client_assertion_file", c.ClientAssertionFile),
		slog.String("audience", c.Audience),
		slog.String("auth", c.AuthMethod.String()),
		slog.Bool("dpop", c.DPoPKey != nil),
	)
}

// credentials lists the credential fields that are set: one is wanted.
func (c *Config) credentials() []string {
	var out []string
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"ClientSecret", c.ClientSecret != ""},
		{"ClientSecretFile", c.ClientSecretFile != ""},
		{"PrivateKey", c.PrivateKey != nil},
		{"PrivateKeyFile", c.PrivateKeyFile != ""},
		{"ClientAssertionFile", c.ClientAssertionFile != ""},
		{"GetClientAssertion", c.GetClientAssertion != nil},
	} {
		if f.set {
			out = append(out, f.name)
		}
	}
	return out
}

// missing returns one error for every required field left empty, when
// more than one is: a first run with nothing set learns them all at once
// rather than one a run. (One missing field gets its own message below.)
func (c *Config) missing() error {
	var parts []string
	if c.ClientID == "" {
		parts = append(parts, "{ClientID} (the application's Client ID)")
	}
	if len(c.credentials()) == 0 && c.ClientCertFile == "" && c.GetClientCertificate == nil {
		parts = append(parts, "{ClientSecret} (its Client Secret, or {PrivateKey|PrivateKeyFile} for Private Key JWT)")
	}
	if strings.TrimSpace(c.Domain) == "" && strings.TrimSpace(c.TokenURL) == "" {
		parts = append(parts, "{Domain} (for example \"tenant.eu.auth0.com\") or {TokenURL}")
	}
	if len(parts) < 2 {
		return nil
	}
	list := strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
	return configErr("missing settings: set " + list)
}

// withDefaults validates c and fills in defaults. It returns the token URL.
func (c *Config) withDefaults() (string, error) {
	if err := c.missing(); err != nil {
		return "", err
	}
	if c.ClientID == "" {
		return "", configErr("{ClientID} is empty: set it to the application's Client ID")
	}
	creds := c.credentials()
	if c.AuthMethod == PrivateKeyJWT && (c.ClientSecret != "" || c.ClientSecretFile != "") {
		return "", configErr("{ClientSecret} is set with {AuthMethod} private_key_jwt: a secret and a key together are refused; remove the secret")
	}
	if len(creds) > 1 {
		if creds[0] == "PrivateKey" && creds[1] == "ClientSecret" || creds[0] == "ClientSecret" && creds[1] == "PrivateKey" {
			return "", configErr("{PrivateKey} and {ClientSecret} are both set: use one way to authenticate (a key means Private Key JWT)")
		}
		return "", configErr("{" + creds[0] + "} and {" + creds[1] + "} are both set: authenticate with one (a client secret, its file, a private key, its file, or a client assertion)")
	}
	if c.AuthMethod == ClientSecretPost && len(creds) == 1 {
		switch creds[0] {
		case "PrivateKey", "PrivateKeyFile":
			c.AuthMethod = PrivateKeyJWT
		case "ClientAssertionFile", "GetClientAssertion":
			c.AuthMethod = ClientAssertion
		}
	}
	hasCert := c.ClientCertFile != "" || c.ClientKeyFile != "" || c.GetClientCertificate != nil
	if c.AuthMethod == ClientSecretPost && len(creds) == 0 && hasCert {
		c.AuthMethod = TLSClientAuth
	}
	switch {
	case (c.ClientCertFile == "") != (c.ClientKeyFile == ""):
		return "", configErr("{ClientCertFile} and {ClientKeyFile} go together: give the certificate and its private key")
	case c.ClientCertFile != "" && c.GetClientCertificate != nil:
		return "", configErr("{ClientCertFile} and {GetClientCertificate} are both set: give the certificate one way")
	case hasCert && c.HTTPClient != nil:
		return "", configErr("{ClientCertFile} and {HTTPClient} are both set: the certificate is presented by the source's own client; leave HTTPClient nil, or present the certificate in your client's TLS config")
	case tlsMethod(c.AuthMethod) && !hasCert:
		return "", configErr("{AuthMethod} %v needs {ClientCertFile} and {ClientKeyFile}: the certificate is the credential", c.AuthMethod)
	case tlsMethod(c.AuthMethod) && len(creds) > 0:
		return "", configErr("{"+creds[0]+"} is set with {AuthMethod} %v, which authenticates with the certificate alone: remove it", c.AuthMethod)
	}
	if c.ClientAssertionType != "" && c.AuthMethod != ClientAssertion {
		return "", configErr("{ClientAssertionType} is set without {ClientAssertionFile}: it is the type of a client assertion the platform makes")
	}
	switch c.AuthMethod {
	case ClientSecretPost, ClientSecretBasic:
		if c.ClientSecret == "" && c.ClientSecretFile == "" {
			if len(creds) == 1 {
				return "", configErr("{"+creds[0]+"} is set with {AuthMethod} %v, which sends a client secret: remove {AuthMethod}, or give the secret instead", c.AuthMethod)
			}
			return "", configErr("{ClientSecret} is empty: give the application's Client Secret, or authenticate another way ({PrivateKey|PrivateKeyFile} for Private Key JWT, {ClientAssertionFile} for a platform's token, {ClientCertFile} and {ClientKeyFile} for mTLS)")
		}
	case PrivateKeyJWT:
		if c.ClientSecret != "" || c.ClientSecretFile != "" {
			return "", configErr("{ClientSecret} is set with {AuthMethod} private_key_jwt: a secret and a key together are refused; remove the secret")
		}
		if c.PrivateKey == nil && c.PrivateKeyFile == "" {
			return "", configErr("{AuthMethod} private_key_jwt needs {PrivateKey|PrivateKeyFile} (see LoadPrivateKey)")
		}
		if c.PrivateKey != nil {
			alg, err := jwt.CheckKey(c.PrivateKey, c.SigningAlgorithm)
			if err != nil {
				return "", configErr("{PrivateKey}: %v", err)
			}
			c.SigningAlgorithm = alg
		}
		if c.AssertionLifetime < 0 || c.AssertionLifetime > 5*time.Minute {
			return "", configErr("{AssertionLifetime} %v: must be at most 5 minutes", c.AssertionLifetime)
		}
		setDefault(&c.AssertionLifetime, time.Minute)
	case ClientAssertion:
		if c.ClientAssertionFile == "" && c.GetClientAssertion == nil {
			return "", configErr("{AuthMethod} client_assertion needs {ClientAssertionFile}: the file the platform writes the assertion to")
		}
		switch t := strings.TrimSpace(c.ClientAssertionType); {
		case t == "" || t == "jwt-bearer":
			c.ClientAssertionType = assertionJWTBearer
		case t == "jwt-spiffe":
			c.ClientAssertionType = assertionJWTSPIFFE
		case strings.ContainsAny(t, " \t\r\n") || !strings.Contains(t, ":"):
			return "", configErr("{ClientAssertionType} %q: use jwt-bearer (the default), jwt-spiffe, or the type's URN (urn:ietf:params:oauth:client-assertion-type:...)", t)
		case assertionTypo(t) != "":
			return "", configErr("{ClientAssertionType} %q: did you mean %q?", t, assertionTypo(t))
		default:
			c.ClientAssertionType = t
		}
	case TLSClientAuth, SelfSignedTLSClientAuth:
	default:
		return "", configErr("{AuthMethod} %v is not supported", c.AuthMethod)
	}
	tokenURL, err := endpointURL(c.Domain, c.TokenURL)
	if err != nil {
		return "", err
	}
	if c.AssertionAudience == "" {
		c.AssertionAudience = tokenURL
		if c.Domain != "" {
			c.AssertionAudience = strings.TrimSuffix(tokenURL, "oauth/token")
		}
	}
	if c.MTLSTokenURL != "" {
		if tokenURL, err = parseEndpoint("MTLSTokenURL", c.MTLSTokenURL); err != nil {
			return "", err
		}
	}
	if err := c.checkDPoP(); err != nil {
		return "", err
	}
	if err := paramsError(c.EndpointParams); err != nil {
		return "", err
	}
	def := TokenRequest{Audience: c.Audience, Scopes: c.Scopes, Organization: c.Organization, Params: c.EndpointParams}
	if field, n, limit, usual := def.tooLarge(); field != "" {
		if field == "Params" {
			field = "EndpointParams"
		}
		return "", configErr("{"+field+"} is %d bytes, over the %d m2mtoken accepts (%s)", n, limit, usual)
	}
	if c.CAFile != "" {
		if c.HTTPClient != nil {
			return "", configErr("{CAFile} and {HTTPClient} are both set: the CA is for the source's own client; leave HTTPClient nil, or add the CA to your client's TLS config (RootCAs)")
		}
	}
	for name, d := range map[string]time.Duration{
		"RefreshWindow": c.RefreshWindow, "ExpirySkew": c.ExpirySkew, "DefaultLifetime": c.DefaultLifetime,
		"FetchTimeout": c.FetchTimeout, "AttemptTimeout": c.AttemptTimeout, "MinBackoff": c.MinBackoff,
		"MaxBackoff": c.MaxBackoff, "ErrorCacheTTL": c.ErrorCacheTTL, "LeaseTTL": c.LeaseTTL,
	} {
		if d < 0 {
			return "", configErr("{"+name+"} is negative (%v): use 0 for the default", d)
		}
	}
	if c.MaxConnsPerHost < 0 {
		return "", configErr("{MaxConnsPerHost} is negative (%d): use 0 for the default", c.MaxConnsPerHost)
	}
	if c.MaxTokens < 0 {
		return "", configErr("{MaxTokens} is negative (%d): use 0 for the default", c.MaxTokens)
	}
	if c.NewTokenBurst < 0 {
		return "", configErr("{NewTokenBurst} is negative (%d): use 0 for the default, or a negative {NewTokenRate} for no bound", c.NewTokenBurst)
	}
	if math.IsNaN(c.NewTokenRate) {
		return "", configErr("{NewTokenRate} is not a number: use 0 for the default, or a negative rate for no bound")
	}
	setDefault(&c.NewTokenBurst, defaultNewTokenBurst)
	setDefault(&c.NewTokenRate, defaultNewTokenRate)
	setDefault(&c.MaxConnsPerHost, defaultMaxConnsPerHost)
	setDefault(&c.MaxTokens, defaultMaxTokens)
	if c.MaxAttempts < 0 {
		return "", configErr("{MaxAttempts} is negative (%d): use 0 for the default", c.MaxAttempts)
	}
	if c.RefreshJitter > 1 {
		return "", configErr("{RefreshJitter} %v is more than 1", c.RefreshJitter)
	}
	setDefault(&c.RefreshJitter, 0.2)
	setDefault(&c.DefaultLifetime, time.Hour)
	setDefault(&c.FetchTimeout, time.Minute)
	setDefault(&c.AttemptTimeout, 15*time.Second)
	setDefault(&c.MaxAttempts, 8)
	setDefault(&c.MinBackoff, 250*time.Millisecond)
	setDefault(&c.MaxBackoff, 30*time.Second)
	setDefault(&c.ErrorCacheTTL, 5*time.Second)
	setDefault(&c.MinInvalidateInterval, 30*time.Second)
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = c.MinBackoff
	}
	return tokenURL, nil
}

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// assertionTypo returns the registered client assertion type t is a typo
// of (its URN prefix or its name a letter or two off), or "".
func assertionTypo(t string) string {
	known := []string{assertionJWTBearer, assertionJWTSPIFFE, "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"}
	if slices.Contains(known, t) {
		return ""
	}
	return suggest.Nearest(t, known)
}
