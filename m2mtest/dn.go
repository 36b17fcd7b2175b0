// Distinguished names: reading the subject a tls_client_auth client
// registers, and matching it against a certificate's.

package m2mtest

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// dnAttribute is one attribute of a distinguished name: its type's OID
// and its value.
type dnAttribute struct {
	oid, value string
}

// dnTypes are the attribute types a DN may name by name: RFC 4514's,
// those Go and OpenSSL print, and a few more that certificates carry.
var dnTypes = map[string]string{
	"CN": "2.5.4.3", "SN": "2.5.4.4", "SERIALNUMBER": "2.5.4.5", "C": "2.5.4.6",
	"L": "2.5.4.7", "ST": "2.5.4.8", "S": "2.5.4.8", "STREET": "2.5.4.9", "O": "2.5.4.10",
	"OU": "2.5.4.11", "TITLE": "2.5.4.12", "T": "2.5.4.12", "POSTALCODE": "2.5.4.17",
	"GN": "2.5.4.42", "GIVENNAME": "2.5.4.42", "DC": "0.9.2342.19200300.100.1.25",
	"UID": "0.9.2342.19200300.100.1.1", "EMAILADDRESS": "1.2.840.113549.1.9.1", "E": "1.2.840.113549.1.9.1",
}

// parseDN reads a distinguished name: RFC 4514 ("CN=billing,O=Example
// Corp", with the escapes \, \+ \" \\ \< \> \; \= and \XX, and spaces
// around the separators allowed as RFC 2253 readers allow them), or
// OpenSSL's older form ("/O=Example Corp/CN=billing"). The attributes come
// back sorted: they are compared as a set, since RFC 4514 and OpenSSL
// write them in opposite orders.
func parseDN(s string) ([]dnAttribute, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("the DN is empty")
	}
	sep := ",;"
	if strings.HasPrefix(s, "/") {
		s, sep = s[1:], "/"
	}
	var attrs []dnAttribute
	for _, rdn := range splitUnescaped(s, sep) {
		for _, atv := range splitUnescaped(rdn, "+") {
			typ, val, ok := strings.Cut(atv, "=")
			typ = strings.TrimSpace(typ)
			if !ok || typ == "" {
				return nil, fmt.Errorf("%q is not TYPE=VALUE, such as CN=billing", clip(strings.TrimSpace(atv)))
			}
			oid, err := dnType(typ)
			if err != nil {
				return nil, err
			}
			v, err := dnValue(val)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", typ, err)
			}
			attrs = append(attrs, dnAttribute{oid, v})
		}
	}
	sortDN(attrs)
	return attrs, nil
}

// splitUnescaped splits s at each of seps not escaped by a backslash.
func splitUnescaped(s, seps string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\':
			i++
		case strings.IndexByte(seps, s[i]) >= 0:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// dnType returns the OID of an attribute type: a name of dnTypes, in any
// case, or a dotted OID.
func dnType(typ string) (string, error) {
	if oid, ok := dnTypes[strings.ToUpper(typ)]; ok {
		return oid, nil
	}
	typ = strings.TrimPrefix(strings.ToUpper(typ), "OID.")
	parts := strings.Split(typ, ".")
	for _, p := range parts {
		if p == "" || strings.Trim(p, "0123456789") != "" {
			return "", fmt.Errorf("attribute type %q is not known: use CN, O, OU, C, L, ST, DC, UID, emailAddress, or the type's OID, such as 2.5.4.3", clip(typ))
		}
	}
	if len(parts) < 2 {
		return "", fmt.Errorf("attribute type %q is not an OID", clip(typ))
	}
	return typ, nil
}

// dnValue reads an attribute's value: its escapes undone, and the spaces
// around it that are not escaped dropped. A #-prefixed BER value is
// refused: certificates' subjects are strings.
func dnValue(v string) (string, error) {
	v = strings.TrimLeft(v, " ")
	if strings.HasPrefix(v, "#") {
		return "", errors.New("a #-prefixed BER value is not read: write the value as a string")
	}
	var b strings.Builder
	kept := 0 // b's length up to the last escaped byte, which trimming keeps
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		if i+1 >= len(v) {
			return "", errors.New("the value ends with a lone backslash")
		}
		if i+2 < len(v) && isHex(v[i+1]) && isHex(v[i+2]) {
			x, _ := hex.DecodeString(v[i+1 : i+3])
			b.WriteByte(x[0])
			i += 2
		} else {
			i++
			b.WriteByte(v[i])
		}
		kept = b.Len()
	}
	out := b.String()
	return out[:kept] + strings.TrimRight(out[kept:], " "), nil
}

func isHex(c byte) bool { return strings.IndexByte("0123456789abcdefABCDEF", c) >= 0 }

// certDN is a certificate subject's attributes, as parseDN returns a
// registered DN's.
func certDN(n pkix.Name) []dnAttribute {
	var attrs []dnAttribute
	for _, a := range n.Names {
		v, ok := a.Value.(string)
		if !ok {
			v = fmt.Sprint(a.Value)
		}
		attrs = append(attrs, dnAttribute{asn1.ObjectIdentifier(a.Type).String(), v})
	}
	sortDN(attrs)
	return attrs
}

func sortDN(attrs []dnAttribute) {
	slices.SortFunc(attrs, func(a, b dnAttribute) int {
		if c := strings.Compare(a.oid, b.oid); c != 0 {
			return c
		}
		return strings.Compare(a.value, b.value)
	})
}
