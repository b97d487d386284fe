package faults

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerowire/zerowire"
	"github.com/zerowire/zerowire/pool"
	"github.com/zerowire/zerowire/wire"
)

// deferringEcho hands every REQUEST to a goroutine that answers it after a
// random delay of up to maxDelay.
type deferringEcho struct {
	maxDelay  time.Duration
	workers   sync.WaitGroup
	replyErrs atomic.Int64
	firstErr  atomic.Value
}

// startDeferring starts a server of backend b, listening on loopback, whose
// deferringEcho answers after up to 3 ms, over a pool of its own. The
// caller closes the server, then the pool.
func startDeferring(t *testing.T, b zerowire.Backend) (*zerowire.Server, *pool.Pool, *deferringEcho) {
	t.Helper()
	bufs := newPool(t)
	h := &deferringEcho{maxDelay: 3 * time.Millisecond}
	srv, err := zerowire.NewServer(h, zerowire.Options{Backend: b, Pool: bufs, Logger: quiet()})
	if err != nil {
		bufs.Close()
		t.Fatal(err)
	}
	if err := srv.Listen("127.0.0.1:0"); err != nil {
		srv.Close()
		bufs.Close()
		t.Fatal(err)
	}
	return srv, bufs, h
}

// settled checks, once the server has shut down, that every worker has
// returned and that no Defer or Reply failed.
func (h *deferringEcho) settled(t *testing.T) {
	t.Helper()
	if !waitGroup(&h.workers, 10*time.Second) {
		t.Fatalf("workers still answering 10s after Shutdown returned")
	}
	if n := h.replyErrs.Load(); n > 0 {
		t.Errorf("%d Defer or Reply calls failed; the first: %v", n, h.firstErr.Load())
	}
}

func (h *deferringEcho) OnOpen(*zerowire.Conn)         {}
func (h *deferringEcho) OnClose(*zerowire.Conn, error) {}
func (h *deferringEcho) OnPacket(c *zerowire.Conn, p *zerowire.Packet) {
	if p.Type() != zerowire.FrameRequest {
		return
	}
	payload := append([]byte(nil), p.Payload...)
	d, err := c.Defer(p)
	if err != nil {
		h.fail(fmt.Errorf("Defer: %w", err))
		return
	}
	h.workers.Add(1)
	go func() {
		defer h.workers.Done()
		time.Sleep(time.Duration(rand.Int64N(int64(h.maxDelay) + 1)))
		if err := d.Reply(payload); err != nil {
			h.fail(fmt.Errorf("Deferred.Reply of seq %d: %w", d.Seq(), err))
		}
	}()
}

func (h *deferringEcho) fail(err error) {
	h.replyErrs.Add(1)
	h.firstErr.CompareAndSwap(nil, err)
}

// shutdownPayload is the payload of REQUEST seq on connection conn: up to
// 2000 bytes, so that a packet never exceeds the 4096 bytes a client may
// send before the server's HELLO.
func shutdownPayload(conn int, seq uint64) []byte {
	n := int((uint64(conn)*7919 + seq*104729) % 2001)
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(uint64(conn) + seq*31 + uint64(i))
	}
	return b
}

// rawShutdownConn is one raw connection of TestShutdownUnderLoad: it
// keeps inFlight REQUESTs outstanding until GOAWAY, then reads to EOF.
type rawShutdownConn struct {
	idx  int
	c    net.Conn
	sent atomic.Uint64 // highest seq written (stored before the write)

	// Owned by the reader.
	answered []bool // by seq
	goaway   *wire.GoAway
	late     int // RESPONSEs after GOAWAY
	err      error
}

