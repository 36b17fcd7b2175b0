package m2mtoken

// Tests that a slow read of a followed file (one that keeps changing, a
// slow mount), or a slow callback told of what a read found, holds up no
// other caller: the reader is held between its two reads by
// followtest.SettleGate, or inside the callback, for as long as the test
// needs, and the others must answer meanwhile.

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken/internal/clock"
	"github.com/m2mtoken/m2mtoken/internal/follow"
	"github.com/m2mtoken/m2mtoken/internal/follow/followtest"
)

// TestHeldRefusalWaitsNoLongerThanItsCaller: while a refusal of the
// followed secret is held, callers look at its file (credential.moved).
// One caller's look is held between its reads of the changed file; a
// caller whose context is done, between two looks or at the next one,
// gets the held refusal (or its context's error) at once instead of
// waiting for that read.
func TestHeldRefusalWaitsNoLongerThanItsCaller(t *testing.T) {
	iss := credIssuer(t)
	f := followtest.New(t, "rename", "client-secret", "wrong-secret\n")
	fake := clock.NewFake(time.Now())
	clk := &followtest.SettleGate{Clock: fake, Settle: follow.DefaultSettle}
	s, err := newSource(Config{TokenURL: iss.TokenURL(), ClientID: "svc", Audience: credAudience, ClientSecretFile: f.Path, ErrorCacheTTL: time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, clk)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var te *TokenError
	if _, err := s.Token(); !errors.As(err, &te) || te.StatusCode != 401 {
		t.Fatalf("err %v, want the 401", err)
	}

	entered, release := clk.Hold()
	t.Cleanup(release)
	f.Change("wrong-secret-2\n")
	fake.Advance(credentialLook)
	first := make(chan error, 1)
	go func() { _, err := s.Token(); first <- err }()
	select {
	case <-entered: // the first caller's look holds the file's turn
	case err := <-first:
		t.Fatalf("the first caller did not look at the file: %v", err)
	}

	done, cancel := context.WithCancel(context.Background())
	cancel()
	var between, looking error
	followtest.Returns(t, "a caller between two looks at the file", func() { _, between = s.TokenContext(done) })
	fake.Advance(credentialLook)
	followtest.Returns(t, "a caller whose context is done, looking at the file", func() { _, looking = s.TokenContext(done) })
	for _, err := range []error{between, looking} {
		if !errors.As(err, &te) && !errors.Is(err, context.Canceled) {
			t.Errorf("err %v, want the held refusal or the context's error", err)
		}
	}
	release()
	if err := <-first; !errors.As(err, &te) || te.StatusCode != 401 {
		t.Errorf("the first caller: err %v, want the changed secret's 401", err)
	}
}

// TestHandshakeNotHeldByACertificateRead: while a token request's read of
// the certificate's files is held between its reads of a renewed
// certificate, a TLS handshake presents the certificate in use at once;
// the read then takes the new one.
func TestHandshakeNotHeldByACertificateRead(t *testing.T) {
	ca := newTestCA(t)
	c1, k1 := ca.issue(t, "svc", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), false)
	c2, k2 := ca.issue(t, "svc", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), false)
	cf, kf := certFiles(t, c1, k1)
	clk := &followtest.SettleGate{Clock: clock.NewFake(time.Now()), Settle: follow.DefaultSettle}
	cc, err := newClientCert(&Config{ClientCertFile: cf, ClientKeyFile: kf}, clk, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}

	entered, release := clk.Hold()
	t.Cleanup(release)
	followtest.RenameOver(t, cf, c2)
	followtest.RenameOver(t, kf, k2)
	read := make(chan *certValue, 1)
	go func() { v, _ := cc.current(context.Background()); read <- v }()
	<-entered

	var presented *tls.Certificate
	followtest.Returns(t, "a handshake", func() { presented, err = cc.forHandshake(&tls.CertificateRequestInfo{}) })
	if err != nil || presented == nil || thumbOfDER(presented) != thumbOf(t, c1) {
		t.Errorf("the handshake presented %v (err %v), want the certificate in use", presented != nil, err)
	}
	release()
	if v := <-read; v == nil || v.thumb != thumbOf(t, c2) {
		t.Error("the read did not take the renewed certificate")
	}
}

// TestSlowCertificateCallbacksHoldNoHandshake: the Observer told that the
// certificate is about to expire, and the client told that it changed,
// are told with no lock held: while either is slow, handshakes go on,
// and present the certificate the read took.
func TestSlowCertificateCallbacksHoldNoHandshake(t *testing.T) {
	ca := newTestCA(t)
	notAfter := time.Now().Add(time.Hour)
	c1, k1 := ca.issue(t, "svc", notAfter.Add(-20*time.Hour), notAfter, false)
	c2, k2 := ca.issue(t, "svc", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), false)
	cf, kf := certFiles(t, c1, k1)
	var log bytes.Buffer
	cc, err := newClientCert(&Config{ClientCertFile: cf, ClientKeyFile: kf}, clock.NewFake(time.Now()), slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	told, resume := make(chan string, 2), make(chan struct{})
	t.Cleanup(func() { close(resume) })
	cc.expiring = func(*certValue) { told <- "expiring"; <-resume }
	cc.changed = func(_, _ *certValue) { told <- "changed"; <-resume }

	for _, step := range []struct {
		what, want string
		change     func()
	}{
		{"expiring", c1, func() {}},
		{"changed", c2, func() { followtest.RenameOver(t, cf, c2); followtest.RenameOver(t, kf, k2) }},
	} {
		step.change()
		go cc.current(context.Background())
		if got := <-told; got != step.what {
			t.Fatalf("told %s, want %s", got, step.what)
		}
		var presented *tls.Certificate
		followtest.Returns(t, "a handshake while "+step.what+" is told", func() { presented, err = cc.forHandshake(&tls.CertificateRequestInfo{}) })
		if err != nil || presented == nil || thumbOfDER(presented) != thumbOf(t, step.want) {
			t.Errorf("while %s is told, the handshake presented another certificate (err %v)", step.what, err)
		}
		resume <- struct{}{}
	}
}

// thumbOfDER is the RFC 8705 thumbprint of a certificate's leaf.
func thumbOfDER(c *tls.Certificate) string {
	v, err := certValueOf(c)
	if err != nil {
		return ""
	}
	return v.thumb
}
