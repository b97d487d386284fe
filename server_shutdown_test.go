package zerowire

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/zerowire/zerowire/pool"
	"github.com/zerowire/zerowire/wire"
)

// gatedDeferHandler defers every REQUEST to a goroutine that waits for
// gate, then replies after a random 0-20 ms.
func gatedDeferHandler(workers *sync.WaitGroup, gate chan struct{}) *funcHandler {
	return &funcHandler{packet: func(c *Conn, p *Packet) {
		if p.Type() != wire.FrameRequest {
			return
		}
		payload := append([]byte(nil), p.Payload...)
		d, err := c.Defer(p)
		if err != nil {
			panic(err)
		}
		workers.Add(1)
		go func() {
			defer workers.Done()
			<-gate
			time.Sleep(time.Duration(rand.IntN(21)) * time.Millisecond)
			if err := d.Reply(payload); err != nil {
				panic(fmt.Sprintf("Deferred.Reply: %v", err))
			}
		}()
	}}
}

// shutdownClient is what one client saw of a Shutdown.
type shutdownClient struct {
	goaway    *wire.GoAway
	responses map[uint64]string
	late      int // RESPONSEs after GOAWAY
	err       error
}

// TestShutdownInFlight: Shutdown with deferred REQUESTs in flight answers
// every REQUEST up to each connection's GOAWAY last seq, none above it,
// then closes. Each client pipelines half its REQUESTs, which the handler
// defers and holds until every client has its GOAWAY; the other half is
// sent while the server shuts down, and not all of it can make it.
func TestShutdownInFlight(t *testing.T) {
	const conns, perConn = 20, 200
	eachBackend(t, func(t *testing.T, b Backend) {
		var workers sync.WaitGroup
		gate := make(chan struct{})
		h := gatedDeferHandler(&workers, gate)
		s := startOn(t, b, h, Options{})
		addr := s.Addr().String()

		results := make([]shutdownClient, conns)
		var sent [conns]atomic.Uint64
		var wg sync.WaitGroup
		firstHalf := make(chan struct{}, conns)
		shut := make(chan struct{})
		goaways := make([]chan struct{}, conns)
		for i := 0; i < conns; i++ {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			wg.Add(2)
			goaways[i] = make(chan struct{})
			go func() { // writer
				defer wg.Done()
				burst := helloPacket(0)
				seq := uint64(1)
				for ; seq <= perConn; seq++ {
					burst = wire.AppendPacket(burst, wire.FrameRequest, 0, seq, []byte(fmt.Sprint(i, "/", seq)))
					if seq%10 != 0 {
						continue
					}
					if _, err := c.Write(burst); err != nil {
						return
					}
					burst = burst[:0]
					sent[i].Store(seq)
					if seq == perConn/2 {
						firstHalf <- struct{}{}
						<-shut
					} else if seq > perConn/2 {
						time.Sleep(time.Millisecond)
					}
				}
			}()
			go func() { // reader: until EOF, then close as a client does
				defer wg.Done()
				results[i] = readUntilEOF(c, goaways[i])
				c.Close()
			}()
		}
		for i := 0; i < conns; i++ {
			<-firstHalf
		}
		waitLong(t, 20*time.Second, "the first halves to be dispatched", func() bool {
			return s.Stats().PacketsIn >= conns*(1+perConn/2)
		})
		close(shut)
		shutErr := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			shutErr <- s.Shutdown(ctx)
		}()
		for i := range goaways {
			select {
			case <-goaways[i]:
			case <-time.After(20 * time.Second):
				t.Fatalf("client %d got no GOAWAY", i)
			}
		}
		close(gate) // now the deferred REQUESTs are answered
		if err := <-shutErr; err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		wg.Wait()
		workers.Wait()

		cut := 0
		for i, r := range results {
			if r.err != nil {
				t.Fatalf("client %d: %v", i, r.err)
			}
			if r.goaway == nil {
				t.Fatalf("client %d: no GOAWAY before EOF", i)
			}
			if r.goaway.Code != wire.CodeShuttingDown {
				t.Errorf("client %d: GOAWAY code %v, want SHUTTING_DOWN", i, r.goaway.Code)
			}
			last := r.goaway.LastSeq
			if last < perConn/2 || last > sent[i].Load() {
				t.Errorf("client %d: GOAWAY last seq %d; %d were received before Shutdown, %d sent", i, last, perConn/2, sent[i].Load())
			}
			if r.late < perConn/2 {
				t.Errorf("client %d: %d RESPONSEs after GOAWAY, want at least the %d held", i, r.late, perConn/2)
			}
			for seq := uint64(1); seq <= last; seq++ {
				if got, ok := r.responses[seq]; !ok || got != fmt.Sprint(i, "/", seq) {
					t.Errorf("client %d: REQUEST %d <= last seq %d answered %q (%v)", i, seq, last, got, ok)
				}
			}
			for seq := range r.responses {
				if seq > last {
					t.Errorf("client %d: REQUEST %d above last seq %d was answered", i, seq, last)
				}
			}
			if last < perConn {
				cut++
			}
		}
		t.Logf("%d of %d connections had REQUESTs past GOAWAY", cut, conns)
		if got := s.Stats().Conns; got != 0 {
			t.Errorf("%d connections open after Shutdown", got)
		}
		if n := len(h.closedErrs()); n != conns {
			t.Errorf("OnClose called %d times after Shutdown, want %d", n, conns)
		}
	})
}