func (rc *rawShutdownConn) run(inFlight int, wg *sync.WaitGroup) {
	tokens := make(chan struct{}, inFlight)
	for i := 0; i < inFlight; i++ {
		tokens <- struct{}{}
	}
	stop := make(chan struct{})
	go func() { // the writer: a REQUEST per token, batched while tokens last
		defer wg.Done()
		out := clientHello()
		seq := uint64(0)
		for {
			select {
			case <-stop:
				return
			default:
			}
			select {
			case <-tokens:
			default:
				if len(out) > 0 {
					if _, err := rc.c.Write(out); err != nil {
						return
					}
					out = out[:0]
				}
				select {
				case <-stop:
					return
				case <-tokens:
				}
			}
			seq++
			rc.sent.Store(seq)
			out = wire.AppendPacket(out, wire.FrameRequest, 0, seq, shutdownPayload(rc.idx, seq))
		}
	}()
	go func() { // the reader, until EOF
		defer wg.Done()
		defer rc.c.Close()
		rc.read(tokens, stop)
	}()
}

func (rc *rawShutdownConn) read(tokens chan<- struct{}, stop chan struct{}) {
	stopped := false
	defer func() {
		if !stopped {
			close(stop)
		}
	}()
	r := bufio.NewReaderSize(rc.c, 64<<10)
	gotHello := false
	for {
		rc.c.SetReadDeadline(time.Now().Add(30 * time.Second))
		p, err := readPacket(r)
		if err == io.EOF {
			if rc.goaway == nil {
				rc.err = errors.New("EOF before GOAWAY")
			}
			return
		}
		if err != nil {
			rc.err = err
			return
		}
		if !gotHello && p.Type() != wire.FrameHello {
			rc.err = fmt.Errorf("first packet %v, not HELLO", p.Type())
			return
		}
		switch p.Type() {
		case wire.FrameHello:
			if gotHello {
				rc.err = errors.New("second HELLO")
				return
			}
			gotHello = true
		case wire.FrameResponse:
			if p.Seq == 0 || p.Seq > rc.sent.Load() {
				rc.err = fmt.Errorf("RESPONSE to seq %d, never sent (%d sent)", p.Seq, rc.sent.Load())
				return
			}
			for uint64(len(rc.answered)) <= p.Seq {
				rc.answered = append(rc.answered, make([]bool, len(rc.answered)+64)...)
			}
			if rc.answered[p.Seq] {
				rc.err = fmt.Errorf("two RESPONSEs to seq %d", p.Seq)
				return
			}
			if want := shutdownPayload(rc.idx, p.Seq); !bytes.Equal(p.Payload, want) {
				rc.err = fmt.Errorf("RESPONSE to seq %d carries %d bytes, not the %d sent", p.Seq, len(p.Payload), len(want))
				return
			}
			rc.answered[p.Seq] = true
			if rc.goaway != nil {
				rc.late++
			}
			select {
			case tokens <- struct{}{}:
			default:
			}
		case wire.FrameGoAway:
			if rc.goaway != nil {
				rc.err = errors.New("second GOAWAY")
				return
			}
			g, err := wire.ParseGoAway(p.Payload)
			if err != nil {
				rc.err = err
				return
			}
			rc.goaway = &g
			close(stop) // no new REQUEST after GOAWAY
			stopped = true
		default:
			code, msg, _ := wire.ParseErrorPayload(p.Payload)
			rc.err = fmt.Errorf("unexpected %v seq %d (%v %q)", p.Type(), p.Seq, code, msg)
			return
		}
	}
}

// TestShutdownUnderLoad: Server.Shutdown with hundreds of connections, each
// keeping 16 REQUESTs in flight, which the handler answers from goroutines
// after a random delay. On every connection: one GOAWAY (SHUTTING_DOWN);
// every REQUEST up to its last seq answered once with its own bytes;
// none above it answered; then a clean EOF. Speaks the contract with the
// raw wire package, so the last seq itself is checked.
func TestShutdownUnderLoad(t *testing.T) {
	for _, b := range serverBackends() {
		t.Run(backendName(b), func(t *testing.T) {
			rounds := pick(1, 3)
			for round := 0; round < rounds; round++ {
				shutdownRaw(t, b, pick(200, 1000), 16, pick(300*time.Millisecond, 2*time.Second))
			}
		})
	}
}

