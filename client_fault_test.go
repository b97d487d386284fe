package zerowire

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

	"github.com/zerowire/zerowire/wire"
)

// jitterHandler answers each REQUEST from a goroutine after a random delay,
// so answers leave in a different order from the requests.
type jitterHandler struct{}

func (jitterHandler) OnOpen(c *Conn)             {}
func (jitterHandler) OnClose(c *Conn, err error) {}
func (jitterHandler) OnPacket(c *Conn, p *Packet) {
	d, err := c.Defer(p)
	if err != nil {
		return
	}
	payload := append([]byte(nil), p.Payload...)
	time.AfterFunc(time.Duration(rand.N(5000))*time.Microsecond, func() { d.Reply(payload) })
}

func TestClientOutOfOrderAnswers(t *testing.T) {
	s := startServer(t, jitterHandler{}, Options{})
	for _, b := range backends {
		cl := dialTest(t, s, b, nil)
		var wg sync.WaitGroup
		for g := 0; g < 100; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 20; i++ {
					want := []byte(fmt.Sprint(g, "/", i))
					got, err := cl.CallBytes(context.Background(), want)
					if err != nil || !bytes.Equal(got, want) {
						t.Errorf("%s: got %q, %v", want, got, err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
}

// fakeServer accepts one connection, does the HELLO exchange, and hands
// the connection to f.
func fakeServer(t *testing.T, f func(r *rawConn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		r := &rawConn{t: t, c: c, r: newReader(c)}
		defer c.Close()
		if p := r.read(); p.Type() != wire.FrameHello {
			t.Errorf("client's first packet is %v", p.Type())
			return
		}
		r.write(helloPacket(0))
		f(r)
	}()
	return ln.Addr().String()
}

func TestClientUnknownSeqIsProtocolError(t *testing.T) {
	for _, b := range backends {
		addr := fakeServer(t, func(r *rawConn) {
			p := r.read()
			r.write(wire.AppendPacket(nil, wire.FrameResponse, 0, p.Seq+100, nil))
			// The client must answer with ERROR PROTOCOL_ERROR and close.
			for {
				q := r.read()
				if q.Type() == wire.FrameError {
					code, _, _ := wire.ParseErrorPayload(q.Payload)
					if code != wire.CodeProtocolError || q.Seq != 0 {
						t.Errorf("client sent ERROR %v seq %d", code, q.Seq)
					}
					break
				}
			}
			io.Copy(io.Discard, r.r)
		})
		cl, err := Dial(context.Background(), "tcp", addr, &ClientOptions{Backend: b})
		if err != nil {
			t.Fatal(err)
		}
		_, err = cl.Call(context.Background(), []byte("x"))
		if !errors.Is(err, ErrConnLost) {
			t.Fatalf("%v: pending call failed with %v, want ErrConnLost", b, err)
		}
		<-cl.Done()
		var we *wire.Error
		if !errors.As(cl.Err(), &we) || we.Code != wire.CodeProtocolError {
			t.Fatalf("client ended with %v", cl.Err())
		}
	}
}

func TestClientGoAway(t *testing.T) {
	for _, b := range backends {
		addr := fakeServer(t, func(r *rawConn) {
			var seqs []uint64
			for len(seqs) < 4 {
				seqs = append(seqs, r.read().Seq)
			}
			// Processed up to the second; the other two are not.
			var buf []byte
			buf = wire.AppendPacket(buf, wire.FrameGoAway, 0, 0, wire.AppendGoAwayPayload(nil, seqs[1], wire.CodeShuttingDown, "bye"))
			buf = wire.AppendPacket(buf, wire.FrameResponse, 0, seqs[0], []byte("r1"))
			buf = wire.AppendPacket(buf, wire.FrameResponse, 0, seqs[1], []byte("r2"))
			r.write(buf)
			io.Copy(io.Discard, r.r) // the client closes once it has its answers
		})
		cl, err := Dial(context.Background(), "tcp", addr, &ClientOptions{Backend: b})
		if err != nil {
			t.Fatal(err)
		}
		type res struct {
			payload string
			err     error
		}
		results := make([]chan res, 4)
		for i := range results {
			results[i] = make(chan res, 1)
			ch := results[i]
			// Go posts the call before it returns, so from one goroutine
			// the seqs are 1..4 in this order.
			err := cl.Go([]byte("q"), func(r *Response, err error) {
				if err != nil {
					ch <- res{"", err}
					return
				}
				ch <- res{string(r.Payload()), nil}
				r.Release()
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		got := []res{<-results[0], <-results[1], <-results[2], <-results[3]}
		if got[0].err != nil || got[1].err != nil || got[0].payload+got[1].payload != "r1r2" {
			t.Fatalf("%v: processed calls: %+v", b, got[:2])
		}
		for _, r := range got[2:] {
			if !errors.Is(r.err, ErrNotProcessed) {
				t.Fatalf("%v: unprocessed call ended with %v, want ErrNotProcessed", b, r.err)
			}
		}
		if _, err := cl.Call(context.Background(), []byte("late")); err == nil {
			t.Fatalf("%v: a call after GOAWAY succeeded", b)
		}
		<-cl.Done()
	}
}

func TestPoolSurvivesServerRestart(t *testing.T) {
	h := &echoHandler{}
	s := startServer(t, h, Options{})
	addr := s.Addr().String()
	p, err := NewPool(PoolOptions{Addrs: []string{addr}, ConnsPerAddr: 2, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	call := func() error {
		r, err := p.Call(ctx, []byte("ping"))
		if err == nil {
			r.Release()
		}
		return err
	}
	if err := call(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	short, cancelShort := context.WithTimeout(context.Background(), 200*time.Millisecond)
	_, err = p.Call(short, []byte("down"))
	cancelShort()
	if err == nil {
		t.Fatal("call succeeded with the server down")
	}
	// The server comes back on the same address: the pool reconnects.
	s2, err := NewServer(h, Options{Logger: s.opts.Logger})
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Listen(addr); err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := call(); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}

// TestPoolConnEndsAfterPick: a connection that ends between the pool's
// choice and the call has sent nothing, so the call is retried on another
// connection, and a caller that closed nothing never sees ErrClosed (the
// crash test in bench/faults once got it, started while its server was
// down).
func TestPoolConnEndsAfterPick(t *testing.T) {
	s := startServer(t, &echoHandler{}, Options{})
	for _, conns := range []int{2, 1} {
		p, err := NewPool(PoolOptions{Addrs: []string{s.Addr().String()}, ConnsPerAddr: conns, MinBackoff: 10 * time.Millisecond, MaxBackoff: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the pool's connections", func() bool {
			up := 0
			for _, sl := range p.slots {
				if cl := sl.cl.Load(); cl != nil && cl.state.Load() == 1 {
					up++
				}
			}
			return up == conns
		})
		// With two connections only the first pick is closed; with one,
		// every pick is, so the call can only fail.
		var picks atomic.Int32
		testHookPicked = func(cl *Client) {
			if picks.Add(1) == 1 || conns == 1 {
				cl.Close()
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		r, err := p.Call(ctx, []byte("x"))
		cancel()
		testHookPicked = nil
		switch {
		case conns == 2 && err != nil:
			t.Errorf("2 connections, the first closed after the pick: %v, want the answer from the other", err)
		case conns == 2 && string(r.Payload()) != "x":
			t.Errorf("2 connections: answer %q, want %q", r.Payload(), "x")
		case conns == 1 && !errors.Is(err, ErrNotProcessed) && !errors.Is(err, ErrNoConnection):
			t.Errorf("1 connection closed at every pick: %v, want ErrNotProcessed or ErrNoConnection", err)
		}
		if r != nil {
			r.Release()
		}
		if n := picks.Load(); n < 2 {
			t.Errorf("%d connections: %d picks, want a retry after the closed one", conns, n)
		}
		p.Close()
	}
}

func TestClientServerKilledMidFlight(t *testing.T) {
	h := &slowHandler{delay: 5 * time.Second}
	s := startServer(t, h, Options{})
	for k, b := range backends {
		cl := dialTest(t, s, b, nil)
		errc := make(chan error, 10)
		for i := 0; i < 10; i++ {
			go func() {
				_, err := cl.Call(context.Background(), []byte("x"))
				errc <- err
			}()
		}
		// Counted where the server holds them: a call still queued for
		// its client's loop when the FIN arrives is ErrNotProcessed, and
		// rightly so.
		waitFor(t, "calls at the server", func() bool { return h.deferred.Load() == int64(10*(k+1)) })
		defer func() {
			for i := 0; i < 10; i++ {
				if err := <-errc; !errors.Is(err, ErrConnLost) {
					t.Errorf("pending call ended with %v, want ErrConnLost", err)
				}
			}
		}()
	}
	s.Close()
}

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReaderSize(c, 1<<20) }

// TestDialPeerClosesDuringHello: a peer that accepts and closes at once
// ends the connection cleanly before it is usable, and Dial must fail
// rather than return a nil Client with a nil error (the pool's keep then
// dereferenced it). One that sends HELLO and then closes may give either a
// Client or an error, never neither.
func TestDialPeerClosesDuringHello(t *testing.T) {
	for _, sendHello := range []bool{false, true} {
		for _, b := range backends {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					if sendHello {
						c.Write(helloPacket(0))
					}
					c.Close()
				}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			cl, err := Dial(ctx, "tcp", ln.Addr().String(), &ClientOptions{Backend: b})
			cancel()
			ln.Close()
			switch {
			case cl == nil && err == nil:
				t.Errorf("hello %v, %v: Dial returned neither a Client nor an error", sendHello, b)
			case !sendHello && err == nil:
				t.Errorf("%v: Dial to a peer that closed at once succeeded", b)
			case cl != nil:
				cl.Close()
			}
		}
	}
}
