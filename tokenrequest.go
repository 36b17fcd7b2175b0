// TokenRequest: what names one token of a pool, the form a source keeps
// and sends of it, and the requests a pool refuses (parameters the client
// sets).

package m2mtoken

import (
	"errors"
	"maps"
	"net/url"
	"slices"
	"strings"
)

// TokenRequest names one token of a pool's client. Its fields are sent as
// the token request's audience, scope (space-separated), organization and
// further parameters, and all of them are part of the token's cache key:
// two requests that differ in any field never share a token. Scopes are a
// set: their order does not matter.
//
// A request names the whole token: its empty fields are not filled in from
// the pool's default request (Config's Audience, Scopes, Organization and
// EndpointParams), which is used only where no request is given.
//
// A source keeps and sends its request's scopes as the scope parameter
// carries them: split at spaces, sorted, without repeats or empty ones
// (Scopes [""] sends no scope parameter, as no scopes do).
type TokenRequest struct {
	// Audience is the identifier of the API the token is for.
	Audience string
	// Scopes are the scopes asked for.
	Scopes []string
	// Organization is an Auth0 Organization's ID or name.
	Organization string
	// Params are further request parameters, such as RFC 8707's
	// "resource". They may not set what the client or another field sets
	// (grant_type, client_id, client_secret, client_assertion*, audience,
	// scope, organization).
	Params url.Values
}

func (r TokenRequest) clone() TokenRequest {
	c := r
	c.Scopes = append([]string(nil), r.Scopes...)
	if r.Params != nil {
		c.Params = cloneValues(r.Params)
	}
	return c
}

// owned returns a copy of r that shares nothing with it, as a source keeps
// and sends it: its scopes normalised (normalScopes), and without
// parameters that have no value (url.Values.Encode sends nothing for
// them, and a JSON body would send an empty list). Requests whose owned
// forms are equal send the same token request.
func (r TokenRequest) owned() TokenRequest {
	c := r
	c.Scopes = normalScopes(r.Scopes)
	if r.Params != nil {
		c.Params = cloneValues(r.Params)
		for k, vs := range c.Params {
			if len(vs) == 0 {
				delete(c.Params, k)
			}
		}
	}
	return c
}

// normalScopes returns scopes as the scope parameter carries them: split
// at spaces (its separator), without empty ones or repeats, and sorted (a
// set's order means nothing); nil if none is left. So [""] sends no scope
// parameter, as no scopes do, rather than an empty one.
func normalScopes(scopes []string) []string {
	var out []string
	for _, sc := range scopes {
		for f := range strings.SplitSeq(sc, " ") {
			if f != "" {
				out = append(out, f)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// check refuses a request that would override what the client sets,
// naming the first such parameter in sorted order.
func (r *TokenRequest) check() error {
	for _, k := range slices.Sorted(maps.Keys(r.Params)) {
		if reservedParam(k) {
			field := ""
			switch k {
			case "audience":
				field = ": use TokenRequest.Audience"
			case "scope":
				field = ": use TokenRequest.Scopes"
			case "organization":
				field = ": use TokenRequest.Organization"
			}
			return errors.New("m2mtoken: TokenRequest.Params may not set \"" + k + "\": the client sets it" + field)
		}
	}
	return nil
}
