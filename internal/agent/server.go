// The agent's local endpoint: GET /v1/token/NAME, /healthz and /v1/stats,
// on a Unix socket or loopback TCP, and the guards that keep other hosts,
// browser pages and server-side request forgery away from it.

package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/m2mtoken/m2mtoken"
)

// agentHeader must be on every request over TCP, as the cloud metadata
// servers require Metadata-Flavor: a request forged through a server that
// fetches URLs for an attacker (SSRF) cannot add it.
const agentHeader = "M2MToken-Agent"

// listenSpec is where to listen: a Unix socket path or a loopback TCP
// address.
type listenSpec struct {
	network, addr string
}

// anyPort reports whether l is a TCP port 0: a free port, another each
// time it is opened.
func (l listenSpec) anyPort() bool { return l.network == "tcp" && strings.HasSuffix(l.addr, ":0") }

func (l listenSpec) String() string {
	if l.network == "unix" {
		return "unix:" + l.addr
	}
	return l.addr
}

// parseListen parses a --listen value (flag names the flag, for errors):
// unix:PATH, or HOST:PORT with a loopback HOST.
func parseListen(flag, v string) (listenSpec, error) {
	if path, ok := strings.CutPrefix(v, "unix:"); ok {
		if path == "" {
			return listenSpec{}, fmt.Errorf("%s %q: give the socket's path, such as unix:/run/m2mtoken/agent.sock", flag, v)
		}
		abs, err := filepath.Abs(path)
		if err != nil {
			return listenSpec{}, fmt.Errorf("%s %q: %w", flag, v, err)
		}
		return listenSpec{"unix", abs}, nil
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return listenSpec{}, fmt.Errorf("%s %q: use unix:PATH or 127.0.0.1:PORT", flag, v)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return listenSpec{}, fmt.Errorf("%s %q: the port must be a number (0 picks a free one)", flag, v)
	}
	if strings.EqualFold(host, "localhost") {
		host = "127.0.0.1"
	}
	if !isLoopbackHost(host) {
		return listenSpec{}, fmt.Errorf("%s %q: only a loopback address (127.0.0.1, ::1) or a Unix socket is allowed: anything that can connect gets tokens; for other hosts, run an agent on each", flag, v)
	}
	return listenSpec{"tcp", net.JoinHostPort(host, port)}, nil
}

// lookupGroup returns the ID of --group, given as a name or a number.
func lookupGroup(group string) (int, error) {
	g, err := user.LookupGroup(group)
	if err != nil {
		if g, err = user.LookupGroupId(group); err != nil {
			return -1, fmt.Errorf("--group %q: no such group", group)
		}
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return -1, fmt.Errorf("--group %q: group ID %q is not a number", group, g.Gid)
	}
	return gid, nil
}

// listen opens l. A Unix socket is created with mode 0600, or 0660 owned
// by group gid if it is not -1, with no looser moment and in a directory
// no other user may write (see listenUnixPrivate); a stale socket file
// left by a process that died is replaced, anything else at the path is
// refused.
// flag names the flag that asked for l, for errors.
func listen(flag string, l listenSpec, gid int) (net.Listener, error) {
	if l.network == "tcp" {
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", flag, l, err)
		}
		return ln, nil
	}
	if err := removeStaleSocket(flag, l.addr); err != nil {
		return nil, err
	}
	ln, err := listenUnixPrivate(l.addr, gid)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", flag, l, err)
	}
	return ln, nil
}

// removeStaleSocket removes a socket file at path that nothing listens on.
func removeStaleSocket(flag, path string) error {
	info, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s unix:%s: %w", flag, path, err)
	}
	if info.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s unix:%s: the path exists and is not a socket; remove it or choose another path", flag, path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("%s unix:%s: another process is listening on this socket (another agent?)", flag, path)
	}
	return os.Remove(path)
}

