package zerowire

import (
	"errors"
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/zerowire/zerowire/pool"
	"github.com/zerowire/zerowire/wire"
)

// TestSlowConsumer: a client that sends large REQUESTs and never reads is
// closed once the server's queue to it stays over MaxQueuedBytes past
// SlowConsumerTimeout; a neighbour is unaffected, and every pooled buffer
// comes back.
func TestSlowConsumer(t *testing.T) {
	eachBackend(t, func(t *testing.T, b Backend) {
		h := &funcHandler{}
		s := startOn(t, b, h, Options{MaxQueuedBytes: 64 << 10, SlowConsumerTimeout: 200 * time.Millisecond, CloseLinger: 200 * time.Millisecond})
		nb := dialRaw(t, s.Addr().String())
		nb.handshake(0)
		base := settledPool(s) // on the net backend the neighbour holds its loop's buffers

		r := dialRaw(t, s.Addr().String())
		r.write(helloPacket(0)) // and never read
		done := make(chan error, 1)
		go func() {
			payload := make([]byte, 256<<10)
			var seq uint64
			for {
				seq++
				r.c.SetWriteDeadline(time.Now().Add(20 * time.Second))
				if _, err := r.c.Write(wire.AppendPacket(nil, wire.FrameRequest, 0, seq, payload)); err != nil {
					done <- err
					return
				}
			}
		}()
		waitLong(t, 20*time.Second, "the slow consumer to be closed", func() bool {
			return s.Stats().SlowConsumers == 1 && s.Stats().Conns == 1
		})
		// The client's writes fail once the server is gone, not for want
		// of the server reading.
		if err := <-done; errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("client write: %v; the server never closed", err)
		}
		if b == BackendEpoll && errorsSent(s, wire.CodeSlowConsumer) != 1 {
			t.Errorf("ErrorsSent[SLOW_CONSUMER] = %d, want 1", errorsSent(s, wire.CodeSlowConsumer))
		}
		errs := h.closedErrs()
		if len(errs) != 1 || errs[0] == nil {
			t.Fatalf("OnClose errors %v, want one for the slow consumer", errs)
		}
		nb.echo([]byte("unaffected"))
		waitPoolBack(t, func() pool.Stats { return settledPool(s) }, base)
	})
}

// TestIdleTimeout: HELLO advertises the idle timeout, and a connection
// silent past it after the handshake gets ERROR IDLE_TIMEOUT.
func TestIdleTimeout(t *testing.T) {
	eachBackend(t, func(t *testing.T, b Backend) {
		// 300 ms: the timer runs from the accept, and this goroutine may
		// stall between its dial and its write on a loaded machine.
		s := startOn(t, b, &funcHandler{}, Options{IdleTimeout: 300 * time.Millisecond})
		r := dialRaw(t, s.Addr().String())
		// One write, so that a stall of this goroutine cannot let the
		// timeout pass between the two.
		r.write(append(helloPacket(0), r.next(wire.FrameRequest, 0, []byte("one"))...))
		if sh := r.expectHello(); sh.IdleTimeoutMS != 300 {
			t.Fatalf("HELLO idle_timeout_ms %d, want 300", sh.IdleTimeoutMS)
		}
		r.expectResponse(1, []byte("one"))
		r.expectError(wire.CodeIdleTimeout)
		if n := errorsSent(s, wire.CodeIdleTimeout); n != 1 {
			t.Errorf("ErrorsSent[IDLE_TIMEOUT] = %d, want 1", n)
		}
	})
}

// TestIdleKeepAlive: every complete packet restarts the idle timer, so
// PINGs well inside it keep a connection open longer than the timeout.
func TestIdleKeepAlive(t *testing.T) {
	// 1 s, so that only a stall of most of a second between two PINGs
	// (idle/8 apart) lets the timer run out.
	const idle = time.Second
	eachBackend(t, func(t *testing.T, b Backend) {
		s := startOn(t, b, &funcHandler{}, Options{IdleTimeout: idle})
		r := dialRaw(t, s.Addr().String())
		r.handshake(0)
		for start := time.Now(); time.Since(start) < 3*idle/2; {
			time.Sleep(idle / 8)
			r.write(r.next(wire.FramePing, 0, []byte("keep")))
			if p := r.read(); p.Type() != wire.FramePong || p.Seq != r.seq {
				t.Fatalf("got %v seq %d, want PONG seq %d", p.Type(), p.Seq, r.seq)
			}
		}
		r.expectError(wire.CodeIdleTimeout)
	})
}

