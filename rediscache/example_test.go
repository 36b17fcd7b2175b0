package rediscache_test

import (
	"encoding/hex"
	"log"
	"log/slog"
	"os"

	"github.com/redis/go-redis/v9"

	"github.com/m2mtoken/m2mtoken"
	"github.com/m2mtoken/m2mtoken/rediscache"
)

// A fleet shares one token through Redis. go-redis's own lines (dial
// failures while Redis is down) go to the same slog logger as the
// source's, through redis.SetLogger, which the program calls once.
func Example() {
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	redis.SetLogger(rediscache.Logger(logger))

	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	src, err := m2mtoken.New(m2mtoken.Config{
		Domain:       "tenant.eu.auth0.com",
		ClientID:     os.Getenv("AUTH0_CLIENT_ID"),
		ClientSecret: os.Getenv("AUTH0_CLIENT_SECRET"),
		Audience:     "https://api.example.com/",
		Cache:        rediscache.New(rdb, rediscache.WithLogger(logger)),
		Logger:       logger,
	})
	if err != nil {
		logger.Error("m2mtoken", "error", err)
		return
	}
	defer src.Close()
	_ = src.Client() // calls the API with a token shared by the fleet
}

// With WithEncryptionKey a reader of Redis sees no usable token, and
// whoever writes to it without the key cannot plant one; the key comes
// from a secret store, never from code. WithPrefix keeps one service's
// keys apart from another's.
func Example_encrypted() {
	key, err := hex.DecodeString(os.Getenv("TOKEN_CACHE_KEY")) // 64 hex digits
	if err != nil {
		log.Fatal(err)
	}
	cache := rediscache.New(redis.NewClient(&redis.Options{Addr: "redis:6379"}),
		rediscache.WithPrefix("billing-api:"),
		rediscache.WithEncryptionKey(key)) // 32 bytes from your secret store
	src, err := m2mtoken.New(m2mtoken.Config{
		Domain:       "tenant.eu.auth0.com",
		ClientID:     os.Getenv("AUTH0_CLIENT_ID"),
		ClientSecret: os.Getenv("AUTH0_CLIENT_SECRET"),
		Audience:     "https://billing.example.com/",
		Cache:        cache,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	_ = src.Client() // calls the API with a token the fleet shares, sealed in Redis
}