// guard refuses, on a TCP listener, requests from browsers, requests
// forwarded by a proxy, requests for a Host that is not loopback (DNS
// rebinding) and, if needHeader, requests without "M2MToken-Agent: 1".
// Requests over a Unix socket are not guarded: the socket's file mode
// says who may connect.
func (a *Agent) guard(needHeader bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if reason := refusal(r, needHeader); reason != "" {
			a.refused.Add(1)
			a.log.Warn("request refused", slog.String("reason", reason), slog.String("remote", r.RemoteAddr),
				slog.String("host", r.Host), slog.String("path", r.URL.Path))
			writeJSONError(w, http.StatusForbidden, "forbidden", reason)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// refusal says why r may not be served, or "" if it may.
func refusal(r *http.Request, needHeader bool) string {
	if r.Header.Get("Origin") != "" || r.Header.Get("Sec-Fetch-Site") != "" || r.Header.Get("Sec-Fetch-Mode") != "" {
		return "requests from a web browser are refused"
	}
	if r.Header.Get("X-Forwarded-For") != "" || r.Header.Get("Forwarded") != "" || r.Header.Get("X-Forwarded-Host") != "" {
		return "requests forwarded by a proxy are refused"
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if !isLoopbackHost(host) {
		return fmt.Sprintf("Host %q is not a loopback address: use 127.0.0.1, [::1] or localhost", r.Host)
	}
	if needHeader && r.Header.Get(agentHeader) != "1" {
		return "the header \"" + agentHeader + ": 1\" is required on TCP (it shows the request is not forged through a server that fetches URLs)"
	}
	return ""
}

// endpoint is the handler of the token endpoint's routes.
func (a *Agent) endpoint() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/v1/token/{name}", onlyGet(a.serveToken))
	mux.Handle("/healthz", onlyGet(a.serveHealth))
	mux.Handle("/v1/stats", onlyGet(a.serveStats))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSONError(w, http.StatusNotFound, "not_found", "the agent serves GET /v1/token/NAME, /healthz and /v1/stats")
	})
	return mux
}

// onlyGet answers 405 to anything but GET and HEAD.
func onlyGet(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeJSONError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use GET")
			return
		}
		h(w, r)
	})
}

// tokenAnswer is the token endpoint's answer, shaped like a token
// response; expires_in is the time left. Headers, when the caller named
// the request it is for (?url=), are the headers that authorize it.
type tokenAnswer struct {
	AccessToken string            `json:"access_token"`
	TokenType   string            `json:"token_type"`
	ExpiresIn   int64             `json:"expires_in"`
	Headers     map[string]string `json:"headers,omitempty"`
}

