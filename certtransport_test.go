package m2mtoken

// Tests of the clones of the certificate transport (certTransport.Clone),
// which the agent's proxies take: connections and cap of their own, the
// certificate's renewal and the client's Close reaching them.

import (
	"io"
	"net/http"
	"net/http/httptrace"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/m2mtoken/m2mtoken/internal/follow/followtest"
)

// TestCertTransportClone: a clone of Client()'s transport with a client
// certificate has connections of its own (closing the idle connections of
// one leaves the other's) and a cap of its own, which the transport made
// when the certificate is renewed keeps; the renewal reaches the clone
// (its next call makes a connection that presents the new certificate,
// which the API requires of the token bound to it); and Close closes the
// clone's idle connections with the source's, while the server is still
// up.
func TestCertTransportClone(t *testing.T) {
	m := newMTLSServer(t)
	c1, k1 := m.ca.issue(t, "svc", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), false)
	c2, k2 := m.ca.issue(t, "svc", time.Now().Add(-time.Minute), time.Now().Add(48*time.Hour), false)
	before := goleak.IgnoreCurrent()
	s, cf, kf := m.source(t, c1, k1, nil)
	base, ok := s.Client().Transport.(*Transport).Base.(*certTransport)
	if !ok {
		t.Fatalf("Client()'s base is %T, want *certTransport", s.Client().Transport.(*Transport).Base)
	}
	clone, ok := base.Clone().(*certTransport)
	if !ok || clone == base || clone.cur.Load() == base.cur.Load() {
		t.Fatal("the clone shares the transport it was made from")
	}
	clone.SetMaxConnsPerHost(3)
	if got := clone.cur.Load().MaxConnsPerHost; got != 3 {
		t.Errorf("the clone's transport has MaxConnsPerHost %d, want 3", got)
	}
	if got := base.cur.Load().MaxConnsPerHost; got != 0 {
		t.Errorf("capping the clone capped the transport it was made from: MaxConnsPerHost %d", got)
	}
	// call reports whether a call to the API through rt reused a
	// connection; it must be accepted.
	call := func(what string, rt http.RoundTripper) (reused bool) {
		t.Helper()
		req, _ := http.NewRequest("GET", m.URL+"/api", nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(ci httptrace.GotConnInfo) { reused = ci.Reused },
		}))
		resp, err := (&http.Client{Transport: &Transport{Source: s, Base: rt}}).Do(req)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d", what, resp.StatusCode)
		}
		return reused
	}
	call("the clone", clone)
	call("the source", base)
	base.CloseIdleConnections()
	if !call("the clone after the source closed its idle connections", clone) {
		t.Error("closing the idle connections of the source's transport closed the clone's")
	}
	base.CloseIdleConnections()
	clone.CloseIdleConnections()
	call("the source", base)
	if call("the clone after closing its idle connections", clone) {
		t.Error("the clone reused a connection after closing its idle ones")
	}
	if !call("the source after the clone closed its idle connections", base) {
		t.Error("closing the idle connections of the clone closed the source's")
	}

	used := clone.cur.Load()
	followtest.RenameOver(t, cf, c2)
	followtest.RenameOver(t, kf, k2)
	if v, _ := s.c.cert.current(t.Context()); v.thumb != thumbOf(t, c2) {
		t.Fatal("the renewed certificate was not taken")
	}
	if clone.cur.Load() == used {
		t.Fatal("the renewal did not reach the clone: its transport is the one before")
	}
	if got := clone.cur.Load().MaxConnsPerHost; got != 3 {
		t.Errorf("after the renewal the clone's transport has MaxConnsPerHost %d, want 3: the cap did not carry over", got)
	}
	if call("the clone after the renewal", clone) {
		t.Error("after the renewal the clone reused a connection that presents the certificate before")
	}
	if n := m.apiRefused.Load(); n != 0 {
		t.Errorf("the API refused %d tokens", n)
	}
	s.Close()
	goleak.VerifyNone(t, before)
	_ = clone.cur.Load() // the clone is held until here, as a proxy holds its own
}
