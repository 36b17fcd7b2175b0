// Command prometheus serves a token source's OpenTelemetry metrics in the
// Prometheus format at /metrics, through the m2mtokenotel module and the
// OpenTelemetry Prometheus exporter.
//
//	AUTH0_DOMAIN=... AUTH0_CLIENT_ID=... AUTH0_CLIENT_SECRET=... AUTH0_AUDIENCE=... prometheus -addr 127.0.0.1:9464
//	curl -s 127.0.0.1:9464/metrics | grep ^m2mtoken_
//
// With no settings it takes tokens from a local issuer with 10-second
// tokens and Auth0-like quotas (per_hour 100, per_day 1000).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/m2mtest"
	"github.com/m2mtoken/m2mtoken/m2mtokenotel"
)

// instrumented returns a source whose metrics the handler serves, and a
// function that closes both.
func instrumented(cfg m2mtoken.Config) (*m2mtoken.TokenSource, http.Handler, func(), error) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg),
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes))
	if err != nil {
		return nil, nil, nil, err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	obs, err := m2mtokenotel.New(m2mtokenotel.WithMeterProvider(mp))
	if err != nil {
		return nil, nil, nil, err
	}
	cfg.Observer = obs
	src, err := m2mtoken.New(cfg)
	if err != nil {
		mp.Shutdown(context.Background())
		return nil, nil, nil, err
	}
	closeAll := func() {
		src.Close()
		mp.Shutdown(context.Background())
	}
	return src, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), closeAll, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9464", "where to serve /metrics")
	flag.Parse()
	cfg := m2mtoken.Config{Domain: os.Getenv("AUTH0_DOMAIN"), ClientID: os.Getenv("AUTH0_CLIENT_ID"),
		ClientSecret: os.Getenv("AUTH0_CLIENT_SECRET"), Audience: os.Getenv("AUTH0_AUDIENCE")}
	if cfg.Domain == "" {
		const audience = "https://metrics.local/"
		iss := m2mtest.NewServer(m2mtest.Client{ID: "metrics-demo", Secret: "local-secret", Audiences: []string{audience}})
		defer iss.Close()
		iss.SetTokenLifetime(10 * time.Second)
		iss.SetClientQuota("metrics-demo", m2mtest.Quota{Bucket: "per_hour", Limit: 100}, m2mtest.Quota{Bucket: "per_day", Limit: 1000})
		cfg = m2mtoken.Config{TokenURL: iss.TokenURL(), ClientID: "metrics-demo", ClientSecret: "local-secret", Audience: audience}
	}
	src, handler, closeAll, err := instrumented(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer closeAll()
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", handler)
	go http.Serve(l, mux)
	fmt.Printf("metrics at http://%s/metrics\n", l.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := src.TokenContext(ctx); err != nil && ctx.Err() == nil {
			log.Print(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
