// Transport's path for DPoP-bound tokens: a new proof per request, the
// API's nonce challenge, and the revoked-token replay under DPoP's scheme.
// Bearer tokens never come here.

package m2mtoken

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"

	"golang.org/x/oauth2"

	"github.com/m2mtoken/m2mtoken/internal/clock"
	"github.com/m2mtoken/m2mtoken/internal/dpop"
)

// dpopValue caches, for the last DPoP token, the Authorization value and
// ath, so that a request only builds and signs its proof.
type dpopValue struct {
	tok *oauth2.Token
	val []string
	ath string
}

// prover is what signs the DPoP proofs of a source's API requests: its
// client's key and the APIs' nonces, on its clock.
type prover struct {
	d   *dpopState
	clk clock.Clock
}

// proverOf returns the prover of src, a *TokenSource with a DPoP key.
func proverOf(src oauth2.TokenSource) (prover, bool) {
	if s, ok := src.(*TokenSource); ok && s.c.dpop != nil {
		return prover{s.c.dpop, s.c.clock}, true
	}
	return prover{}, false
}

// apiProof signs a proof for one API request, with the origin's last
// nonce.
func (p prover) apiProof(method, htu, origin, ath string) (string, error) {
	proof, err := p.d.key.Proof(method, htu, p.d.apiNonce(origin), ath, p.clk.Now())
	if err != nil {
		return "", fmt.Errorf("m2mtoken: signing the DPoP proof: %w", err)
	}
	return proof, nil
}

var errNoProver = errors.New("m2mtoken: the token is DPoP-bound (token_type DPoP) but Transport.Source cannot sign DPoP proofs; nothing was sent: use a *TokenSource with Config.DPoPKey as the Source")

// roundTripDPoP sends req with a DPoP-bound token. It owns req.Body.
func (t *Transport) roundTripDPoP(src oauth2.TokenSource, req *http.Request, tok *oauth2.Token) (*http.Response, error) {
	p, ok := proverOf(src)
	if !ok {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, errNoProver
	}
	htu, origin := dpop.HTU(req.URL)
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	body := req.Body
	nonceRetried, tokenRetried := false, false
	for {
		r2, err := t.authorizeDPoP(req, body, tok, p, htu, origin)
		if err != nil {
			if body != nil {
				body.Close()
			}
			return nil, err
		}
		resp, err := t.base().RoundTrip(r2)
		if err != nil {
			return resp, err
		}
		gaveNonce := p.d.sawAPIAnswer(origin, resp.Header)
		if resp.StatusCode != http.StatusUnauthorized || !replayable {
			return resp, nil
		}
		chs := dpop.ParseChallenges(resp.Header.Values("Www-Authenticate"))
		code, ok := dpop.Error(chs, "DPoP")
		if !ok {
			code, _ = dpop.Error(chs, "Bearer")
		}
		switch {
		case code == "use_dpop_nonce" && gaveNonce && !nonceRetried:
			// The API wants its own nonce in the proof: once more with it.
			nonceRetried = true
		case (code == "invalid_token" || len(chs) == 0) && !tokenRetried:
			inv, ok := src.(invalidator)
			if !ok {
				return resp, nil
			}
			inv.Invalidate(tok)
			tok2, err := token(src, req.Context())
			if err != nil || tok2.AccessToken == tok.AccessToken || !isDPoP(tok2) {
				return resp, nil
			}
			tok, tokenRetried = tok2, true
		default:
			return resp, nil
		}
		if req.GetBody != nil {
			if body, err = req.GetBody(); err != nil {
				return resp, nil
			}
		}
		io.CopyN(io.Discard, resp.Body, 4<<10)
		resp.Body.Close()
	}
}

// authorizeDPoP is authorize for a DPoP-bound token: a copy of req with
// "Authorization: DPoP <token>" and a new proof for it.
func (t *Transport) authorizeDPoP(req *http.Request, body io.ReadCloser, tok *oauth2.Token, p prover, htu, origin string) (*http.Request, error) {
	dv := t.lastDPoP.Load()
	if dv == nil || dv.tok != tok {
		dv = &dpopValue{tok: tok, val: []string{tokenTypeDPoP + " " + tok.AccessToken}, ath: dpop.ATH(tok.AccessToken)}
		t.lastDPoP.Store(dv)
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	proof, err := p.apiProof(method, htu, origin, dv.ath)
	if err != nil {
		return nil, err
	}
	r2 := new(http.Request)
	*r2 = *req
	h := maps.Clone(req.Header)
	if h == nil {
		h = make(http.Header, 2)
	}
	h["Authorization"] = dv.val
	h["Dpop"] = []string{proof}
	r2.Header = h
	r2.Body = body
	return r2, nil
}
