package rediscache

// The Redis keys of one token: its entry, PREFIX{KEY}, and its fetch
// lease, PREFIX{KEY}:lease. The braces are a hash tag: Redis Cluster puts
// both in the slot of KEY, so that the master that serves them fails for
// both at once. A fleet whose cache can grant the lease but not read the
// token would wait on a holder whose token it cannot see: with both in one
// slot, a dead master fails the lease too, and each instance fetches on
// its own until the master is back (the source's rule for a failing
// lease). On a single Redis, through Sentinel or a Ring (which also hashes
// the tag), the braces change nothing but the key's name.
//
// Whatever the prefix holds, both keys are the same text up to the tag's
// closing brace, so they hash alike (for any key a TokenSource makes: an
// empty key would be an empty tag, which Redis ignores).
//
// Earlier releases wrote keys without braces (PREFIX KEY, PREFIX KEY:lease):
// during a rolling upgrade, old and new instances each fetch their own
// token, once per lifetime, until the old ones are gone.

// WithPrefix puts every key under prefix (default "m2mtoken:"), so that
// several applications can share one Redis. A token's keys are
// PREFIX{KEY} and PREFIX{KEY}:lease: on a Redis Cluster the hash tag puts
// both on one master, whatever the prefix.
func WithPrefix(prefix string) Option { return func(c *Cache) { c.prefix = prefix } }

// entryKey is the Redis key of the token stored under key.
func (c *Cache) entryKey(key string) string { return c.prefix + "{" + key + "}" }

// leaseKey is the Redis key of key's fetch lease.
func (c *Cache) leaseKey(key string) string { return c.entryKey(key) + ":lease" }
