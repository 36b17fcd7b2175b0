// Command interop gets tokens from oidc-provider, a real, independent
// OAuth 2.0 server, through m2mtoken: client_secret_post and
// client_secret_basic, with an RFC 8707 resource indicator, and, in the
// tests, DPoP-bound tokens (dpop_test.go) and RFC 8705's mutual TLS
// client authentication and certificate-bound tokens (mtls_test.go). It
// starts the server itself (node server.mjs; run npm ci here first).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// provider is a running oidc-provider.
type provider struct {
	tokenURL string
	cmd      *exec.Cmd
	stderr   *strings.Builder
}

// errNoNode and errNoModules say the server cannot start here at all.
var (
	errNoNode    = errors.New("node is not installed")
	errNoModules = errors.New("oidc-provider is not installed: run npm ci in examples/interop")
)

// startProvider runs server.mjs from dir with the given secret, token
// lifetime and resource (and extra environment, such as DPOP_NONCE=1), and
// waits for its token endpoint.
func startProvider(dir, secret string, ttl time.Duration, resource string, env ...string) (*provider, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, errNoNode
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "oidc-provider")); err != nil {
		return nil, errNoModules
	}
	cmd := exec.Command(node, "server.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SECRET="+secret, fmt.Sprintf("TOKEN_TTL=%d", int(ttl.Seconds())), "RESOURCE="+resource, "NODE_ENV=test")
	cmd.Env = append(cmd.Env, env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p := &provider{cmd: cmd, stderr: &strings.Builder{}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var line struct {
				TokenEndpoint string `json:"token_endpoint"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.TokenEndpoint != "" {
				found <- line.TokenEndpoint
				break
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	select {
	case p.tokenURL = <-found:
		return p, nil
	case <-time.After(30 * time.Second):
		p.stop()
		return nil, fmt.Errorf("oidc-provider did not start within 30 s: %s", p.stderr)
	}
}

func (p *provider) stop() {
	p.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}

func main() {
	const resource = "https://api.interop.test/"
	p, err := startProvider(".", "interop-secret", 60*time.Second, resource)
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		os.Exit(1)
	}
	defer p.stop()
	for _, id := range []string{"interop-post", "interop-basic"} {
		tok, err := fetch(context.Background(), p.tokenURL, id, "interop-secret", resource)
		if err != nil {
			fmt.Fprintln(os.Stderr, "interop:", err)
			os.Exit(1)
		}
		fmt.Printf("%s: %s token, %v left\n", id, tok.Type(), time.Until(tok.Expiry).Round(time.Second))
	}
}
