module github.com/m2mtoken/m2mtoken

go 1.26.0

require (
	golang.org/x/oauth2 v0.37.0
	golang.org/x/sync v0.24.0
)

require github.com/google/go-cmp v0.7.0

require github.com/go-jose/go-jose/v4 v4.1.9

require go.uber.org/goleak v1.3.0
