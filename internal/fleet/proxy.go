package fleet

import (
	"net"
	"sync"
	"time"
)

// Proxy is a fault-injecting TCP proxy on loopback, put between processes
// and a server (Redis) to delay, reset and blackhole their connections.
type Proxy struct {
	l      net.Listener
	target string

	mu        sync.Mutex
	cond      *sync.Cond
	delay     time.Duration
	blackhole bool
	closed    bool
	conns     map[*proxyConn]struct{}
	wg        sync.WaitGroup
}

type proxyConn struct{ client, server net.Conn }

// NewProxy listens on a free loopback port and forwards to target.
func NewProxy(target string) (*Proxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{l: l, target: target, conns: make(map[*proxyConn]struct{})}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address to connect to instead of the target.
func (p *Proxy) Addr() string { return p.l.Addr().String() }

// SetDelay delays every chunk of data, either way, by d (0: none). Order
// is kept: it is latency, not reordering.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// Blackhole makes the proxy swallow everything (on) as a network that
// drops packets would: connections are accepted and stay open, but no
// byte goes through, until it is turned off, when they flow on.
func (p *Proxy) Blackhole(on bool) {
	p.mu.Lock()
	p.blackhole = on
	p.mu.Unlock()
	p.cond.Broadcast()
}

// Reset closes every open connection with a TCP RST, both ways.
func (p *Proxy) Reset() {
	p.mu.Lock()
	conns := p.conns
	p.conns = make(map[*proxyConn]struct{})
	p.mu.Unlock()
	for c := range conns {
		c.reset()
	}
}

func (c *proxyConn) reset() {
	for _, nc := range []net.Conn{c.client, c.server} {
		if nc == nil {
			continue
		}
		if tc, ok := nc.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		nc.Close()
	}
}

// Close stops the proxy, closes its connections and waits for its
// goroutines.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cond.Broadcast()
	p.l.Close()
	p.Reset()
	p.wg.Wait()
}

// gate waits while the proxy is blackholed and returns the delay to
// apply, or false if the proxy is closed.
func (p *Proxy) gate() (time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.blackhole && !p.closed {
		p.cond.Wait()
	}
	return p.delay, !p.closed
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		pc := &proxyConn{client: c}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			return
		}
		p.conns[pc] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(pc)
	}
}

func (p *Proxy) serve(pc *proxyConn) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.conns, pc)
		p.mu.Unlock()
		pc.client.Close()
		if pc.server != nil {
			pc.server.Close()
		}
	}()
	if _, ok := p.gate(); !ok {
		return
	}
	s, err := net.DialTimeout("tcp", p.target, time.Second)
	if err != nil {
		if tc, ok := pc.client.(*net.TCPConn); ok {
			tc.SetLinger(0) // the server is down: refuse, as it would
		}
		return
	}
	p.mu.Lock()
	pc.server = s
	_, live := p.conns[pc]
	p.mu.Unlock()
	if !live { // reset while dialling
		pc.reset()
		return
	}
	done := make(chan struct{}, 2)
	go func() { p.pipe(s, pc.client); done <- struct{}{} }()
	go func() { p.pipe(pc.client, s); done <- struct{}{} }()
	<-done
	pc.client.Close()
	s.Close()
	<-done
}

// pipe copies from src to dst through the proxy's gate and delay.
func (p *Proxy) pipe(dst, src net.Conn) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	q := make(chan chunk, 1024)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for c := range q {
			if d := time.Until(c.at); d > 0 {
				time.Sleep(d)
			}
			if _, err := dst.Write(c.b); err != nil {
				for range q {
				}
				return
			}
		}
	}()
	defer func() { close(q); <-writerDone }()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			d, ok := p.gate()
			if !ok {
				return
			}
			q <- chunk{b: append([]byte(nil), buf[:n]...), at: time.Now().Add(d)}
		}
		if err != nil {
			return
		}
	}
}