// serveToken answers GET /v1/token/NAME from memory: a fresh or stale
// token at once; a caller waits only when the source has none. With
// ?url=URL (and &method=M, GET by default) the answer also has the headers
// that authorize that one request; a DPoP-bound token is useless without
// them, so for one the URL is required.
func (a *Agent) serveToken(w http.ResponseWriter, r *http.Request) {
	s := a.acquire(r.PathValue("name"))
	if s == nil {
		a.tokenFailed.Add(1)
		writeJSONError(w, http.StatusNotFound, "unknown_source",
			fmt.Sprintf("no source named %q; the agent has %s", r.PathValue("name"), strings.Join(a.names(), ", ")))
		return
	}
	// A reload that removes or replaces s closes it once this ends.
	defer s.h.release(a)
	q := r.URL.Query()
	reqURL, method := q.Get("url"), strings.ToUpper(q.Get("method"))
	if reqURL == "" && method != "" {
		a.tokenFailed.Add(1)
		writeJSONError(w, http.StatusBadRequest, "invalid_request", "method goes with url: ?url=URL&method=METHOD")
		return
	}
	if reqURL != "" {
		if u, err := url.Parse(reqURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			a.tokenFailed.Add(1)
			writeJSONError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("url %q: give the absolute http or https URL of the request the headers are for", reqURL))
			return
		}
		if method == "" {
			method = http.MethodGet
		}
	}
	tok, err := s.src.TokenContext(r.Context())
	if err != nil {
		a.tokenUnavailable(w, r, s, err)
		return
	}
	ans := tokenAnswer{AccessToken: tok.AccessToken, TokenType: tok.Type(), ExpiresIn: max(int64(time.Until(tok.Expiry)/time.Second), 0)}
	switch {
	case reqURL != "":
		// The headers of one request: with a DPoP-bound token, a proof
		// for its method and URL, signed with the source's key.
		h, err := s.src.AuthHeaders(r.Context(), method, reqURL)
		if err != nil {
			a.tokenUnavailable(w, r, s, err)
			return
		}
		ans.Headers = make(map[string]string, len(h))
		for k := range h {
			name := k
			if k == "Dpop" { // as RFC 9449 spells it, not as Go canonicalizes it
				name = "DPoP"
			}
			ans.Headers[name] = h.Get(k)
		}
		// The headers hold the token they were made with.
		if typ, tk, ok := strings.Cut(h.Get("Authorization"), " "); ok {
			ans.TokenType, ans.AccessToken = typ, tk
		}
	case !strings.EqualFold(tok.Type(), "Bearer"):
		a.tokenFailed.Add(1)
		writeJSONError(w, http.StatusBadRequest, "dpop_bound",
			fmt.Sprintf("source %q's tokens are bound to the agent's DPoP key: a token alone is refused by the API. Ask for the headers of one request with ?url=URL&method=METHOD (a proof is good for one request), or send the requests through --proxy %s=LISTEN=UPSTREAM", s.name, s.name))
		return
	}
	a.tokenServed.Add(1)
	writeJSON(w, http.StatusOK, ans)
}

// tokenUnavailable answers 503 for a source that has no token. The
// refusal is counted in the source's outage, which the log summarizes,
// rather than logged one line per request.
func (a *Agent) tokenUnavailable(w http.ResponseWriter, r *http.Request, s *agentSource, err error) {
	a.tokenFailed.Add(1)
	if r.Context().Err() == nil {
		s.outage.refusedRequest(err)
	}
	writeJSONError(w, http.StatusServiceUnavailable, "token_unavailable", fmt.Sprintf("source %q has no token: %v", s.name, err))
}

// serveHealth answers 200 once every source holds a token, else 503; the
// answer says which sources have none and why.
func (a *Agent) serveHealth(w http.ResponseWriter, r *http.Request) {
	type health struct {
		Ready bool   `json:"ready"`
		Error string `json:"error,omitempty"`
	}
	out := struct {
		Status  string            `json:"status"`
		Sources map[string]health `json:"sources"`
	}{Status: "ok", Sources: map[string]health{}}
	code := http.StatusOK
	sources, _ := a.current()
	for _, s := range sources {
		tok, err := s.w.current()
		h := health{Ready: tok != nil}
		if err != nil {
			h.Error = err.Error()
		}
		if tok == nil {
			out.Status, code = "waiting for tokens", http.StatusServiceUnavailable
		}
		out.Sources[s.name] = h
	}
	writeJSON(w, code, out)
}

// sourceStats is one source in /v1/stats: what it is, its token's
// fingerprint and expiry, and the library's counters. No secret, no token.
type sourceStats struct {
	Endpoint            string               `json:"endpoint"`
	ClientID            string               `json:"client_id"`
	Audience            string               `json:"audience,omitempty"`
	Ready               bool                 `json:"ready"`
	Token               string               `json:"token,omitempty"`
	Expiry              *time.Time           `json:"expiry,omitempty"`
	ExpiresIn           int64                `json:"expires_in"`
	TokensSeen          uint64               `json:"tokens_seen"`
	TokenRequests       uint64               `json:"token_requests"`
	Failures            uint64               `json:"failures"`
	CacheHits           uint64               `json:"cache_hits"`
	Collapsed           uint64               `json:"collapsed"`
	BackgroundRefreshes uint64               `json:"background_refreshes"`
	RateLimit           *m2mtoken.RateLimit  `json:"rate_limit,omitempty"`
	Quotas              *m2mtoken.Quotas     `json:"quotas,omitempty"`
	LastError           string               `json:"last_error,omitempty"`
	Proxies             map[string]proxyStat `json:"proxies,omitempty"`
	// InvalidateBackoff is the least time between two invalidations after
	// a 401 (see m2mtoken.Stats), and its reason when it has grown.
	InvalidateBackoff       string `json:"invalidate_backoff,omitempty"`
	InvalidateBackoffReason string `json:"invalidate_backoff_reason,omitempty"`
}