// TestIdleTimeoutBeforeHello: the idle timer covers the wait for HELLO.
func TestIdleTimeoutBeforeHello(t *testing.T) {
	eachBackend(t, func(t *testing.T, b Backend) {
		s := startOn(t, b, &funcHandler{}, Options{IdleTimeout: 100 * time.Millisecond})
		r := dialRaw(t, s.Addr().String())
		if h := r.expectHello(); h.IdleTimeoutMS != 100 {
			t.Fatalf("HELLO idle_timeout_ms %d, want 100", h.IdleTimeoutMS)
		}
		r.expectError(wire.CodeIdleTimeout)
	})
}

// TestHandshakeTimeout: a client that connects and sends nothing gets the
// server's HELLO, then ERROR IDLE_TIMEOUT, and is closed.
func TestHandshakeTimeout(t *testing.T) {
	eachBackend(t, func(t *testing.T, b Backend) {
		h := &funcHandler{}
		// 300 ms, for r2's dial and handshake on a loaded machine.
		s := startOn(t, b, h, Options{HandshakeTimeout: 300 * time.Millisecond})
		r := dialRaw(t, s.Addr().String())
		if h := r.expectHello(); h.IdleTimeoutMS != 0 {
			t.Fatalf("HELLO idle_timeout_ms %d, want 0", h.IdleTimeoutMS)
		}
		r.expectError(wire.CodeIdleTimeout)
		// A client that completed its handshake is not subject to it.
		r2 := dialRaw(t, s.Addr().String())
		r2.handshake(0)
		time.Sleep(900 * time.Millisecond)
		r2.echo([]byte("still open"))
		if n := len(h.openedIDs()); n != 1 {
			t.Errorf("OnOpen called %d times, want 1", n)
		}
	})
}

// TestMaxConns: past MaxConns a new connection gets HELLO, then ERROR
// OVERLOADED, and is closed; the open ones are unaffected, and a slot
// freed is usable again.
func TestMaxConns(t *testing.T) {
	eachBackend(t, func(t *testing.T, b Backend) {
		s := startOn(t, b, &funcHandler{}, Options{MaxConns: 3})
		var open []*rawConn
		for i := 0; i < 3; i++ {
			r := dialRaw(t, s.Addr().String())
			r.handshake(0)
			open = append(open, r)
		}
		for i := 0; i < 3; i++ {
			r := dialRaw(t, s.Addr().String())
			r.write(helloPacket(0))
			r.expectHello()
			r.expectErrorOrReset(wire.CodeOverloaded)
		}
		if n := errorsSent(s, wire.CodeOverloaded); n != 3 {
			t.Errorf("ErrorsSent[OVERLOADED] = %d, want 3", n)
		}
		for _, r := range open {
			r.echo([]byte("open"))
		}
		open[0].c.Close()
		waitFor(t, "a slot to free", func() bool { return s.Stats().Conns == 2 })
		r := dialRaw(t, s.Addr().String())
		r.handshake(0)
		r.echo([]byte("admitted"))
	})
}

// TestRefusedNotCounted: a connection refused past MaxConns is counted in
// Stats().Refusing while its close lingers, not in Conns, and takes no
// place: with refused ones still closing (their peers neither read on nor
// close), a place freed admits the next connection.
func TestRefusedNotCounted(t *testing.T) {
	eachBackend(t, func(t *testing.T, b Backend) {
		s := startOn(t, b, &funcHandler{}, Options{MaxConns: 2, CloseLinger: time.Minute})
		addr := s.Addr().String()
		var open, refused []*rawConn
		for i := 0; i < 2; i++ {
			r := dialRaw(t, addr)
			r.handshake(0)
			open = append(open, r)
		}
		for i := 0; i < 3; i++ {
			r := dialRaw(t, addr)
			r.write(helloPacket(0))
			r.expectHello()
			r.expectErrorSeq(0, wire.CodeOverloaded)
			refused = append(refused, r)
		}
		waitFor(t, "three refused connections", func() bool { return s.Stats().Refusing == 3 })
		if st := s.Stats(); st.Conns != 2 {
			t.Errorf("Conns = %d with 2 admitted and 3 refused, want 2", st.Conns)
		}
		open[0].c.Close()
		waitFor(t, "a place to free", func() bool { return s.Stats().Conns == 1 })
		r := dialRaw(t, addr)
		r.handshake(0)
		r.echo([]byte("admitted while refused ones close"))
		if st := s.Stats(); st.Conns != 2 || st.Refusing != 3 {
			t.Errorf("Conns %d, Refusing %d; want 2 and 3", st.Conns, st.Refusing)
		}
		for _, r := range refused {
			r.c.Close()
		}
		waitFor(t, "the refused connections to close", func() bool { return s.Stats().Refusing == 0 })
		if st := s.Stats(); st.Conns != 2 {
			t.Errorf("Conns = %d after the refused closed, want 2", st.Conns)
		}
	})
}

