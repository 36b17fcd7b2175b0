// The tests' harness: an issuer, a source observed through in-memory
// metric and span readers, and readers of what they recorded.

package m2mtokenotel_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/m2mtest"
	"github.com/m2mtoken/m2mtoken/m2mtokenotel"
)

const audience = "https://api.example.com/"

// harness is an issuer, a source observed through in-memory readers, and
// a tracer for the callers' own spans.
type harness struct {
	t      *testing.T
	iss    *m2mtest.Server
	src    *m2mtoken.TokenSource
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
	tracer trace.Tracer
}

func newHarness(t *testing.T, mod func(*m2mtoken.Config)) *harness {
	t.Helper()
	h := &harness{t: t, reader: sdkmetric.NewManualReader(), spans: tracetest.NewSpanRecorder()}
	h.iss = m2mtest.NewServer(m2mtest.Client{ID: "svc", Secret: "pw", Audiences: []string{audience}})
	t.Cleanup(h.iss.Close)
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(h.spans))
	t.Cleanup(func() { mp.Shutdown(context.Background()); tp.Shutdown(context.Background()) })
	h.tracer = tp.Tracer("test")
	obs, err := m2mtokenotel.New(m2mtokenotel.WithMeterProvider(mp), m2mtokenotel.WithTracerProvider(tp),
		m2mtokenotel.WithAttributes(attribute.String("service.api", "billing")))
	if err != nil {
		t.Fatal(err)
	}
	cfg := m2mtoken.Config{TokenURL: h.iss.TokenURL(), ClientID: "svc", ClientSecret: "pw", Audience: audience,
		Observer: obs, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	if h.src, err = m2mtoken.New(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.src.Close() })
	return h
}

// token gets a token inside a caller span, and returns the caller span.
func (h *harness) token() (trace.SpanContext, error) {
	ctx, span := h.tracer.Start(context.Background(), "caller")
	defer span.End()
	_, err := h.src.TokenContext(ctx)
	return span.SpanContext(), err
}

// point is one data point: its attributes (without the source's) and its
// value (a histogram's count).
type point struct {
	attrs string
	value float64
}

var sourceKeys = []attribute.Key{m2mtokenotel.KeyClientID, m2mtokenotel.KeyAudience, m2mtokenotel.KeyServer, "service.api"}

// metric collects and returns the named metric's points, checking that
// each carries the source's attributes.
func (h *harness) metric(name string) []point {
	h.t.Helper()
	var rm metricdata.ResourceMetrics
	if err := h.reader.Collect(context.Background(), &rm); err != nil {
		h.t.Fatal(err)
	}
	var out []point
	add := func(set attribute.Set, v float64) {
		want := map[attribute.Key]string{m2mtokenotel.KeyClientID: "svc", m2mtokenotel.KeyAudience: audience,
			m2mtokenotel.KeyServer: "127.0.0.1", "service.api": "billing"}
		for k, w := range want {
			if got, ok := set.Value(k); !ok || got.String() != w {
				h.t.Errorf("%s: %s = %q, want %q", name, k, got.String(), w)
			}
		}
		var parts []string
		for _, kv := range set.ToSlice() {
			if !slices.Contains(sourceKeys, kv.Key) {
				parts = append(parts, string(kv.Key)+"="+kv.Value.String())
			}
		}
		out = append(out, point{strings.Join(parts, ","), v})
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					add(p.Attributes, float64(p.Value))
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					add(p.Attributes, float64(p.Value))
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					add(p.Attributes, p.Value)
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					add(p.Attributes, float64(p.Count))
				}
			default:
				h.t.Fatalf("%s: unexpected data %T", name, m.Data)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].attrs < out[j].attrs })
	return out
}

// values returns the points of a metric as "attrs=value" lines.
func (h *harness) values(name string) []string {
	h.t.Helper()
	var out []string
	for _, p := range h.metric(name) {
		out = append(out, fmt.Sprintf("%s=%g", p.attrs, p.value))
	}
	return out
}

func (h *harness) expect(name string, want ...string) {
	h.t.Helper()
	if got := h.values(name); !slices.Equal(got, want) {
		h.t.Errorf("%s:\n got %q\nwant %q", name, got, want)
	}
}

func (h *harness) ended(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range h.spans.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func attr(s sdktrace.ReadOnlySpan, k attribute.Key) string {
	for _, kv := range s.Attributes() {
		if kv.Key == k {
			return kv.Value.String()
		}
	}
	return ""
}
