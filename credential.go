// The client's credential, as it is when a token request is made: a
// secret, a private key or a client assertion, given in Config or
// followed in a file (an assertion may also come from a function).
//
// A followed file is read when the source is made, then again for each
// token request, never on the hot path (internal/follow: a change is
// taken once two reads agree, so an empty or half-written file is not;
// a file that vanishes, turns empty or cannot be read leaves the last
// good content in use, with a warning). The credential before a rotation
// is kept until the new one is accepted: a server that has not taken up
// a new secret or key yet (Auth0 says up to thirty seconds) is asked
// again at once with the previous one. A refusal of a followed credential
// ends as soon as the file changes (see moved).

package m2mtoken

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/atomicfile"
	"github.com/m2mtoken/m2mtoken/internal/clock"
	"github.com/m2mtoken/m2mtoken/internal/follow"
	"github.com/m2mtoken/m2mtoken/internal/jwt"
)

// The client_assertion_type values of RFC 7523 and of SPIFFE's
// draft-ietf-oauth-spiffe-client-auth.
const (
	assertionJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	assertionJWTSPIFFE = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe"
)

// credentialPoll is how soon a background refresh refused for a followed
// credential looks at it again: the file may change at any moment, and
// the token in use runs out meanwhile. A change is taken up at most this
// long after it, plus the two agreeing reads (follow.DefaultSettle) and a
// token request: within a 4 s token's 0.6 s between its refresh window
// and its expiry skew, even with the file changed 300 ms after the
// refusal. Each look reads the file and sends nothing.
const credentialPoll = 100 * time.Millisecond

// credKind is what authenticates the client.
type credKind int

const (
	credSecret credKind = iota
	credKey
	credAssertion
	credCert // the client certificate alone (TLSClientAuth, SelfSignedTLSClientAuth)
)

// credential is the client's credential: where it comes from, and the
// values read from there.
type credential struct {
	kind  credKind
	field string              // the Config field it comes from, for messages: "ClientSecretFile"
	names func(string) string // Config.FieldNames
	file  *follow.File        // a followed file, or nil
	get   func(context.Context) (string, error)
	alg   string // Config.SigningAlgorithm as given: "" means the key's default
	clk   clock.Clock

	mu sync.Mutex
	// cur is the value in use; prev the last one before it that the
	// server accepted (or the first), kept until cur is accepted once
	// (see accepted).
	cur, prev *credValue
	// kid is Config.KeyID, and kidFor the public key it was given for:
	// only that key's assertions carry it.
	kid, kidFor string
	// warned is the last file error warned about; expWarned and
	// expiredWarned the last assertion expiry warned about ahead of time
	// and once passed.
	warned                   string
	expWarned, expiredWarned time.Time
	// looked is when moved last read the file; changed when the file's
	// credential last changed, and taken whether the server has accepted
	// it since.
	looked, changed time.Time
	taken           bool
}

// credValue is one value of a credential.
type credValue struct {
	version uint64
	secret  string
	key     crypto.Signer
	alg     string // the key's signing algorithm
	kid     string
	pub     string // the public key's SHA-256, hex
	// assertion is a client assertion; exp and iat its claims (zero if
	// it has none), and subject its issuer and subject, which name the
	// identity it proves.
	assertion string
	exp, iat  time.Time
	subject   string

	idOnce sync.Once
	id     string // see cacheID
}

