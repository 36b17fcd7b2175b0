// DPoP (RFC 9449): proofs at the token endpoint, the nonces servers hand
// out, the token type an answer must have, the cache key of a bound token,
// and the proofs for API requests that Transport and AuthHeaders send.

package m2mtoken

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"

	"github.com/m2mtoken/m2mtoken/internal/dpop"
)

// tokenTypeDPoP is the token_type of a DPoP-bound token, as the source
// hands it out in [oauth2.Token.TokenType].
const tokenTypeDPoP = "DPoP"

// maxAPINonces bounds the API origins whose nonce a source remembers.
const maxAPINonces = 1024

// maxNonceRetries bounds the use_dpop_nonce answers one fetch follows in a
// row: a server that asks for a nonce again after getting one is broken.
const maxNonceRetries = 2

func (c *Config) dpopString() string {
	if c.DPoPKey == nil {
		return ""
	}
	return " dpop_key:<redacted>"
}

// checkDPoP validates the DPoP fields.
func (c *Config) checkDPoP() error {
	if c.DPoPKey == nil {
		switch {
		case c.RequireDPoP:
			return configErr("{RequireDPoP} is set without {DPoPKey}: set a key (see LoadPrivateKey) or unset RequireDPoP")
		case c.DPoPAlgorithm != "":
			return configErr("{DPoPAlgorithm} is set without {DPoPKey}")
		}
		return nil
	}
	if _, err := dpop.NewKey(c.DPoPKey, c.DPoPAlgorithm); err != nil {
		return configErr("{DPoPKey}: %v", err)
	}
	return nil
}

// dpopState is a source's DPoP key and the nonces servers gave it.
type dpopState struct {
	key      *dpop.Key
	tokenHTU string

	tokenNonce atomic.Pointer[string] // the token endpoint's
	apiNonces  sync.Map               // origin -> string: each API's own
	apiCount   atomic.Int64

	bearerWarned atomic.Bool
}

// newDPoP returns the state for cfg (already validated), or nil without
// a key.
func newDPoP(cfg *Config, tokenURL string) *dpopState {
	if cfg.DPoPKey == nil {
		return nil
	}
	key, err := dpop.NewKey(cfg.DPoPKey, cfg.DPoPAlgorithm)
	if err != nil {
		return nil // checkDPoP refused it already
	}
	u, _ := url.Parse(tokenURL)
	htu, _ := dpop.HTU(u)
	return &dpopState{key: key, tokenHTU: htu}
}

// addTokenProof adds a proof to a token request, signed at now: htm POST,
// htu the URL actually posted to (the mTLS alias, if set), and the token
// endpoint's last nonce. d may be nil (no DPoP key): it adds nothing.
func (d *dpopState) addTokenProof(req *http.Request, now time.Time) error {
	if d == nil {
		return nil
	}
	var nonce string
	if p := d.tokenNonce.Load(); p != nil {
		nonce = *p
	}
	proof, err := d.key.Proof(http.MethodPost, d.tokenHTU, nonce, "", now)
	if err != nil {
		return fmt.Errorf("signing the DPoP proof: %w", err)
	}
	req.Header.Set("DPoP", proof)
	return nil
}

// sawTokenAnswer remembers the token endpoint's nonce from any answer,
// and reports whether it was a new one. d may be nil.
func (d *dpopState) sawTokenAnswer(h http.Header) (nonce string, changed bool) {
	if d == nil {
		return "", false
	}
	if n, ok := dpop.ParseNonce(h.Get("DPoP-Nonce")); ok {
		if old := d.tokenNonce.Load(); old == nil || *old != n {
			d.tokenNonce.Store(&n)
			return n, true
		}
	}
	return "", false
}

// nonceChallenge reports whether te asks for the request again with the
// nonce the server just gave: part of the protocol, not a failure.
func (c *client) nonceChallenge(te *TokenError) bool {
	return c.dpop != nil && te != nil && te.Code == "use_dpop_nonce" &&
		(te.StatusCode == http.StatusBadRequest || te.StatusCode == http.StatusUnauthorized) &&
		c.dpop.tokenNonce.Load() != nil
}

