// DPoP (RFC 9449) as a strict server checks it: proofs at the token
// endpoint and at protected APIs, nonces, replay, and DPoP-bound tokens.

package m2mtest

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/dpop"
)

// DPoPAlgorithms are the proof algorithms the server accepts.
var DPoPAlgorithms = []string{dpop.ES256, dpop.PS256, dpop.RS256, dpop.EdDSA}

// dpopWindow is how far a proof's iat may be from the server's clock.
const dpopWindow = 60 * time.Second

// dpopState is the server's DPoP state; s.mu guards it.
type dpopState struct {
	nonceAtToken, nonceAtAPI bool
	tokenNonces, apiNonces   [2]string // current, previous
	seen                     map[string]time.Time
	lastSweep                time.Time
}

func newDPoPState() dpopState {
	return dpopState{
		tokenNonces: [2]string{randomID()}, apiNonces: [2]string{randomID()},
		seen: map[string]time.Time{},
	}
}

// RequireDPoPNonce makes proofs carry a server nonce (RFC 9449 section 8):
// at the token endpoint (answered 400 use_dpop_nonce with a DPoP-Nonce
// header) and at APIs behind [Server.Protect] (401 WWW-Authenticate: DPoP
// error="use_dpop_nonce"). The two use different nonces, as two servers
// would. Answers then carry the current nonce in DPoP-Nonce.
func (s *Server) RequireDPoPNonce(tokenEndpoint, api bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dpop.nonceAtToken, s.dpop.nonceAtAPI = tokenEndpoint, api
}

// RotateDPoPNonces starts new nonces at the token endpoint and the APIs;
// the previous ones are still accepted until the next rotation.
func (s *Server) RotateDPoPNonces() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dpop.tokenNonces = [2]string{randomID(), s.dpop.tokenNonces[0]}
	s.dpop.apiNonces = [2]string{randomID(), s.dpop.apiNonces[0]}
}

// proofError is a refused proof, with the error code to answer.
type proofError struct {
	code, desc, nonce string
}

func (e *proofError) Error() string { return e.code + ": " + e.desc }

// checkProof checks the request's DPoP proof: one DPoP header, a valid
// signature with its own key, typ, alg, htm and htu of this request, iat
// within a minute, a nonce if the server requires one here, ath when the
// request carries a token, and a jti not seen before. It returns nil and
// no error if there is no proof.
func (s *Server) checkProof(r *http.Request, htu string, atAPI bool, ath string) (*dpop.Proof, error) {
	vals := r.Header.Values("DPoP")
	switch {
	case len(vals) == 0:
		return nil, nil
	case len(vals) > 1:
		return nil, &proofError{code: "invalid_dpop_proof", desc: "more than one DPoP header"}
	}
	p, err := dpop.Verify(vals[0], DPoPAlgorithms)
	if err != nil {
		return nil, &proofError{code: "invalid_dpop_proof", desc: err.Error()}
	}
	s.mu.Lock()
	now := s.now()
	required, nonces := s.dpop.nonceAtToken, s.dpop.tokenNonces
	if atAPI {
		required, nonces = s.dpop.nonceAtAPI, s.dpop.apiNonces
	}
	s.mu.Unlock()
	if err := p.Check(r.Method, htu, now, dpopWindow); err != nil {
		return nil, &proofError{code: "invalid_dpop_proof", desc: err.Error()}
	}
	if ath != "" && p.ATH != ath {
		return nil, &proofError{code: "invalid_dpop_proof", desc: "ath does not match the access token"}
	}
	if required && (p.Nonce == "" || (p.Nonce != nonces[0] && p.Nonce != nonces[1])) {
		desc := "a nonce is required in the DPoP proof"
		if p.Nonce != "" {
			desc = "the DPoP proof's nonce is not current"
		}
		return nil, &proofError{code: "use_dpop_nonce", desc: desc, nonce: nonces[0]}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.dpop.lastSweep) > dpopWindow {
		for k, exp := range s.dpop.seen {
			if exp.Before(now) {
				delete(s.dpop.seen, k)
			}
		}
		s.dpop.lastSweep = now
	}
	key := p.JKT + "\x00" + p.JTI
	if _, replay := s.dpop.seen[key]; replay {
		return nil, &proofError{code: "invalid_dpop_proof", desc: "the DPoP proof's jti has been used before (replay)"}
	}
	s.dpop.seen[key] = now.Add(2 * dpopWindow)
	return p, nil
}

// currentNonce is the nonce to send in DPoP-Nonce, or "" if none is
// required there.
func (s *Server) currentNonce(atAPI bool) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case atAPI && s.dpop.nonceAtAPI:
		return s.dpop.apiNonces[0]
	case !atAPI && s.dpop.nonceAtToken:
		return s.dpop.tokenNonces[0]
	}
	return ""
}

// tokenProof checks the proof of a token request from c, answering the
// error itself. It returns the thumbprint to bind the token to ("" for a
// Bearer token) and whether to go on.
func (s *Server) tokenProof(w http.ResponseWriter, r *http.Request, c Client) (string, bool) {
	u, _ := url.Parse(s.tokenURLOf(r))
	htu, _ := dpop.HTU(u)
	p, err := s.checkProof(r, htu, false, "")
	var pe *proofError
	switch {
	case errors.As(err, &pe):
		if pe.nonce != "" {
			w.Header().Set("DPoP-Nonce", pe.nonce)
		}
		writeError(w, http.StatusBadRequest, pe.code, pe.desc, "")
		return "", false
	case p == nil && c.RequireDPoP:
		writeError(w, http.StatusBadRequest, "invalid_request", "DPoP proof is required for this client", "")
		return "", false
	case p == nil || c.IgnoreDPoP:
		return "", true
	}
	return p.JKT, true
}

