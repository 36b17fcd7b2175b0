package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestAgentCacheNames: --cache memory is the default and "none" its old
// name; --cache file keeps the token in M2MTOKEN_CACHE_DIR, as
// m2mtoken token does, and the variable does not get in the way of the
// memory cache. A typo of the variable's name is named.
func TestAgentCacheNames(t *testing.T) {
	s := issuer(t)
	dir := filepath.Join(t.TempDir(), "cache")
	env := tokenEnv(s, dir) // sets M2MTOKEN_CACHE_DIR=dir
	for _, args := range [][]string{nil, {"--cache", "memory"}, {"--cache", "none"}} {
		p := startAgent(t, env, append([]string{"--listen", "127.0.0.1:0"}, args...)...)
		if err := p.halt(os.Interrupt); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("%v: the memory cache wrote %d files in M2MTOKEN_CACHE_DIR", args, len(entries))
		}
	}
	// A typo in a variable's name is logged, as the agent logs.
	p := startAgent(t, append(env, "M2MTOKEN_CACHEDIR=/elsewhere"), "--listen", "127.0.0.1:0", "--cache", "file")
	if l := p.Find("M2MTOKEN_CACHEDIR is set but not read: did you mean M2MTOKEN_CACHE_DIR?"); l == nil || l["level"] != "WARN" {
		t.Errorf("no warning for M2MTOKEN_CACHEDIR:\n%s", p.logs())
	}
	if err := p.halt(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) == 0 {
		t.Fatalf("--cache file wrote nothing in M2MTOKEN_CACHE_DIR: %v", err)
	}
}
