package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

func TestGRPCPerRPCCredentials(t *testing.T) {
	const audience = "https://grpc.local/"
	iss := m2mtest.NewServer(
		m2mtest.Client{ID: "svc", Secret: "pw", Audiences: []string{audience, "https://elsewhere/"}},
	)
	defer iss.Close()
	cert, roots, err := selfSigned()
	if err != nil {
		t.Fatal(err)
	}
	addr, stop, err := serve(cert, iss.Verify, audience)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	check := func(aud string) error {
		src, err := m2mtoken.New(m2mtoken.Config{TokenURL: iss.TokenURL(), ClientID: "svc", ClientSecret: "pw", Audience: aud})
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		conn, err := dial(addr, roots, src)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for i := 0; i < 5; i++ {
			resp, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
			if err != nil {
				return err
			}
			if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("status %v", resp.GetStatus())
			}
		}
		return nil
	}
	if err := check(audience); err != nil {
		t.Fatal(err)
	}
	if n := iss.TokensIssued("svc"); n != 1 {
		t.Fatalf("%d tokens for five calls", n)
	}
	if err := check("https://elsewhere/"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("token for another audience: %v", err)
	}
	// Without credentials the server refuses the call.
	conn, _ := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewClientTLSFromCert(roots, "localhost")))
	defer conn.Close()
	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no token: %v", err)
	}
}

// TestGRPCWithDPoPTokens: gRPC's per-RPC credentials cannot make DPoP
// proofs. A source with a DPoP key hands them a token of type DPoP, which
// they send as "authorization: DPoP <token>" without a proof: a bearer
// server refuses it, and the token is never presented as a bearer token.
func TestGRPCWithDPoPTokens(t *testing.T) {
	const audience = "https://grpc.local/"
	iss := m2mtest.NewServer(m2mtest.Client{ID: "svc", Secret: "pw", Audiences: []string{audience}, RequireDPoP: true})
	defer iss.Close()
	cert, roots, err := selfSigned()
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	verify := func(tok, aud string) (map[string]any, error) {
		seen = append(seen, tok)
		return iss.Verify(tok, aud)
	}
	addr, stop, err := serve(cert, verify, audience)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	src, err := m2mtoken.New(m2mtoken.Config{TokenURL: iss.TokenURL(), ClientID: "svc", ClientSecret: "pw", Audience: audience, DPoPKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	conn, err := dial(addr, roots, src)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.Unauthenticated || len(seen) != 0 {
		t.Fatalf("a DPoP token over gRPC: %v, verified %d tokens", err, len(seen))
	}
}