// newCredential returns the credential cfg (validated) describes, with its
// file read once: an unreadable file is an error here, named after its
// field, as a missing setting would be.
func newCredential(cfg *Config, clk clock.Clock) (*credential, error) {
	cr := &credential{clk: clk, alg: cfg.SigningAlgorithm, kid: cfg.KeyID, names: cfg.FieldNames}
	switch {
	case cfg.ClientSecretFile != "":
		cr.kind, cr.field = credSecret, "ClientSecretFile"
		cr.file = follow.New(cfg.ClientSecretFile, follow.Options{Limit: atomicfile.SecretFileLimit, What: "a client secret file", Clock: clk, Check: checkSecret})
	case cfg.PrivateKeyFile != "":
		cr.kind, cr.field = credKey, "PrivateKeyFile"
		cr.file = follow.New(cfg.PrivateKeyFile, follow.Options{Limit: atomicfile.KeyFileLimit, What: "a PEM private key file", Clock: clk, Check: cr.checkKey})
	case cfg.ClientAssertionFile != "":
		cr.kind, cr.field = credAssertion, "ClientAssertionFile"
		cr.file = follow.New(cfg.ClientAssertionFile, follow.Options{Limit: maxAssertion, What: "a client assertion file", Clock: clk, Check: checkAssertion})
	case cfg.GetClientAssertion != nil:
		cr.kind, cr.field = credAssertion, "GetClientAssertion"
		cr.get = cfg.GetClientAssertion
		return cr, nil
	case tlsMethod(cfg.AuthMethod):
		// The certificate is the credential (clientcert.go): nothing
		// else is sent, and its thumbprint is in the cache key.
		cr.kind, cr.field = credCert, "ClientCertFile"
		cr.cur = &credValue{version: 1, id: "tls-client-certificate"}
		cr.cur.idOnce.Do(func() {})
		return cr, nil
	case cfg.PrivateKey != nil:
		cr.kind, cr.field = credKey, "PrivateKey"
		v, err := cr.keyValue(cfg.PrivateKey)
		if err != nil {
			return nil, configErr("{PrivateKey}: %v", err)
		}
		cr.cur = v
		cr.kidFor = v.pub
		v.kid = cr.kid
		return cr, nil
	default:
		cr.kind, cr.field = credSecret, "ClientSecret"
		cr.cur = &credValue{version: 1, secret: cfg.ClientSecret}
		return cr, nil
	}
	snap := cr.file.Read(context.Background())
	if snap.Version == 0 {
		return nil, configErr("{"+cr.field+"}: %v", snap.Err)
	}
	v, err := cr.parse(snap)
	if err != nil {
		return nil, configErr("{"+cr.field+"}: %v", err)
	}
	cr.cur = v
	if cr.kind == credKey {
		cr.kidFor = v.pub
		v.kid = cr.kid
	}
	return cr, nil
}

// setting names where the credential comes from in the user's words:
// the flag, variable or file field that set it, else Config.Field.
func (cr *credential) setting() string {
	n, _ := fieldName(cr.names, cr.field)
	return n
}

// maxAssertion bounds a client assertion's file: a JWT of a few KiB.
const maxAssertion = 64 << 10

// checkSecret refuses a secret file that holds nothing but a newline.
func checkSecret(b []byte) error {
	if strings.TrimRight(string(b), "\r\n") == "" {
		return errors.New("holds no secret, only a line break")
	}
	return nil
}

// checkKey refuses a key file whose key cannot sign assertions: a
// rotation to such a key keeps the last good one.
func (cr *credential) checkKey(b []byte) error {
	key, err := ParsePrivateKeyPEM(b)
	if err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "m2mtoken: "))
	}
	_, err = jwt.CheckKey(key, cr.alg)
	return err
}

// checkAssertion refuses a file that cannot be a client assertion: more
// than one line, or a space in it (a file cut short is caught by the
// two reads that must agree, an expired assertion when it is sent).
func checkAssertion(b []byte) error {
	if strings.ContainsAny(strings.TrimRight(string(b), "\r\n"), " \t\r\n") {
		return errors.New("is not a client assertion: it has a space or more than one line")
	}
	return nil
}

// keyValue is the value of a private key.
func (cr *credential) keyValue(key crypto.Signer) (*credValue, error) {
	alg, err := jwt.CheckKey(key, cr.alg)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(der)
	return &credValue{version: 1, key: key, alg: alg, pub: hex.EncodeToString(sum[:])}, nil
}

// parse turns a file's good content into a value.
func (cr *credential) parse(snap follow.Snapshot) (*credValue, error) {
	switch cr.kind {
	case credSecret:
		return &credValue{version: snap.Version, secret: strings.TrimRight(string(snap.Content), "\r\n")}, nil
	case credKey:
		key, err := ParsePrivateKeyPEM(snap.Content)
		if err != nil {
			return nil, err
		}
		v, err := cr.keyValue(key)
		if err != nil {
			return nil, err
		}
		v.version = snap.Version
		return v, nil
	}
	v := assertionValue(strings.TrimRight(string(snap.Content), "\r\n"))
	v.version = snap.Version
	return v, nil
}

