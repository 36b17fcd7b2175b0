// Package fleet runs the fleet tests' processes: a program (see package
// child) built once by the test, started many times, killed with SIGKILL,
// and the fault-injecting proxy between them and Redis. Tests only.
package fleet

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/m2mtoken/m2mtoken/m2mtest"
)

var builds struct {
	sync.Mutex
	dir  string
	bins map[string]string
}

// Build builds the program pkg (an import path) once per test binary, with
// the race detector if the test has it, and returns its path. TestMain
// removes the builds with [RemoveBuilds].
func Build(t testing.TB, pkg string) string {
	t.Helper()
	builds.Lock()
	defer builds.Unlock()
	if bin, ok := builds.bins[pkg]; ok {
		return bin
	}
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "m2mtoken-fleet-")
		if err != nil {
			t.Fatal(err)
		}
		builds.dir, builds.bins = dir, make(map[string]string)
	}
	bin := filepath.Join(builds.dir, filepath.Base(pkg))
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	out, err := exec.Command("go", append(args, pkg)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	builds.bins[pkg] = bin
	return bin
}

// RemoveBuilds removes what Build built.
func RemoveBuilds() {
	builds.Lock()
	defer builds.Unlock()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
		builds.dir, builds.bins = "", nil
	}
}

// CleanupM wraps a TestMain's m so that its Run removes the builds.
type CleanupM struct{ M interface{ Run() int } }

// Run runs the tests, then removes the builds.
func (c CleanupM) Run() int {
	defer RemoveBuilds()
	return c.M.Run()
}

// API is a protected API on loopback that accepts the issuer's tokens for
// audience and counts what it refused.
type API struct {
	*httptest.Server
	Unauthenticated, Rejected atomic.Int64
}