func shutdownRaw(t *testing.T, b zerowire.Backend, conns, inFlight int, loadFor time.Duration) {
	checkLeaks := leakCheck(t)
	srv, bufs, h := startDeferring(t, b)
	defer bufs.Close()
	defer srv.Close()
	// Every connection is dialed first, and the load starts on all at once.
	var wg sync.WaitGroup
	rcs := make([]*rawShutdownConn, conns)
	dialStart := time.Now()
	for i := range rcs {
		c, err := net.Dial("tcp", srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		rcs[i] = &rawShutdownConn{idx: i, c: c}
	}
	waitUntil(t, 20*time.Second, "every connection to be accepted", func() bool { return srv.Stats().Accepted == uint64(conns) })
	dialTime := time.Since(dialStart)
	for _, rc := range rcs {
		wg.Add(2)
		rc.run(inFlight, &wg)
	}
	waitUntil(t, 20*time.Second, "every connection to open", func() bool { return srv.Stats().Conns == int64(conns) })
	time.Sleep(loadFor)
	before := srv.Stats().PacketsIn

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	shutdownTime := time.Since(start)
	if !waitGroup(&wg, 30*time.Second) {
		t.Fatalf("clients still reading 30s after Shutdown returned")
	}
	h.settled(t)

	var sent, answered, discarded, late uint64
	bad := 0
	for _, rc := range rcs {
		fail := func(format string, args ...any) {
			if bad < 10 {
				t.Errorf("connection %d: "+format, append([]any{rc.idx}, args...)...)
			}
			bad++
		}
		if rc.err != nil {
			fail("%v", rc.err)
			continue
		}
		if rc.goaway == nil {
			fail("no GOAWAY")
			continue
		}
		last, n := rc.goaway.LastSeq, rc.sent.Load()
		if rc.goaway.Code != wire.CodeShuttingDown {
			fail("GOAWAY code %v, want SHUTTING_DOWN", rc.goaway.Code)
		}
		if last > n {
			fail("GOAWAY last seq %d, but only %d REQUESTs were sent", last, n)
		}
		for seq := uint64(1); seq <= n; seq++ {
			got := seq < uint64(len(rc.answered)) && rc.answered[seq]
			if seq <= last && !got {
				fail("REQUEST %d <= last seq %d got no RESPONSE", seq, last)
			}
			if seq > last && got {
				fail("REQUEST %d > last seq %d was answered", seq, last)
			}
			if got {
				answered++
			}
		}
		sent += n
		discarded += n - min(last, n)
		late += uint64(rc.late)
	}
	if st := srv.Stats(); st.Conns != 0 {
		t.Errorf("%d connections open after Shutdown", st.Conns)
	}
	poolBack(t, bufs)
	t.Logf("%d connections x %d in flight (dialed in %v, loaded %v): %d REQUESTs sent (%d received before Shutdown), %d answered (%d after their GOAWAY), %d above the last seq discarded; Shutdown took %v",
		conns, inFlight, dialTime.Round(time.Millisecond), loadFor, sent, before, answered, late, discarded, shutdownTime.Round(time.Millisecond))
	checkLeaks()
}

// TestShutdownUnderLoadClients: the same with zerowire Clients, each
// keeping 16 calls in flight with Client.Go: every call's done runs exactly
// once, with its RESPONSE or ErrNotProcessed, never ErrConnLost (which
// would mean a REQUEST lost).
func TestShutdownUnderLoadClients(t *testing.T) {
	for _, b := range serverBackends() {
		t.Run(backendName(b), func(t *testing.T) {
			shutdownClients(t, b, pick(200, 1000), 16, pick(300*time.Millisecond, 2*time.Second))
		})
	}
}

func shutdownClients(t *testing.T, b zerowire.Backend, conns, inFlight int, loadFor time.Duration) {
	checkLeaks := leakCheck(t)
	srv, bufs, h := startDeferring(t, b)
	defer bufs.Close()
	defer srv.Close()
	clients := make([]*zerowire.Client, conns)
	for i := range clients {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cl, err := zerowire.Dial(ctx, "tcp", srv.Addr().String(), &zerowire.ClientOptions{Logger: quiet(), PayloadCRC: i%2 == 0})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = cl
	}

	type outcome struct {
		done  atomic.Int32 // times done ran
		class atomic.Int32
	}
	var (
		mu       sync.Mutex
		outcomes [][]*outcome // by client, by call
		bad      atomic.Int64
		badMsg   atomic.Value
		pending  atomic.Int64
	)
	outcomes = make([][]*outcome, conns)
	var wg sync.WaitGroup
	for i, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem := make(chan struct{}, inFlight)
			for n := 0; ; n++ {
				sem <- struct{}{}
				payload := shutdownPayload(i, uint64(n))
				o := &outcome{}
				mu.Lock()
				outcomes[i] = append(outcomes[i], o)
				mu.Unlock()
				pending.Add(1)
				err := cl.Go(payload, func(r *zerowire.Response, err error) {
					defer func() { <-sem; pending.Add(-1) }()
					if o.done.Add(1) != 1 {
						bad.Add(1)
						badMsg.CompareAndSwap(nil, "done ran twice for one call")
						return
					}
					c, kind := classify(err)
					if err == nil {
						if !bytes.Equal(r.Payload(), payload) {
							c, kind = classBad, "wrong payload"
						}
						r.Release()
					}
					o.class.Store(int32(c))
					if c != classOK && !errors.Is(err, zerowire.ErrNotProcessed) {
						bad.Add(1)
						badMsg.CompareAndSwap(nil, kind)
					}
				})
				if err != nil {
					// Refused before sending (GOAWAY came): not a call.
					<-sem
					pending.Add(-1)
					mu.Lock()
					outcomes[i] = outcomes[i][:len(outcomes[i])-1]
					mu.Unlock()
					if !errors.Is(err, zerowire.ErrGoingAway) && !errors.Is(err, zerowire.ErrClosed) {
						bad.Add(1)
						badMsg.CompareAndSwap(nil, "Go: "+err.Error())
					}
					return
				}
			}
		}()
	}
	time.Sleep(loadFor)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	shutdownTime := time.Since(start)
	if !waitGroup(&wg, 30*time.Second) {
		t.Fatalf("callers still calling 30s after Shutdown")
	}
	if !pollUntil(30*time.Second, func() bool { return pending.Load() == 0 }) {
		t.Fatalf("%d calls still without an outcome 30s after Shutdown", pending.Load())
	}
	for _, cl := range clients {
		select {
		case <-cl.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("a client still open 10s after the server shut down")
		}
		cl.Close()
	}
	h.settled(t)
	var calls, ok, notProcessed int
	for _, oc := range outcomes {
		for _, o := range oc {
			calls++
			if o.done.Load() != 1 {
				bad.Add(1)
				badMsg.CompareAndSwap(nil, fmt.Sprintf("done ran %d times", o.done.Load()))
			}
			if class(o.class.Load()) == classOK {
				ok++
			} else {
				notProcessed++
			}
		}
	}
	if n := bad.Load(); n > 0 {
		t.Errorf("%d calls without exactly one good outcome (RESPONSE or ErrNotProcessed); the first: %v", n, badMsg.Load())
	}
	if st := srv.Stats(); st.Conns != 0 {
		t.Errorf("%d connections open after Shutdown", st.Conns)
	}
	poolBack(t, bufs)
	t.Logf("%d clients x %d in flight: %d calls, %d answered, %d ErrNotProcessed (safe to retry); Shutdown took %v",
		conns, inFlight, calls, ok, notProcessed, shutdownTime.Round(time.Millisecond))
	checkLeaks()
}