// assertionValue reads what a client assertion says of itself: its exp,
// iat, issuer and subject, unverified (the server verifies it; here they
// only name its identity in the cache key and say when it runs out).
func assertionValue(a string) *credValue {
	v := &credValue{assertion: a}
	var claims struct {
		Iss string  `json:"iss"`
		Sub string  `json:"sub"`
		Exp float64 `json:"exp"`
		Iat float64 `json:"iat"`
	}
	if jwt.Unverified(a, &claims) == nil {
		if claims.Exp > 0 {
			v.exp = time.Unix(int64(claims.Exp), 0)
		}
		if claims.Iat > 0 {
			v.iat = time.Unix(int64(claims.Iat), 0)
		}
		if claims.Iss != "" || claims.Sub != "" {
			v.subject = fmt.Sprintf("%d:%s;%d:%s", len(claims.Iss), claims.Iss, len(claims.Sub), claims.Sub)
		}
	}
	return v
}

// current returns the credential's value for a token request: the file
// read again (its last good content if it cannot be read, with a warning
// naming it once per error), or a new assertion from the function. The
// error is for an assertion that cannot be had or has expired: nothing
// is sent then.
func (cr *credential) current(ctx context.Context, log *slog.Logger) (*credValue, error) {
	if cr.get != nil {
		a, err := cr.get(ctx)
		switch {
		case err != nil:
			return nil, fmt.Errorf("Config.GetClientAssertion: %w", err)
		case strings.TrimSpace(a) == "":
			return nil, errors.New("Config.GetClientAssertion returned an empty assertion")
		}
		v := assertionValue(a)
		cr.mu.Lock()
		v.version = 1
		if cur := cr.cur; cur != nil {
			v.version = cur.version + 1
		}
		cr.cur = v
		cr.mu.Unlock()
		return v, cr.fresh(v, log)
	}
	if cr.file == nil {
		return cr.cur, nil
	}
	snap := cr.file.Read(ctx)
	cr.mu.Lock()
	if snap.Err != nil && ctx.Err() == nil {
		if msg := snap.Err.Error(); msg != cr.warned {
			cr.warned = msg
			log.Warn("the credential's file cannot be read; the last good one is used", slog.String("setting", cr.setting()), slog.Any("error", snap.Err))
		}
	} else if snap.Err == nil && cr.warned != "" {
		log.Info("the credential's file reads well again", slog.String("setting", cr.setting()), slog.String("file", cr.file.Path()))
		cr.warned = ""
	}
	if snap.Version > cr.cur.version {
		if v, err := cr.parse(snap); err == nil {
			if cr.kind == credKey {
				if v.pub == cr.kidFor {
					v.kid = cr.kid
				} else if cr.kid != "" && cr.cur.kid != "" {
					log.Warn("the private key in the file changed, and the key ID set names the one it held before: assertions now carry no key ID (Auth0 then tries each of the application's credentials); set the key ID to the new key's, or leave it empty",
						slog.String("file", cr.file.Path()))
				}
			}
			log.Info("the credential changed in its file; the next token requests use it", slog.String("setting", cr.setting()), slog.String("file", cr.file.Path()))
			if cr.prev == nil || cr.taken {
				// The one to fall back on is the last the server took: a
				// value it never accepted does not replace it.
				cr.prev = cr.cur
			}
			cr.cur = v
			cr.changed, cr.taken = cr.clk.Now(), false
		}
	}
	v := cr.cur
	cr.mu.Unlock()
	return v, cr.fresh(v, log)
}

// fresh refuses an assertion whose exp has passed, with a warning once
// for each such assertion, and warns once when one is in the last tenth
// of its lifetime (or its last minute, without iat): the platform that
// writes it should have written a new one by then.
func (cr *credential) fresh(v *credValue, log *slog.Logger) error {
	if v.assertion == "" || v.exp.IsZero() {
		return nil
	}
	now := cr.clk.Now()
	where := "the client assertion from Config.GetClientAssertion"
	writer := "does it fetch new ones?"
	if cr.file != nil {
		where = "the client assertion in " + cr.file.Path()
		writer = "is the process that writes it running?"
	}
	if !now.Before(v.exp) {
		err := fmt.Errorf("%s expired at %s, %v ago: %s", where, v.exp.UTC().Format(time.RFC3339), now.Sub(v.exp).Round(time.Second), writer)
		cr.mu.Lock()
		warn := !v.exp.Equal(cr.expiredWarned)
		cr.expiredWarned = v.exp
		cr.mu.Unlock()
		if warn {
			log.Warn("no token request is sent until a new client assertion is read", slog.Any("error", err))
		}
		return err
	}
	left, margin := v.exp.Sub(now), time.Minute
	if !v.iat.IsZero() && v.exp.After(v.iat) {
		margin = v.exp.Sub(v.iat) / 10
	}
	cr.mu.Lock()
	warn := left < margin && !v.exp.Equal(cr.expWarned)
	if warn {
		cr.expWarned = v.exp
	}
	cr.mu.Unlock()
	if warn {
		log.Warn(where+" is about to expire: "+writer, slog.Time("expiry", v.exp), slog.Duration("left", left.Round(time.Second)))
	}
	return nil
}