// NewAPI starts an API; the test's cleanup stops it.
func NewAPI(t testing.TB, iss *m2mtest.Server, audience string) *API {
	a := &API{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		if auth == "" {
			a.Unauthenticated.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if _, err := iss.Verify(strings.TrimPrefix(auth, "Bearer "), audience); err != nil {
			a.Rejected.Add(1)
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(a.Close)
	return a
}

// Fleet is a set of processes of one program.
type Fleet struct {
	t    testing.TB
	bin  string
	args []string

	// Leases receives a process each time it takes the fetch lease.
	Leases chan *Proc

	mu    sync.Mutex
	procs []*Proc
	wg    sync.WaitGroup
}

// New returns an empty fleet of bin, each started with args. Cleanup kills
// every process and waits for them.
//
// M2MTOKEN_FLEET_ARGS adds arguments to every process, to compare settings
// by hand (such as -refresh-window 1s).
func New(t testing.TB, bin string, args ...string) *Fleet {
	args = append(args, strings.Fields(os.Getenv("M2MTOKEN_FLEET_ARGS"))...)
	f := &Fleet{t: t, bin: bin, args: args, Leases: make(chan *Proc, 1024)}
	t.Cleanup(f.stop)
	return f
}

// Proc is one process.
type Proc struct {
	ID      int
	Started time.Time
	cmd     *exec.Cmd
	stdin   io.Closer
	ready   chan struct{}
	first   chan time.Duration

	mu       sync.Mutex
	ok, fail int64
	maxCall  time.Duration
	fails    []string
	slow     []time.Duration
	logTail  []string
	killed   bool
	holding  bool           // it logged that it took the fetch lease, and has not released it
	redisRaw int            // lines go-redis wrote itself ("redis: ..."), not through slog
	goRedis  int            // go-redis lines routed through slog
	msgs     map[string]int // how many times each slog message was logged
}

// Start starts one more process and waits until it is ready.
func (f *Fleet) Start(extra ...string) *Proc {
	f.t.Helper()
	f.mu.Lock()
	p := &Proc{ID: len(f.procs) + 1, ready: make(chan struct{}), first: make(chan time.Duration, 1)}
	f.procs = append(f.procs, p)
	f.mu.Unlock()
	p.cmd = exec.Command(f.bin, append(slices.Clone(f.args), extra...)...)
	stdin, _ := p.cmd.StdinPipe()
	stdout, _ := p.cmd.StdoutPipe()
	stderr, _ := p.cmd.StderrPipe()
	p.stdin = stdin
	p.Started = time.Now()
	if err := p.cmd.Start(); err != nil {
		f.t.Fatalf("starting %s: %v", f.bin, err)
	}
	f.wg.Add(3)
	go func() { defer f.wg.Done(); p.readStdout(stdout) }()
	go func() { defer f.wg.Done(); f.readStderr(p, stderr) }()
	go func() { defer f.wg.Done(); p.cmd.Wait() }()
	select {
	case <-p.ready:
	case <-time.After(30 * time.Second):
		f.t.Fatalf("process %d not ready after 30 s; its log:\n%s", p.ID, p.Log())
	}
	return p
}

func (p *Proc) readStdout(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		num := func(i int) int64 {
			if i >= len(fields) {
				return 0
			}
			n, _ := strconv.ParseInt(fields[i], 10, 64)
			return n
		}
		p.mu.Lock()
		switch fields[0] {
		case "ready":
			close(p.ready)
		case "first":
			p.first <- time.Duration(num(1)) * time.Microsecond
		case "slow":
			p.slow = append(p.slow, time.Duration(num(2))*time.Microsecond)
			if os.Getenv("M2MTOKEN_FLEET_LOGS") != "" {
				p.logTail = append(p.logTail, fmt.Sprintf("SLOW CALL started %s took %v", time.UnixMilli(num(1)).UTC().Format("15:04:05.000"), time.Duration(num(2))*time.Microsecond))
			}
		case "fail":
			p.fails = append(p.fails, strings.Join(fields[3:], " "))
		case "stats":
			p.ok, p.fail, p.maxCall = num(1), num(2), time.Duration(num(3))*time.Microsecond
		}
		p.mu.Unlock()
	}
}

func (f *Fleet) readStderr(p *Proc, r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		p.logTail = append(p.logTail, line)
		if len(p.logTail) > 200 {
			p.logTail = p.logTail[len(p.logTail)-200:]
		}
		if strings.HasPrefix(line, "redis: ") {
			p.redisRaw++
		}
		if msg, ok := slogMessage(line); ok {
			if p.msgs == nil {
				p.msgs = make(map[string]int)
			}
			p.msgs[msg]++
		}
		if strings.Contains(line, "component=go-redis") {
			p.goRedis++
		}
		if strings.Contains(line, `msg="fetch lease taken"`) {
			p.holding = true
		}
		if strings.Contains(line, `msg="fetch lease released"`) {
			p.holding = false
		}
		killed := p.killed
		p.mu.Unlock()
		if !killed && strings.Contains(line, `msg="fetch lease taken"`) {
			select {
			case f.Leases <- p:
			default:
			}
		}
	}
}

// slogMessage returns the msg of a line slog's text handler wrote.
func slogMessage(line string) (string, bool) {
	_, rest, ok := strings.Cut(line, " msg=")
	if !ok {
		return "", false
	}
	if strings.HasPrefix(rest, `"`) {
		q, err := strconv.QuotedPrefix(rest)
		if err != nil {
			return "", false
		}
		msg, err := strconv.Unquote(q)
		return msg, err == nil
	}
	msg, _, _ := strings.Cut(rest, " ")
	return msg, true
}

// Logged reports how many times the fleet's processes logged a message
// that begins with prefix: in all, and at most by one process.
func (f *Fleet) Logged(prefix string) (total, most int) {
	f.mu.Lock()
	procs := slices.Clone(f.procs)
	f.mu.Unlock()
	for _, p := range procs {
		p.mu.Lock()
		n := 0
		for msg, c := range p.msgs {
			if strings.HasPrefix(msg, prefix) {
				n += c
			}
		}
		p.mu.Unlock()
		total += n
		most = max(most, n)
	}
	return total, most
}

// Warm waits until every live process has made its first call, and
// forgets the lease events until then.
func (f *Fleet) Warm(t testing.TB) {
	t.Helper()
	for _, p := range f.Live() {
		p.First(t, 30*time.Second)
	}
	for len(f.Leases) > 0 {
		<-f.Leases
	}
}

// First waits for the process's first successful call and returns its
// latency, or fails the test after timeout.
func (p *Proc) First(t testing.TB, timeout time.Duration) time.Duration {
	t.Helper()
	select {
	case d := <-p.first:
		return d
	case <-time.After(timeout):
		t.Fatalf("process %d made no successful call within %v; its log:\n%s", p.ID, timeout, p.Log())
		return 0
	}
}

// Kill kills the process with SIGKILL.
func (p *Proc) Kill() {
	p.mu.Lock()
	p.killed = true
	p.mu.Unlock()
	p.cmd.Process.Kill()
}

// Killed reports whether Kill was called.
func (p *Proc) Killed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.killed
}

