// The client's TLS certificate (RFC 8705): presented to the token
// endpoint, where it may be the client's credential (tls_client_auth,
// self_signed_tls_client_auth) and binds the tokens issued over it, and
// to the APIs, which check that a bound token comes with its certificate.
//
// The certificate and its key are followed in their files as the other
// credentials are (credential.go): read for each token request, at a TLS
// handshake (at most once a second) and every certCheck, taken only as a
// pair whose key matches its certificate, never half-written. When the
// certificate changes, new connections present the new one, and tokens
// bound to the one before (or fetched with it, when they do not say) are
// dropped, so that the next call fetches one bound to the new certificate
// instead of sending a token the API would refuse.

package m2mtoken

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/atomicfile"
	"github.com/m2mtoken/m2mtoken/internal/clock"
	"github.com/m2mtoken/m2mtoken/internal/follow"
)

// certCheck is how often a followed certificate's files are looked at
// when nothing else reads them; certHandshake how often a handshake may
// read them.
const (
	certCheck     = 30 * time.Second
	certHandshake = time.Second
)

// clientCert is the client's certificate: where it comes from, and the
// pair in use.
type clientCert struct {
	certFile, keyFile *follow.File // or nil, with get
	get               func() (*tls.Certificate, error)
	clk               clock.Clock
	log               *slog.Logger
	// changed is told of a new certificate, and expiring of one that is
	// about to expire (the client's).
	changed  func(old, cur *certValue)
	expiring func(v *certValue)

	cur atomic.Pointer[certValue]

	// mu is held across a read of the files, and never while the log or
	// changed and expiring are told (certNews): a handshake that finds it
	// held presents cur rather than wait.
	mu     sync.Mutex
	looked time.Time // when a handshake last read them
	warned string    // the last file error warned about
	// expired is the certificate last warned about for its NotAfter.
	expired string
	// typeNoted is set once a certificate-bound token typed DPoP has been
	// logged (checkTokenType).
	typeNoted atomic.Bool
}

// certValue is one certificate and its key.
type certValue struct {
	cert *tls.Certificate
	// thumb is the RFC 8705 thumbprint of its leaf: base64url(SHA-256(DER)),
	// as a bound token's cnf.x5t#S256 says it.
	thumb               string
	notBefore, notAfter time.Time
}

// newClientCert returns the certificate cfg (validated) gives, read once,
// or nil if it gives none.
func newClientCert(cfg *Config, clk clock.Clock, log *slog.Logger) (*clientCert, error) {
	cc := &clientCert{clk: clk, log: log}
	switch {
	case cfg.ClientCertFile != "":
		cc.certFile = follow.New(cfg.ClientCertFile, follow.Options{Limit: atomicfile.CAFileLimit, What: "a certificate file", Clock: clk})
		cc.keyFile = follow.New(cfg.ClientKeyFile, follow.Options{Limit: atomicfile.KeyFileLimit, What: "a key file", Clock: clk})
	case cfg.GetClientCertificate != nil:
		cc.get = cfg.GetClientCertificate
	default:
		return nil, nil
	}
	if _, err := cc.current(context.Background()); err != nil {
		return nil, configErr("{"+cc.field()+"}: %v", err)
	}
	return cc, nil
}

// field is the Config field that gives the certificate, for messages; cc
// may be nil (a client without one).
func (cc *clientCert) field() string {
	if cc != nil && cc.get != nil {
		return "GetClientCertificate"
	}
	return "ClientCertFile"
}

// loadKeyPair reads a certificate and its key from PEM files, bounded.
func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	c, err := atomicfile.ReadLimited(certFile, atomicfile.CAFileLimit, "a certificate file")
	if err != nil {
		return tls.Certificate{}, err
	}
	k, err := atomicfile.ReadLimited(keyFile, atomicfile.KeyFileLimit, "a key file")
	if err != nil {
		return tls.Certificate{}, err
	}
	return keyPair(certFile, keyFile, c, k)
}

