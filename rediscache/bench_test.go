package rediscache

import (
	"strconv"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/m2mtest"
)

// BenchmarkFleet runs a fleet of N instances over several token lifetimes,
// each instance asking for a token every few milliseconds, with and without
// a shared Redis cache, and reports token requests per lifetime.
//
//	go test -run '^$' -bench BenchmarkFleet -benchtime 1x ./rediscache/
func BenchmarkFleet(b *testing.B) {
	const lifetime, lifetimes = time.Second, 4
	r := startRedis(b)
	for _, n := range []int{1, 8, 32} {
		for _, shared := range []bool{false, true} {
			name := "cache=memory"
			if shared {
				name = "cache=redis"
			}
			b.Run(name+"/instances="+strconv.Itoa(n), func(b *testing.B) {
				var perLifetime float64
				for b.Loop() {
					iss := m2mtest.NewServer(m2mtest.Client{ID: "fleet", Secret: "pw", Audiences: []string{aud}})
					iss.SetTokenLifetime(lifetime)
					var srcs []*m2mtoken.TokenSource
					for i := 0; i < n; i++ {
						var cache m2mtoken.Cache
						if shared {
							cache = New(r.client(b), WithPrefix(b.Name()+":"))
						}
						s, err := m2mtoken.New(m2mtoken.Config{TokenURL: iss.TokenURL(), ClientID: "fleet", ClientSecret: "pw", Audience: aud, Cache: cache})
						if err != nil {
							b.Fatal(err)
						}
						srcs = append(srcs, s)
					}
					driveFleet(b, srcs, lifetimes*lifetime, 2*time.Millisecond)
					for _, s := range srcs {
						s.Close()
					}
					perLifetime = float64(iss.TokensIssued("fleet")) / lifetimes
					iss.Close()
				}
				b.ReportMetric(perLifetime, "tokens/lifetime")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}