// RequestError is why [Server.VerifyRequest] refused a request, in the
// terms of a WWW-Authenticate challenge (RFC 6750, RFC 9449).
type RequestError struct {
	// Scheme is the challenge's scheme: Bearer or DPoP.
	Scheme string
	// Code is the error code: invalid_token, invalid_dpop_proof,
	// use_dpop_nonce, or "" for a request without a token.
	Code        string
	Description string
	// Nonce is the nonce to send in DPoP-Nonce, for use_dpop_nonce.
	Nonce string
}

// Error is the OAuth error code and description.
func (e *RequestError) Error() string {
	if e.Code == "" {
		return e.Description
	}
	return e.Code + ": " + e.Description
}

// challenge is the WWW-Authenticate value for e.
func (e *RequestError) challenge() string {
	if e.Scheme == "DPoP" {
		v := `DPoP algs="` + strings.Join(DPoPAlgorithms, " ") + `"`
		if e.Code != "" {
			v += fmt.Sprintf(`, error=%q, error_description=%q`, e.Code, e.Description)
		}
		return v
	}
	if e.Code == "" {
		return `Bearer realm="api"`
	}
	return fmt.Sprintf(`Bearer realm="api", error=%q, error_description=%q`, e.Code, e.Description)
}

// VerifyRequest checks the token a request to an API carries, and returns
// its claims: "Authorization: Bearer" with a token [Server.Verify]
// accepts, or "Authorization: DPoP" with a DPoP-bound token and a DPoP
// proof for this request (signature, typ, alg, htm, htu, iat, jti not
// replayed, ath of the token, the proof's key matching the token's
// cnf.jkt, and the API's nonce if [Server.RequireDPoPNonce] asks for one).
// A DPoP-bound token sent as Bearer is refused. A token bound to a client
// certificate (cnf.x5t#S256, RFC 8705 section 3) is accepted only from a
// request over a TLS connection with that certificate: the API's server
// must ask for client certificates (tls.RequestClientCert, as
// [NewMTLSAliasServer]'s alias does). Errors are *RequestError.
func (s *Server) VerifyRequest(r *http.Request, audience string) (map[string]any, error) {
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	tok = strings.TrimSpace(tok)
	if tok == "" || (!strings.EqualFold(scheme, "Bearer") && !strings.EqualFold(scheme, "DPoP")) {
		return nil, &RequestError{Scheme: "Bearer", Description: "missing bearer or DPoP token"}
	}
	if len(r.Header.Values("Authorization")) > 1 {
		return nil, &RequestError{Scheme: "Bearer", Code: "invalid_request", Description: "more than one Authorization header"}
	}
	claims, err := s.verify(tok, audience)
	cnf, _ := claims["cnf"].(map[string]any)
	if strings.EqualFold(scheme, "Bearer") {
		switch {
		case err != nil:
			return nil, &RequestError{Scheme: "Bearer", Code: "invalid_token", Description: err.Error()}
		case claims["cnf"] == nil:
			return claims, nil
		case cnf["jkt"] == nil && cnf["x5t#S256"] != nil:
			if re := certificateBindingError(r, cnf, "Bearer"); re != nil {
				return nil, re
			}
			return claims, nil
		}
		return nil, &RequestError{Scheme: "DPoP", Code: "invalid_token", Description: "the token is DPoP-bound: send it as Authorization: DPoP, with a DPoP proof"}
	}
	if err != nil {
		return nil, &RequestError{Scheme: "DPoP", Code: "invalid_token", Description: err.Error()}
	}
	jkt, _ := cnf["jkt"].(string)
	if jkt == "" {
		return nil, &RequestError{Scheme: "DPoP", Code: "invalid_token", Description: "the token is not DPoP-bound (no cnf.jkt): send it as Bearer"}
	}
	htu := "http://" + r.Host + r.URL.EscapedPath()
	if r.TLS != nil {
		htu = "https://" + r.Host + r.URL.EscapedPath()
	}
	u, err := url.Parse(htu)
	if err != nil {
		return nil, &RequestError{Scheme: "DPoP", Code: "invalid_request", Description: "the request URL does not parse"}
	}
	htu, _ = dpop.HTU(u)
	p, err := s.checkProof(r, htu, true, dpop.ATH(tok))
	var pe *proofError
	switch {
	case errors.As(err, &pe):
		return nil, &RequestError{Scheme: "DPoP", Code: pe.code, Description: pe.desc, Nonce: pe.nonce}
	case p == nil:
		return nil, &RequestError{Scheme: "DPoP", Code: "invalid_dpop_proof", Description: "a DPoP token needs a DPoP proof header"}
	case p.JKT != jkt:
		return nil, &RequestError{Scheme: "DPoP", Code: "invalid_token", Description: "the DPoP proof's key is not the key the token is bound to (cnf.jkt)"}
	}
	if re := certificateBindingError(r, cnf, "DPoP"); re != nil {
		return nil, re
	}
	return claims, nil
}