// keyPair parses a certificate and its key read from the files certFile
// and keyFile, and says what is wrong in words that name the file: crypto/tls's
// own ("failed to find any PEM data in certificate input") name none.
func keyPair(certFile, keyFile string, c, k []byte) (tls.Certificate, error) {
	switch {
	case len(bytes.TrimSpace(c)) == 0:
		return tls.Certificate{}, fmt.Errorf("%s is empty: it should hold the client certificate (PEM)", certFile)
	case len(bytes.TrimSpace(k)) == 0:
		return tls.Certificate{}, fmt.Errorf("%s is empty: it should hold the certificate's private key (PEM)", keyFile)
	}
	pair, err := tls.X509KeyPair(c, k)
	if err == nil {
		return pair, nil
	}
	switch msg := err.Error(); {
	case strings.Contains(msg, "does not match"):
		err = fmt.Errorf("the private key in %s is not the key of the certificate in %s (its first certificate): give the key the certificate was issued for", keyFile, certFile)
	case strings.Contains(msg, "in certificate input"):
		err = fmt.Errorf("%s holds no certificate (PEM \"CERTIFICATE\" block): is it the certificate's file? (%v)", certFile, err)
	case strings.Contains(msg, "certificate rather than a key"), strings.Contains(msg, "in key input"):
		err = fmt.Errorf("%s holds no private key (PEM \"PRIVATE KEY\" block): is it the key's file? (%v)", keyFile, err)
	default:
		err = fmt.Errorf("%s and %s: %w", certFile, keyFile, err)
	}
	return tls.Certificate{}, err
}

// certValueOf describes cert, whose leaf is its first certificate.
func certValueOf(cert *tls.Certificate) (*certValue, error) {
	if cert == nil || len(cert.Certificate) == 0 {
		return nil, errors.New("no certificate")
	}
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, err
		}
	}
	sum := sha256.Sum256(cert.Certificate[0])
	return &certValue{cert: cert, thumb: base64.RawURLEncoding.EncodeToString(sum[:]), notBefore: leaf.NotBefore, notAfter: leaf.NotAfter}, nil
}

// current reads the certificate now (the files, or the function) and
// returns it: a new pair is taken once both files read well and the key
// matches the certificate; until then, or when they cannot be read, the
// last good pair stays, with a warning naming the file. The error is for
// a certificate never read.
func (cc *clientCert) current(ctx context.Context) (*certValue, error) {
	cc.mu.Lock()
	v, news, err := cc.read(ctx)
	cc.mu.Unlock()
	cc.tell(news)
	return v, err
}

// certNews is what a read of the certificate has to say, said once cc.mu
// is released: the log and the Observer are the user's code, and may be
// slow, and changed drops tokens under the pool's locks.
type certNews struct {
	warn      error      // the files cannot be read: the last good pair stays
	recovered bool       // they read well again
	old, cur  *certValue // the certificate changed from old to cur
	expiring  *certValue // cur is about to expire, or has expired
}

// read is current's work; cc.mu is held. What it has to say is returned
// for tell.
func (cc *clientCert) read(ctx context.Context) (*certValue, certNews, error) {
	old := cc.cur.Load()
	var v *certValue
	var news certNews
	var err error
	if cc.get != nil {
		var cert *tls.Certificate
		if cert, err = cc.get(); err == nil {
			v, err = certValueOf(cert)
		}
		if err != nil {
			err = fmt.Errorf("Config.GetClientCertificate: %w", err)
		}
	} else {
		c, k := cc.certFile.Read(ctx), cc.keyFile.Read(ctx)
		switch {
		case c.Version == 0:
			err = c.Err
		case k.Version == 0:
			err = k.Err
		default:
			var pair tls.Certificate
			if pair, err = keyPair(cc.certFile.Path(), cc.keyFile.Path(), c.Content, k.Content); err == nil {
				v, err = certValueOf(&pair)
			}
			if err == nil {
				err = errors.Join(c.Err, k.Err)
			}
		}
	}
	if err != nil && ctx.Err() == nil {
		if old == nil && v == nil {
			return nil, news, err
		}
		if msg := err.Error(); msg != cc.warned {
			cc.warned = msg
			news.warn = err
		}
	} else if err == nil && cc.warned != "" {
		cc.warned = ""
		news.recovered = true
	}
	if v == nil || old != nil && v.thumb == old.thumb {
		v = old
	} else {
		cc.cur.Store(v)
		if old != nil {
			news.old, news.cur = old, v
		}
	}
	if cc.expiring != nil && cc.expires(v) { // wired by its client: not while New reads it first
		news.expiring = v
	}
	return v, news, nil
}

