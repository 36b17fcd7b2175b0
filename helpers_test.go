package m2mtoken

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/clock"
)

const (
	testSecret = "s3cr3t-CANARY-9f8e7d"
	testStart  = "2030-01-02T03:04:05Z"
)

// endpoint is a fake token endpoint. By default it issues "tok-N" with
// expires_in = lifetime; handle overrides that for request n (from 1).
type endpoint struct {
	*httptest.Server
	t        testing.TB
	lifetime atomic.Int64 // seconds
	n        atomic.Int64
	noRecord atomic.Bool // benchmarks: do not keep requests
	mu       sync.Mutex
	forms    []url.Values
	headers  []http.Header
	handle   func(w http.ResponseWriter, r *http.Request, n int64) bool // true: handled
}

func newEndpoint(t testing.TB) *endpoint {
	e := &endpoint{t: t}
	e.lifetime.Store(100)
	e.Server = httptest.NewServer(http.HandlerFunc(e.serve))
	t.Cleanup(e.Close)
	return e
}

func (e *endpoint) serve(w http.ResponseWriter, r *http.Request) {
	n := e.n.Add(1)
	var form url.Values
	if r.Header.Get("Content-Type") == "application/json" {
		var m map[string]string
		json.NewDecoder(r.Body).Decode(&m)
		form = url.Values{}
		for k, v := range m {
			form.Set(k, v)
		}
	} else {
		r.ParseForm()
		form = r.PostForm
	}
	e.mu.Lock()
	if !e.noRecord.Load() {
		e.forms = append(e.forms, form)
		e.headers = append(e.headers, r.Header.Clone())
	}
	h := e.handle
	e.mu.Unlock()
	if h != nil && h(w, r, n) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"access_token":"tok-%d","token_type":"Bearer","expires_in":%d,"scope":"read:all"}`, n, e.lifetime.Load())
}

func (e *endpoint) setHandler(h func(w http.ResponseWriter, r *http.Request, n int64) bool) {
	e.mu.Lock()
	e.handle = h
	e.mu.Unlock()
}

func (e *endpoint) count() int64 { return e.n.Load() }

func (e *endpoint) form(i int) url.Values {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.forms[i]
}

func startTime() time.Time {
	t, _ := time.Parse(time.RFC3339, testStart)
	return t
}

// testSource returns a source on a fake clock, with no jitter, talking to e.
func testSource(t testing.TB, e *endpoint, mod func(*Config)) (*TokenSource, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(startTime())
	cfg := Config{TokenURL: e.URL + "/oauth/token", ClientID: "client-1", ClientSecret: testSecret, Audience: "https://api.example.com/"}
	if mod != nil {
		mod(&cfg)
	}
	s, err := newSource(cfg, clk)
	if err != nil {
		t.Fatal(err)
	}
	s.c.rand = func() float64 { return 0 }
	t.Cleanup(func() { s.Close() })
	return s, clk
}

// waitBackground waits for the source's background refreshes to finish.
func waitBackground(s *TokenSource) { s.life.bg.Wait() }

// eventually spins (yielding, not sleeping) until cond holds, or fails
// after a generous real-time limit.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
	}
}

// untilStopped calls f again and again in each of n goroutines until
// stop is called; stop waits for them to return, and may be called more
// than once.
func untilStopped(n int, f func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				f()
			}
		})
	}
	return sync.OnceFunc(func() { close(done); wg.Wait() })
}

// logBuffer is a debug-level slog handler writing to a buffer.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// mtlsCerts makes a test CA and a client certificate it signed.
func mtlsCerts(t *testing.T) (*x509.CertPool, tls.Certificate) {
	caKey := ecKey(t, elliptic.P256())
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	ca, _ := x509.ParseCertificate(caDER)
	clientKey := ecKey(t, elliptic.P256())
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "svc"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		KeyUsage: x509.KeyUsageDigitalSignature, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	leafDER, _ := x509.CreateCertificate(rand.Reader, leafTmpl, ca, clientKey.Public(), caKey)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: clientKey}
}

// privateScalar returns key's private scalar as fixed-length bytes and in
// decimal: forms a leak of the key could take, for the canary tests.
func privateScalar(t testing.TB, key *ecdsa.PrivateKey) ([]byte, string) {
	t.Helper()
	d, err := key.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return d, new(big.Int).SetBytes(d).String()
}
