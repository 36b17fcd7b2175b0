// A request's id in its pool: every field of a TokenRequest, encoded
// without ambiguity and with scopes and parameter names sorted, built
// without allocating for the common requests so that Pool.Token costs a
// map lookup.

package m2mtoken

import (
	"encoding/binary"
	"slices"
)

// idBuf is the stack buffer for an id: longer ones allocate.
const idBuf = 256

// smallSort is how many scopes or parameter names are sorted on the stack.
const smallSort = 8

// appendID appends r's id to dst. Equal requests (scopes in any order,
// repeated or not, empty ones left out; parameter names in any order) get
// the same id; requests that differ in any field get different ones.
func appendID(dst []byte, r *TokenRequest) []byte {
	dst = appendPart(dst, r.Audience)
	dst = appendPart(dst, r.Organization)
	dst = appendSorted(dst, r.Scopes)
	if len(r.Params) == 0 {
		return binary.AppendUvarint(dst, 0)
	}
	var small [smallSort]string
	names := small[:0]
	for k := range r.Params {
		if len(r.Params[k]) == 0 {
			continue // sends nothing, as url.Values.Encode
		}
		names = append(names, k)
	}
	slices.Sort(names)
	dst = binary.AppendUvarint(dst, uint64(len(names)))
	for _, k := range names {
		vs := r.Params[k]
		dst = appendPart(dst, k)
		dst = binary.AppendUvarint(dst, uint64(len(vs)))
		for _, v := range vs {
			dst = appendPart(dst, v)
		}
	}
	return dst
}

// appendSorted appends the set of scopes, sorted, without repeats and
// without empty ones (which send nothing: see normalScopes).
func appendSorted(dst []byte, scopes []string) []byte {
	var small [smallSort]string
	sorted := scopes
	if !slices.IsSorted(scopes) {
		sorted = append(small[:0], scopes...)
		slices.Sort(sorted)
	}
	n := 0
	for i, sc := range sorted {
		if sc != "" && (i == 0 || sc != sorted[i-1]) {
			n++
		}
	}
	dst = binary.AppendUvarint(dst, uint64(n))
	for i, sc := range sorted {
		if sc != "" && (i == 0 || sc != sorted[i-1]) {
			dst = appendPart(dst, sc)
		}
	}
	return dst
}

func appendPart(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}
