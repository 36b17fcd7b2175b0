package rediscache

import (
	"bytes"
	"crypto/rand"
	"errors"

	"github.com/m2mtoken/m2mtoken"
)

// sealedMagic begins every sealed value: a token's entry, and the sealed
// status of a lease.
const sealedMagic = "m2mtoken-gcm1:"

// seal seals plain with the encryption key, bound to aad (the Redis key,
// and for a lease its head): the nonce, then the ciphertext.
func (c *Cache) seal(plain, aad []byte) ([]byte, error) {
	nonce := make([]byte, c.sealer.NonceSize(), c.sealer.NonceSize()+len(plain)+c.sealer.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return c.sealer.Seal(nonce, nonce, plain, aad), nil
}

// open opens what seal sealed with aad, with the encryption key or one of
// the decryption keys.
func (c *Cache) open(b, aad []byte) ([]byte, error) {
	for _, aead := range c.openers {
		ns := aead.NonceSize()
		if len(b) < ns {
			break
		}
		if p, err := aead.Open(nil, b[:ns], b[ns:], aad); err == nil {
			return p, nil
		}
	}
	return nil, errors.New("does not decrypt with any configured key (wrong key, or moved from another key)")
}

// decode reads a token's entry stored at rkey.
func (c *Cache) decode(rkey string, b []byte) (*m2mtoken.Entry, error) {
	if len(b) > maxValue {
		return nil, errors.New("over 1 MiB")
	}
	if c.sealer != nil {
		sealed, ok := bytes.CutPrefix(b, []byte(sealedMagic))
		if !ok {
			return nil, errors.New("not sealed, but an encryption key is set")
		}
		var err error
		if b, err = c.open(sealed, []byte(rkey)); err != nil {
			return nil, err
		}
	}
	e := new(m2mtoken.Entry)
	if err := e.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	return e, nil
}