// readUntilEOF collects what a client receives until EOF; it closes stop
// when GOAWAY arrives. A RESPONSE to a seq above GOAWAY's last seq is
// recorded, and reported by the caller.
func readUntilEOF(c net.Conn, stop chan struct{}) (r shutdownClient) {
	r.responses = make(map[uint64]string)
	rc := &rawConn{c: c, r: bufio.NewReaderSize(c, 64<<10)}
	gotHello := false
	for {
		p, err := rc.tryRead(30 * time.Second)
		if err == io.EOF {
			return r
		}
		if err != nil {
			r.err = err
			return r
		}
		switch p.Type() {
		case wire.FrameHello:
			if gotHello {
				r.err = errors.New("second HELLO")
				return r
			}
			gotHello = true
		case wire.FrameResponse:
			if _, dup := r.responses[p.Seq]; dup {
				r.err = fmt.Errorf("two RESPONSEs to %d", p.Seq)
				return r
			}
			r.responses[p.Seq] = string(p.Payload)
			if r.goaway != nil {
				r.late++
			}
		case wire.FrameGoAway:
			if r.goaway != nil {
				r.err = errors.New("second GOAWAY")
				return r
			}
			g, err := wire.ParseGoAway(p.Payload)
			if err != nil {
				r.err = err
				return r
			}
			r.goaway = &g
			close(stop)
		default:
			r.err = fmt.Errorf("unexpected %v seq %d", p.Type(), p.Seq)
			return r
		}
		if !gotHello {
			r.err = errors.New("first packet not HELLO")
			return r
		}
	}
}

// TestCloseFromHandler: Conn.Close in OnPacket sends GOAWAY with the seq of
// the REQUEST being handled, answers it (here from a worker), discards the
// REQUESTs pipelined behind it, and closes.
func TestCloseFromHandler(t *testing.T) {
	eachBackend(t, func(t *testing.T, b Backend) {
		h := &funcHandler{packet: func(c *Conn, p *Packet) {
			if p.Type() != wire.FrameRequest {
				return
			}
			switch string(p.Payload) {
			case "close":
				c.Reply(p, []byte("bye"))
				c.Close()
			case "defer and close":
				d, _ := c.Defer(p)
				c.Close()
				go func() {
					time.Sleep(20 * time.Millisecond)
					d.Reply([]byte("late bye"))
				}()
			default:
				c.Reply(p, p.Payload)
			}
		}}
		s := startOn(t, b, h, Options{})
		for _, cmd := range []string{"close", "defer and close"} {
			r := dialRaw(t, s.Addr().String())
			r.handshake(0)
			r.echo([]byte("first"))
			var out []byte
			out = append(out, r.next(wire.FrameRequest, 0, []byte(cmd))...)
			out = append(out, r.next(wire.FrameRequest, 0, []byte("discarded"))...)
			out = append(out, r.next(wire.FrameData, 0, []byte("discarded"))...)
			r.write(out)
			got := readUntilEOFRaw(t, r)
			r.c.Close()
			if got.goaway == nil || got.goaway.LastSeq != 2 || got.goaway.Code != wire.CodeNone {
				t.Fatalf("%s: GOAWAY %+v, want last seq 2 code NONE", cmd, got.goaway)
			}
			if len(got.responses) != 1 || got.responses[2] == "" {
				t.Fatalf("%s: responses %v, want only seq 2's", cmd, got.responses)
			}
		}
		waitFor(t, "connections to close", func() bool { return s.Stats().Conns == 0 })
		for _, err := range h.closedErrs() {
			if err != nil {
				t.Errorf("OnClose err %v after Conn.Close, want nil", err)
			}
		}
	})
}