// checkTokenType refuses a token whose type does not fit the request: a
// DPoP token without a key, or (with RequireDPoP) a Bearer token although
// a proof was sent. A Bearer token to a proof is otherwise used as a
// bearer token, with a warning logged once.
//
// A token typed DPoP that is bound to the client's certificate and to no
// key is a certificate-bound token, presented as Bearer (RFC 8705): Auth0
// documents token_type DPoP for its mTLS-bound tokens.
func (c *client) checkTokenType(ent *Entry, status int, log *slog.Logger) *TokenError {
	switch {
	case isDPoPType(ent.TokenType) && c.dpop == nil && c.certBoundOnly(ent):
		ent.TokenType = "Bearer"
		if !c.cert.typeNoted.Swap(true) {
			log.Info("the token endpoint typed a certificate-bound token DPoP; it is presented as Bearer, with the certificate, as RFC 8705 says",
				slog.String("token", Fingerprint(ent.AccessToken)))
		}
	case ent.TokenType == tokenTypeDPoP && c.dpop == nil:
		return &TokenError{URL: c.tokenURL, StatusCode: status,
			Description: "the endpoint answered a DPoP-bound token to a request without a DPoP proof: give the client a DPoP key with " + c.name("DPoPKey")}
	case ent.TokenType != tokenTypeDPoP && c.dpop != nil:
		if c.cfg.RequireDPoP {
			req := c.name("RequireDPoP")
			return &TokenError{URL: c.tokenURL, StatusCode: status,
				Description: "the endpoint answered a Bearer token although a DPoP proof was sent, and " + req + " is set: make the API require sender-constrained (DPoP) tokens, or unset " + req}
		}
		if !c.dpop.bearerWarned.Swap(true) {
			msg := "the token endpoint answered a Bearer token although a DPoP proof was sent: the API does not constrain tokens; using it as a bearer token"
			if req, ok := c.setting("RequireDPoP"); ok {
				msg += " (set " + req + " to refuse it)"
			}
			log.Warn(msg, slog.String("token", Fingerprint(ent.AccessToken)))
		}
	}
	return nil
}

// usableType reports whether a token of this type, found in the cache,
// can be used by the client's tokens (see checkTokenType).
func (c *client) usableType(tokenType string) bool {
	if strings.EqualFold(tokenType, tokenTypeDPoP) {
		return c.dpop != nil
	}
	return c.dpop == nil || !c.cfg.RequireDPoP
}

// isDPoPType reports whether a token_type is DPoP's (case-insensitive).
func isDPoPType(t string) bool { return strings.EqualFold(t, tokenTypeDPoP) }

// isDPoP reports whether tok is DPoP-bound. A length check first keeps
// the Bearer path at one comparison.
func isDPoP(tok *oauth2.Token) bool {
	return len(tok.TokenType) == len(tokenTypeDPoP) && strings.EqualFold(tok.TokenType, tokenTypeDPoP)
}

// apiNonce returns the nonce last given by the API at origin.
func (d *dpopState) apiNonce(origin string) string {
	if v, ok := d.apiNonces.Load(origin); ok {
		return v.(string)
	}
	return ""
}

// sawAPIAnswer remembers an API's nonce from any of its answers.
func (d *dpopState) sawAPIAnswer(origin string, h http.Header) bool {
	v := h.Get("DPoP-Nonce")
	if v == "" {
		return false
	}
	n, ok := dpop.ParseNonce(v)
	if !ok {
		return false
	}
	if _, loaded := d.apiNonces.Swap(origin, n); !loaded && d.apiCount.Add(1) > maxAPINonces {
		// Too many APIs for a client: forget them all, rather than grow.
		d.apiNonces.Clear()
		d.apiCount.Store(0)
	}
	return true
}