type proxyStat struct {
	Listen        string `json:"listen"`
	Upstream      string `json:"upstream"`
	RequireHeader bool   `json:"require_header,omitempty"`
	Requests      uint64 `json:"requests"`
	Errors        uint64 `json:"errors"`
}

// serveStats answers each source's Stats and the agent's counters.
func (a *Agent) serveStats(w http.ResponseWriter, r *http.Request) {
	out := struct {
		Uptime        string                 `json:"uptime"`
		Sources       map[string]sourceStats `json:"sources"`
		TokenEndpoint map[string]uint64      `json:"token_endpoint"`
	}{
		Uptime:  time.Since(a.started).Round(time.Second).String(),
		Sources: map[string]sourceStats{},
		TokenEndpoint: map[string]uint64{
			"served": a.tokenServed.Load(), "failed": a.tokenFailed.Load(), "refused": a.refused.Load(),
		},
	}
	sources, proxies := a.current()
	for _, s := range sources {
		st := s.src.Stats()
		tok, err := s.w.current()
		ss := sourceStats{
			Endpoint: s.endpoint, ClientID: s.cfg.ClientID, Audience: s.cfg.Audience, Ready: tok != nil,
			TokensSeen: s.w.seen(), TokenRequests: st.TokenRequests, Failures: st.Failures, CacheHits: st.CacheHits,
			Collapsed: st.Collapsed, BackgroundRefreshes: st.BackgroundRefreshes, RateLimit: st.RateLimit,
			Quotas: st.Quotas, InvalidateBackoffReason: st.InvalidateBackoffReason,
		}
		if st.InvalidateBackoff > 0 {
			ss.InvalidateBackoff = st.InvalidateBackoff.String()
		}
		if tok != nil {
			ss.Token = m2mtoken.Fingerprint(tok.AccessToken)
		}
		if !st.Expiry.IsZero() {
			e := st.Expiry.UTC()
			ss.Expiry, ss.ExpiresIn = &e, max(int64(time.Until(e)/time.Second), 0)
		}
		if err != nil {
			ss.LastError = err.Error()
		}
		for _, p := range proxies {
			if sl, addr := p.slot, p.slot.address(); p.src == s && addr != "" {
				if ss.Proxies == nil {
					ss.Proxies = map[string]proxyStat{}
				}
				ss.Proxies[addr] = proxyStat{Listen: addr, Upstream: p.spec.upstream.String(), RequireHeader: p.spec.requireHeader,
					Requests: sl.requests.Load(), Errors: sl.errors.Load()}
			}
		}
		out.Sources[s.name] = ss
	}
	writeJSON(w, http.StatusOK, out)
}

// names returns the names of the agent's sources, sorted.
func (a *Agent) names() []string {
	sources, _ := a.current()
	names := make([]string, 0, len(sources))
	for _, s := range sources {
		names = append(names, s.name)
	}
	slices.Sort(names)
	return names
}

// sortedNames returns the names of sources, sorted.
func sortedNames(sources []Source) []string {
	names := make([]string, 0, len(sources))
	for _, s := range sources {
		names = append(names, s.Name)
	}
	slices.Sort(names)
	return names
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeJSONError(w http.ResponseWriter, code int, errCode, desc string) {
	writeJSON(w, code, map[string]string{"error": errCode, "error_description": desc})
}
