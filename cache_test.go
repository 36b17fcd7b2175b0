package m2mtoken

// Tests of the cache key (cache.go).

import (
	"net/url"
	"strings"
	"testing"
)

func TestCacheKey(t *testing.T) {
	base := func() string {
		return cacheKey("https://t/oauth/token", "id", "aud", []string{"b", "a"}, "org", url.Values{"resource": {"r"}}, ClientSecretPost)
	}
	if base() != cacheKey("https://t/oauth/token", "id", "aud", []string{"a", "b"}, "org", url.Values{"resource": {"r"}}, ClientSecretPost) {
		t.Error("scope order changed the key")
	}
	others := []string{
		cacheKey("https://u/oauth/token", "id", "aud", []string{"a", "b"}, "org", url.Values{"resource": {"r"}}, ClientSecretPost),
		cacheKey("https://t/oauth/token", "id2", "aud", []string{"a", "b"}, "org", url.Values{"resource": {"r"}}, ClientSecretPost),
		cacheKey("https://t/oauth/token", "id", "aud2", []string{"a", "b"}, "org", url.Values{"resource": {"r"}}, ClientSecretPost),
		cacheKey("https://t/oauth/token", "id", "aud", []string{"a"}, "org", url.Values{"resource": {"r"}}, ClientSecretPost),
		cacheKey("https://t/oauth/token", "id", "aud", []string{"a", "b"}, "", url.Values{"resource": {"r"}}, ClientSecretPost),
		cacheKey("https://t/oauth/token", "id", "aud", []string{"a", "b"}, "org", nil, ClientSecretPost),
		cacheKey("https://t/oauth/token", "id", "aud", []string{"a", "b"}, "org", url.Values{"resource": {"r"}}, ClientSecretBasic),
		// Field boundaries matter: "id"+"aud" is not "ida"+"ud".
		cacheKey("https://t/oauth/token", "ida", "ud", []string{"a", "b"}, "org", url.Values{"resource": {"r"}}, ClientSecretPost),
	}
	for i, k := range others {
		if k == base() {
			t.Errorf("variant %d has the same key", i)
		}
		if strings.Contains(k, "aud") || strings.Contains(k, "id") {
			t.Errorf("key %q reveals its parts", k)
		}
	}
}