// forKey returns the credential to name in the cache key of a fetch: as
// it is now (its file read again), or for an assertion function, the last
// one it gave (it is called for the first time only if it never was).
// It may be nil: a function that failed its first call.
func (cr *credential) forKey(ctx context.Context, log *slog.Logger) *credValue {
	if v := cr.last(); v != nil && cr.file == nil {
		return v
	}
	v, _ := cr.current(ctx, log)
	if v == nil {
		return cr.last()
	}
	return v
}

// previous returns the value before v, if v is the current one and it has
// not been accepted yet: the one to try when v is refused.
func (cr *credential) previous(v *credValue) *credValue {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	if cr.cur != v || cr.prev == nil || cr.get != nil {
		return nil
	}
	return cr.prev
}

// accepted records that the server took v: once the current value is
// taken, the previous one is forgotten.
func (cr *credential) accepted(v *credValue) {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	if cr.cur == v {
		cr.prev, cr.taken = nil, true
	}
}

// young reports whether the credential changed in its file less than
// rotationSettle ago and the server has not accepted it yet, and how long
// ago it changed. (One it accepted and now refuses was rotated at the
// issuer: that refusal is held, and ends when the file changes.)
func (cr *credential) young() (time.Duration, bool) {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	if cr.changed.IsZero() || cr.taken {
		return 0, false
	}
	since := cr.clk.Now().Sub(cr.changed)
	return since, since < rotationSettle
}

// last returns the value in use, without reading anything: nil for an
// assertion function not called yet.
func (cr *credential) last() *credValue {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	return cr.cur
}

// rotationSettle is how long after a credential changed in its file a
// refusal of it is taken for a server that has not taken up the rotation
// yet, and asked again with backoff rather than held: twice the thirty
// seconds Auth0 says a new secret may take.
const rotationSettle = time.Minute

// credentialLook is how often a refused credential's file is looked at
// again, however often callers ask.
const credentialLook = 100 * time.Millisecond

// moved reports whether the credential's file now holds another value
// than v, which was refused: it is read again here, at most every
// credentialLook. A credential from Config or a function never moves
// (a function's refusal holds as any other does).
func (cr *credential) moved(ctx context.Context, v *credValue) bool {
	if v == nil || cr.file == nil {
		return false
	}
	now := cr.clk.Now()
	cr.mu.Lock()
	look := now.Sub(cr.looked) >= credentialLook || now.Before(cr.looked)
	if look {
		cr.looked = now
	}
	cr.mu.Unlock()
	snap := cr.file.Last()
	if look {
		snap = cr.file.Read(ctx)
	}
	return snap.Version > v.version
}

// cacheID names the value in the cache key without revealing it (see
// cachekey.go): for a secret a slow, salted hash; for a key its public
// key and key ID; for an assertion the identity it proves, its issuer
// and subject, so that holders of different assertions for one identity
// share a token (or the assertion's hash, if it names none).
func (v *credValue) cacheID(tokenURL, clientID string) string {
	v.idOnce.Do(func() {
		switch {
		case v.key != nil:
			v.id = "public-key:" + v.pub + ";kid:" + v.kid
		case v.assertion != "" && v.subject != "":
			sum := sha256.Sum256([]byte(v.subject))
			v.id = "assertion-subject:" + hex.EncodeToString(sum[:])
		case v.assertion != "":
			sum := sha256.Sum256([]byte(v.assertion))
			v.id = "assertion:" + hex.EncodeToString(sum[:])
		default:
			v.id = secretID(tokenURL, clientID, v.secret)
		}
	})
	return v.id
}
