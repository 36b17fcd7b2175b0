// Command grpcauth calls a gRPC service over TLS with per-RPC credentials
// from an m2mtoken source (google.golang.org/grpc/credentials/oauth), and
// runs the service, which checks each call's bearer token. With no
// settings it uses a local m2mtest issuer and a self-signed certificate.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log"
	"math/big"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/oauth"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// verifier checks a token for an audience; m2mtest.Server.Verify is one.
type verifier func(token, audience string) (map[string]any, error)

// authInterceptor refuses calls without a valid bearer token for audience.
func authInterceptor(verify verifier, audience string) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		auth := md.Get("authorization")
		if len(auth) != 1 || !strings.HasPrefix(auth[0], "Bearer ") {
			return nil, status.Error(codes.Unauthenticated, "missing bearer token")
		}
		if _, err := verify(strings.TrimPrefix(auth[0], "Bearer "), audience); err != nil {
			return nil, status.Errorf(codes.Unauthenticated, "invalid token: %v", err)
		}
		return handler(ctx, req)
	}
}

// serve starts a health service on a loopback port over TLS with cert,
// behind authInterceptor. It returns the address and a stop function.
func serve(cert tls.Certificate, verify verifier, audience string) (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	s := grpc.NewServer(
		grpc.Creds(credentials.NewServerTLSFromCert(&cert)),
		grpc.UnaryInterceptor(authInterceptor(verify, audience)),
	)
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(l)
	return l.Addr().String(), s.Stop, nil
}

// dial connects to addr over TLS (trusting roots) with per-RPC credentials
// from src: every call carries a current token.
func dial(addr string, roots *x509.CertPool, src *m2mtoken.TokenSource) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr,
		grpc.WithTransportCredentials(credentials.NewClientTLSFromCert(roots, "localhost")),
		grpc.WithPerRPCCredentials(oauth.TokenSource{TokenSource: src}),
	)
}

// selfSigned makes a certificate for localhost and 127.0.0.1.
func selfSigned() (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool, nil
}

func main() {
	const audience = "https://grpc.local/"
	iss := m2mtest.NewServer(m2mtest.Client{ID: "svc", Secret: "local-secret", Audiences: []string{audience}})
	defer iss.Close()
	cert, roots, err := selfSigned()
	if err != nil {
		log.Fatal(err)
	}
	addr, stop, err := serve(cert, iss.Verify, audience)
	if err != nil {
		log.Fatal(err)
	}
	defer stop()
	src, err := m2mtoken.New(m2mtoken.Config{TokenURL: iss.TokenURL(), ClientID: "svc", ClientSecret: "local-secret", Audience: audience})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	conn, err := dial(addr, roots, src)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("health:", resp.GetStatus())
}
