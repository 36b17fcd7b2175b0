// TokenRequest: what names one token of a pool, and the requests a pool
// refuses (parameters the client sets).

package m2mtoken

import (
	"errors"
	"maps"
	"net/url"
	"slices"
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
