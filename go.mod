module github.com/m2mtoken/m2mtoken

go 1.26.0

// Runtime: x/oauth2 only. go-cmp, go-jose (an independent JOSE
// verifier for the Private Key JWT tests) and goleak are used by tests alone.
require (
	github.com/go-jose/go-jose/v4 v4.1.9
	github.com/google/go-cmp v0.7.0
	go.uber.org/goleak v1.3.0
	golang.org/x/oauth2 v0.37.0
)
