// TokenRequest: what names one token of a pool, the form a source keeps
// and sends of it, and the requests a pool refuses (parameters the client
// sets, fields larger than any real request's).

package m2mtoken

import (
	"errors"
	"fmt"
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
// (Scopes [""] sends no scope parameter, as no scopes do). A request
// larger than any real one is refused, naming the field: an Audience over
// 1 KiB, an Organization over 256 bytes, Scopes or Params over 8 KiB in
// all.
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

// The largest request a pool accepts, field by field: more than any real
// request holds (Auth0 allows API identifiers of 600 characters,
// organization IDs and names of 50, scopes of 280 each), so that whoever
// chooses a pool's requests cannot make each of its tokens hold more than
// a few KiB of them.
const (
	maxAudience     = 1 << 10 // bytes
	maxOrganization = 256
	maxScopes       = 8 << 10 // every scope, and a separator after each
	maxParams       = 8 << 10 // every name and value, and a separator after each
)

// tooLarge returns the first field of r over its bound, its size, the
// bound and what a real one holds; field is empty if none is.
func (r *TokenRequest) tooLarge() (field string, size, limit int, usual string) {
	if n := len(r.Audience); n > maxAudience {
		return "Audience", n, maxAudience, "Auth0's API identifiers have at most 600 characters"
	}
	if n := len(r.Organization); n > maxOrganization {
		return "Organization", n, maxOrganization, "Auth0's organization IDs and names have at most 50 characters"
	}
	n := 0
	for _, sc := range r.Scopes {
		n += len(sc) + 1
	}
	if n > maxScopes {
		return "Scopes", n, maxScopes, "all scopes together; Auth0's scopes have at most 280 characters each"
	}
	n = 0
	for k, vs := range r.Params {
		for _, v := range vs {
			n += len(k) + len(v) + 2
		}
	}
	if n > maxParams {
		return "Params", n, maxParams, "all names and values together"
	}
	return "", 0, 0, ""
}

// check refuses a request that would override what the client sets,
// naming the first such parameter in sorted order, and one larger than a
// pool accepts, naming the field.
func (r *TokenRequest) check() error {
	if field, n, limit, usual := r.tooLarge(); field != "" {
		return fmt.Errorf("m2mtoken: TokenRequest.%s is %d bytes, over the %d a pool accepts (%s): no real request is that large", field, n, limit, usual)
	}
	if ce := paramsError(r.Params); ce != nil {
		return errors.New(withNames(ce, func(field string) string {
			if field == "EndpointParams" {
				return "TokenRequest.Params"
			}
			return "TokenRequest." + field
		}).Error())
	}
	return nil
}