// Log returns the last lines the process logged.
func (p *Proc) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.logTail, "\n")
}

// Live returns the processes not killed.
func (f *Fleet) Live() []*Proc {
	f.mu.Lock()
	defer f.mu.Unlock()
	var live []*Proc
	for _, p := range f.procs {
		if !p.Killed() {
			live = append(live, p)
		}
	}
	return live
}

// Idle returns the processes not killed that do not hold the fetch lease.
func (f *Fleet) Idle() []*Proc {
	var idle []*Proc
	for _, p := range f.Live() {
		p.mu.Lock()
		holding := p.holding
		p.mu.Unlock()
		if !holding {
			idle = append(idle, p)
		}
	}
	return idle
}

// Report sums up every process's calls so far.
type Report struct {
	Processes        int
	Calls, Failed    int64
	Failures         []string        // the first few failed calls' errors
	MaxCall          time.Duration   // the longest call, any process
	Slow             []time.Duration // every call over the children's -slow, longest first
	RedisRaw, Routed int             // go-redis lines on stderr, raw and through slog
}

// Report returns the fleet's figures so far (a killed process's calls up
// to its last report, at most 250 ms before its death).
func (f *Fleet) Report() Report {
	f.mu.Lock()
	procs := slices.Clone(f.procs)
	f.mu.Unlock()
	var r Report
	r.Processes = len(procs)
	for _, p := range procs {
		p.mu.Lock()
		r.Calls += p.ok + max(p.fail, int64(len(p.fails)))
		r.Failed += max(p.fail, int64(len(p.fails)))
		for _, e := range p.fails {
			if len(r.Failures) < 20 {
				r.Failures = append(r.Failures, fmt.Sprintf("process %d: %s", p.ID, e))
			}
		}
		r.MaxCall = max(r.MaxCall, p.maxCall)
		for _, d := range p.slow {
			r.MaxCall = max(r.MaxCall, d)
		}
		r.Slow = append(r.Slow, p.slow...)
		r.RedisRaw += p.redisRaw
		r.Routed += p.goRedis
		p.mu.Unlock()
	}
	slices.SortFunc(r.Slow, func(a, b time.Duration) int { return int(b - a) })
	return r
}

// Logs returns every process's last lines, for a failing test.
func (f *Fleet) Logs() string {
	f.mu.Lock()
	procs := slices.Clone(f.procs)
	f.mu.Unlock()
	var b strings.Builder
	for _, p := range procs {
		fmt.Fprintf(&b, "--- process %d (killed: %v)\n%s\n", p.ID, p.Killed(), p.Log())
	}
	return b.String()
}

func (f *Fleet) stop() {
	f.mu.Lock()
	procs := slices.Clone(f.procs)
	f.mu.Unlock()
	for _, p := range procs {
		p.stdin.Close()
		p.Kill()
	}
	f.wg.Wait()
	if f.t.Failed() || os.Getenv("M2MTOKEN_FLEET_LOGS") != "" {
		f.t.Logf("processes' logs (last lines):\n%s", f.Logs())
	}
}

// Soak reports whether the long runs were asked for (M2MTOKEN_SOAK=1).
func Soak() bool { return os.Getenv("M2MTOKEN_SOAK") != "" }