// tell says what a read found, with cc.mu released. A change already
// followed by another (a read that stored a newer certificate meanwhile,
// and tells of it) is logged but not passed to changed.
func (cc *clientCert) tell(n certNews) {
	switch {
	case n.warn != nil:
		cc.log.Warn("the client certificate cannot be read; the last good one is used", slog.Any("error", n.warn))
	case n.recovered:
		cc.log.Info("the client certificate reads well again")
	}
	if n.cur != nil {
		cc.log.Info("the client certificate changed; new connections present it, and tokens bound to the one before are fetched anew",
			slog.String("certificate", n.cur.thumb), slog.Time("not_after", n.cur.notAfter), slog.String("previous", n.old.thumb))
		if cc.changed != nil && cc.cur.Load() == n.cur {
			cc.changed(n.old, n.cur)
		}
	}
	if v := n.expiring; v != nil {
		left := v.notAfter.Sub(cc.clk.Now())
		msg := "the client certificate is about to expire and has not been renewed: is the process that renews it running?"
		if left <= 0 {
			msg = "the client certificate has expired and has not been renewed: is the process that renews it running?"
		}
		cc.log.Warn(msg, slog.String("certificate", v.thumb), slog.Time("not_after", v.notAfter), slog.Duration("left", left.Round(time.Second)))
		cc.expiring(v)
	}
}

// forHandshake is the certificate a TLS handshake presents: the files
// looked at again, at most every certHandshake. While another reads them
// (a token request, the watch, another handshake), or tells what it read,
// the certificate in use is presented at once: a read may wait out a
// file that keeps changing, and every new connection would wait with it.
func (cc *clientCert) forHandshake(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if !cc.mu.TryLock() {
		if v := cc.cur.Load(); v != nil {
			return v.cert, nil
		}
		cc.mu.Lock() // never read yet: not once New has returned
	}
	now := cc.clk.Now()
	if v := cc.cur.Load(); v != nil && now.Sub(cc.looked) < certHandshake && !now.Before(cc.looked) {
		cc.mu.Unlock()
		return v.cert, nil
	}
	cc.looked = now
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, news, err := cc.read(ctx)
	cc.mu.Unlock()
	cc.tell(news)
	if err != nil {
		return nil, err
	}
	return v.cert, nil
}

// expires reports, once per certificate, whether it has less than a
// tenth of its validity left: the process that renews it (cert-manager
// renews at two thirds) should have written a new one by then. cc.mu is
// held.
func (cc *clientCert) expires(v *certValue) bool {
	if v == nil || v.thumb == cc.expired {
		return false
	}
	if v.notAfter.Sub(cc.clk.Now()) >= v.notAfter.Sub(v.notBefore)/10 {
		return false
	}
	cc.expired = v.thumb
	return true
}

// certChanged is told of a new client certificate: token requests and API
// requests make new connections, which present it, and the pool's tokens
// bound to another certificate are dropped, to be fetched anew.
func (c *client) certChanged(_, cur *certValue) {
	// The tokens first: a caller that finds none fetches one over a new
	// connection; one that took a token just before the drop has it sent
	// over an old one, which presents the certificate it is bound to.
	if c.pool != nil {
		c.pool.dropBound(cur.thumb)
	}
	if c.ownsHTTP {
		c.http.CloseIdleConnections()
	}
	if t := c.apiCert.Load(); t != nil {
		t.renew()
	}
}

// now returns the certificate presented now, or nil for a client
// without one (cc nil).
func (cc *clientCert) now() *certValue {
	if cc == nil {
		return nil
	}
	return cc.cur.Load()
}

// watchCert looks at the certificate every certCheck until the pool
// closes, so that a renewed certificate is taken (and the tokens bound to
// the one before dropped) even while no token request or handshake reads
// it.
func (c *client) watchCert() {
	var tick func()
	tick = func() {
		ctx, cancel := context.WithTimeout(c.life, 10*time.Second)
		c.cert.current(ctx)
		cancel()
		c.certMu.Lock()
		defer c.certMu.Unlock()
		if c.life.Err() == nil {
			c.certTimer = c.clock.AfterFunc(certCheck, tick)
		}
	}
	c.certMu.Lock()
	c.certTimer = c.clock.AfterFunc(certCheck, tick)
	c.certMu.Unlock()
}

// stopCert stops watchCert; c.life is done.
func (c *client) stopCert() {
	c.certMu.Lock()
	defer c.certMu.Unlock()
	if c.certTimer != nil {
		c.certTimer.Stop()
	}
}

// certExpiring tells the observer that v is about to expire.
func (c *client) certExpiring(v *certValue) {
	c.obs.certificateExpiring(c.pool, v)
}

// tlsMethod reports whether m authenticates the client with its
// certificate.
func tlsMethod(m AuthMethod) bool { return m == TLSClientAuth || m == SelfSignedTLSClientAuth }
