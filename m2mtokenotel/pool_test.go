package m2mtokenotel_test

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/m2mtest"
	"github.com/m2mtoken/m2mtoken/m2mtokenotel"
)

// meteredObserver returns an observer whose metrics go to the reader.
func meteredObserver(t *testing.T) (*m2mtoken.Observer, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	obs, err := m2mtokenotel.New(m2mtokenotel.WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	return obs, reader
}

// gaugeValues collects the reader's metrics and returns the values of the
// named gauge's points.
func gaugeValues[N int64 | float64](t *testing.T, reader *sdkmetric.ManualReader, name string) []N {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var values []N
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				for _, dp := range m.Data.(metricdata.Gauge[N]).DataPoints {
					values = append(values, dp.Value)
				}
			}
		}
	}
	return values
}

// TestPoolTokensCarryTheirOrganization: the tokens of a pool are labelled
// with their audience and organization, and the pool's size and
// evictions are reported.
func TestPoolTokensCarryTheirOrganization(t *testing.T) {
	iss := m2mtest.NewServer(m2mtest.Client{ID: "svc", Secret: "pw", Audiences: []string{audience}, Organizations: []string{"org_a", "org_b", "org_c"}})
	defer iss.Close()
	obs, reader := meteredObserver(t)
	p, err := m2mtoken.NewPool(m2mtoken.Config{TokenURL: iss.TokenURL(), ClientID: "svc", ClientSecret: "pw", Observer: obs, MaxTokens: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, org := range []string{"org_a", "org_b", "org_c"} {
		if _, err := p.Token(context.Background(), m2mtoken.TokenRequest{Audience: audience, Organization: org}); err != nil {
			t.Fatal(err)
		}
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	orgs := map[string]int64{}
	var tokens, evictions int64 = -1, -1
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch m.Name {
			case "m2mtoken.tokens":
				for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
					org, _ := dp.Attributes.Value(m2mtokenotel.KeyOrganization)
					aud, _ := dp.Attributes.Value(m2mtokenotel.KeyAudience)
					if aud.AsString() != audience {
						t.Errorf("m2mtoken.tokens with audience %q", aud.AsString())
					}
					orgs[org.AsString()] += dp.Value
				}
			case "m2mtoken.pool.tokens":
				dp := m.Data.(metricdata.Gauge[int64]).DataPoints[0]
				tokens = dp.Value
				if v, _ := dp.Attributes.Value(m2mtokenotel.KeyClientID); v != attribute.StringValue("svc") {
					t.Errorf("m2mtoken.pool.tokens client %v", v)
				}
			case "m2mtoken.pool.evictions":
				evictions = m.Data.(metricdata.Sum[int64]).DataPoints[0].Value
			}
		}
	}
	if orgs["org_a"] != 1 || orgs["org_b"] != 1 || orgs["org_c"] != 1 {
		t.Errorf("tokens by organization: %v, want one each", orgs)
	}
	if tokens != 2 || evictions != 1 {
		t.Errorf("pool: %d tokens, %d evictions; want 2 and 1", tokens, evictions)
	}
}

// TestPoolTokensSumSourcesOfOneClient: two sources from New of one client
// (two audiences) are two pools with the same attributes; the pool's
// token count is their sum, not one of them.
func TestPoolTokensSumSourcesOfOneClient(t *testing.T) {
	const other = "https://other.example.com/"
	iss := m2mtest.NewServer(m2mtest.Client{ID: "svc", Secret: "pw", Audiences: []string{audience, other}})
	defer iss.Close()
	obs, reader := meteredObserver(t)
	for _, aud := range []string{audience, other} {
		src, err := m2mtoken.New(m2mtoken.Config{TokenURL: iss.TokenURL(), ClientID: "svc", ClientSecret: "pw", Audience: aud, Observer: obs})
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		if _, err := src.Token(); err != nil {
			t.Fatal(err)
		}
	}
	points := gaugeValues[int64](t, reader, "m2mtoken.pool.tokens")
	if len(points) != 1 || points[0] != 2 {
		t.Errorf("m2mtoken.pool.tokens points %v, want one of 2", points)
	}
}

// TestClientCertificateValidity: a client with a certificate reports the
// time until it expires, once for its pool.
func TestClientCertificateValidity(t *testing.T) {
	iss := m2mtest.NewServer(m2mtest.Client{ID: "svc", Secret: "pw", Audiences: []string{audience}})
	defer iss.Close()
	notAfter := time.Now().Add(30 * 24 * time.Hour).Truncate(time.Second)
	cert, err := m2mtest.SelfSigned(&x509.Certificate{Subject: pkix.Name{CommonName: "svc"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter})
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := m2mtest.CertificatePEM(cert)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if os.WriteFile(certFile, certPEM, 0o600) != nil || os.WriteFile(keyFile, keyPEM, 0o600) != nil {
		t.Fatal("writing the certificate's files failed")
	}
	obs, reader := meteredObserver(t)
	src, err := m2mtoken.New(m2mtoken.Config{TokenURL: iss.TokenURL(), ClientID: "svc", ClientSecret: "pw", Audience: audience,
		ClientCertFile: certFile, ClientKeyFile: keyFile, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, err := src.Token(); err != nil {
		t.Fatal(err)
	}
	points := gaugeValues[float64](t, reader, "m2mtoken.client_certificate.remaining_validity")
	want := time.Until(notAfter).Seconds()
	if len(points) != 1 || points[0] > want+1 || points[0] < want-60 {
		t.Errorf("m2mtoken.client_certificate.remaining_validity points %v, want one of about %.0f", points, want)
	}
}