func readUntilEOFRaw(t *testing.T, r *rawConn) shutdownClient {
	t.Helper()
	res := shutdownClient{responses: map[uint64]string{}}
	for {
		p, err := r.tryRead(5 * time.Second)
		if err == io.EOF {
			return res
		}
		if err != nil {
			t.Fatal(err)
		}
		switch p.Type() {
		case wire.FrameResponse:
			res.responses[p.Seq] = string(p.Payload)
		case wire.FrameGoAway:
			g, err := wire.ParseGoAway(p.Payload)
			if err != nil {
				t.Fatal(err)
			}
			res.goaway = &g
		default:
			t.Fatalf("unexpected %v seq %d", p.Type(), p.Seq)
		}
	}
}

// TestCloseLeaksNothing: after Close no goroutine or fd is left, and the
// pool has every buffer back: after the connections close (on the running
// server) and after the server's Close.
func TestCloseLeaksNothing(t *testing.T) {
	eachBackend(t, func(t *testing.T, b Backend) {
		check := goroutineLeakCheck(t)
		p, err := pool.New(pool.Options{MaxSize: 8 << 20})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		s, err := NewServer(&funcHandler{}, Options{Backend: b, Pool: p})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Listen("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		base := settledPool(s)
		var conns []*rawConn
		for i := 0; i < 20; i++ {
			r := dialRaw(t, s.Addr().String())
			r.handshake(wire.CapPayloadCRC)
			// A large REQUEST left half sent holds a partial-packet buffer.
			r.echo(make([]byte, 100<<10))
			r.write(r.next(wire.FrameRequest, wire.FlagCopy, make([]byte, 50000))[:30000])
			conns = append(conns, r)
		}
		waitFor(t, "partial packets to arrive", func() bool { return s.Stats().BytesIn >= 20*(100<<10+30000) })
		for _, r := range conns[:10] {
			r.c.Close()
		}
		waitFor(t, "half the connections to close", func() bool { return s.Stats().Conns == 10 })
		for _, r := range conns[10:] {
			r.c.Close()
		}
		waitFor(t, "every connection to close", func() bool { return s.Stats().Conns == 0 })
		waitPoolBack(t, func() pool.Stats { return settledPool(s) }, base)
		// And with connections open at Close.
		conns = conns[:0]
		for i := 0; i < 10; i++ {
			r := dialRaw(t, s.Addr().String())
			r.handshake(0)
			r.write(r.next(wire.FrameRequest, 0, make([]byte, 50000))[:30000])
			conns = append(conns, r)
		}
		waitFor(t, "10 connections", func() bool { return s.Stats().Conns == 10 })
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Wait(); err != nil {
			t.Fatal(err)
		}
		if n := poolInUse(p.Stats()); n != 0 {
			t.Errorf("%d pooled buffers in use after Close", n)
		}
		for _, r := range conns {
			// Close drops them without GOAWAY; unread bytes may turn the
			// close into a reset.
			r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.Copy(io.Discard, r.r); err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("after Close: %v, want EOF", err)
			}
			r.c.Close()
		}
		check()
	})
}