// expectErrorOrReset is expectError for a server that closes at once: the
// ERROR must arrive; the close after it may be a reset, since the client's
// HELLO is left unread.
func (r *rawConn) expectErrorOrReset(code wire.Code) {
	r.t.Helper()
	p := r.read()
	got, msg, err := wire.ParseErrorPayload(p.Payload)
	if p.Type() != wire.FrameError || err != nil || got != code || p.Seq != 0 {
		r.t.Fatalf("got %v seq %d code %v (%q), want ERROR seq 0 %v", p.Type(), p.Seq, got, msg, code)
	}
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, r.r); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		r.t.Fatalf("want EOF, got %v", err)
	}
}

// TestUnansweredAndTooLarge: a REQUEST the handler leaves unanswered gets
// ERROR APPLICATION with its seq; a RESPONSE larger than the client's
// max_packet_size becomes ERROR FRAME_TOO_LARGE with the REQUEST's seq,
// whether replied on the loop or from a worker; the connection stays open.
func TestUnansweredAndTooLarge(t *testing.T) {
	eachBackend(t, func(t *testing.T, b Backend) {
		replyErr := make(chan error, 2)
		h := &funcHandler{packet: func(c *Conn, p *Packet) {
			if p.Type() != wire.FrameRequest {
				return
			}
			switch string(p.Payload) {
			case "ignore":
			case "big":
				replyErr <- c.Reply(p, make([]byte, 5000))
			case "just fits":
				c.Reply(p, make([]byte, 4096-wire.HeaderSize))
			case "big deferred":
				d, _ := c.Defer(p)
				go func() { replyErr <- d.Reply(make([]byte, 5000)) }()
			case "error":
				c.ReplyError(p, wire.CodeAuthFailed, "no")
			default:
				c.Reply(p, p.Payload)
			}
		}}
		s := startOn(t, b, h, Options{})
		r := dialRaw(t, s.Addr().String())
		r.write(helloWith(wire.Hello{MinVersion: 1, MaxVersion: 1, MaxPacketSize: 4096}))
		r.expectHello()

		r.write(r.next(wire.FrameRequest, 0, []byte("ignore")))
		r.expectErrorSeq(r.seq, wire.CodeApplication)
		r.write(r.next(wire.FrameRequest, 0, []byte("big")))
		r.expectErrorSeq(r.seq, wire.CodeFrameTooLarge)
		if err := <-replyErr; err != ErrTooLarge {
			t.Errorf("Reply returned %v, want ErrTooLarge", err)
		}
		r.write(r.next(wire.FrameRequest, 0, []byte("just fits")))
		r.expectResponse(r.seq, make([]byte, 4096-wire.HeaderSize))
		r.write(r.next(wire.FrameRequest, 0, []byte("big deferred")))
		r.expectErrorSeq(r.seq, wire.CodeFrameTooLarge)
		if err := <-replyErr; err != nil {
			t.Errorf("Deferred.Reply returned %v, want nil (answered with FRAME_TOO_LARGE)", err)
		}
		r.write(r.next(wire.FrameRequest, 0, []byte("error")))
		r.expectErrorSeq(r.seq, wire.CodeAuthFailed)
		r.echo([]byte("still open"))
		if s.Stats().Conns != 1 {
			t.Errorf("Conns = %d, want 1", s.Stats().Conns)
		}
		if n := errorsSent(s, wire.CodeFrameTooLarge) + errorsSent(s, wire.CodeApplication); n != 0 {
			t.Errorf("ErrorsSent counts %d answers; it counts closing ERRORs only", n)
		}
	})
}
