package zerowire

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerowire/zerowire/wire"
)

// echoHandler is the contract's echo service.
type echoHandler struct {
	data   atomic.Int64
	opened atomic.Int64
	closed atomic.Int64
}

func (h *echoHandler) OnOpen(c *Conn)             { h.opened.Add(1) }
func (h *echoHandler) OnClose(c *Conn, err error) { h.closed.Add(1) }
func (h *echoHandler) OnPacket(c *Conn, p *Packet) {
	if p.Type() == wire.FrameRequest {
		c.Reply(p, p.Payload)
		return
	}
	h.data.Add(1)
}

var backends = []Backend{BackendEpoll, BackendNet}

// forBackends runs f against a fresh echo server on every backend this
// platform has.
func forBackends(t *testing.T, opts Options, f func(t *testing.T, s *Server, h *echoHandler)) {
	for _, b := range backends {
		if b == BackendEpoll && !epollAvailable {
			continue
		}
		t.Run(b.String(), func(t *testing.T) {
			h := &echoHandler{}
			o := opts
			o.Backend = b
			s := startServer(t, h, o)
			f(t, s, h)
		})
	}
}

func startServer(t testing.TB, h Handler, o Options) *Server {
	t.Helper()
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := NewServer(h, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// rawConn is a peer that speaks the contract by hand, to test the server
// against the bytes rather than against our own client.
type rawConn struct {
	t   testing.TB
	c   net.Conn
	r   *bufio.Reader
	seq uint64
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, r: bufio.NewReaderSize(c, 1<<20)}
}

func (r *rawConn) write(b []byte) {
	r.t.Helper()
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

func helloPacket(caps uint32) []byte {
	h := wire.Hello{MinVersion: 1, MaxVersion: 1, MaxPacketSize: wire.DefaultMaxPacketSize, Capabilities: caps}
	return wire.AppendPacket(nil, wire.FrameHello, 0, 0, wire.AppendHello(nil, h))
}

// handshake sends HELLO and reads the server's.
func (r *rawConn) handshake(caps uint32) wire.Hello {
	r.t.Helper()
	r.write(helloPacket(caps))
	p := r.read()
	if p.Type() != wire.FrameHello {
		r.t.Fatalf("first packet from server is %v, want HELLO", p.Type())
	}
	h, err := wire.ParseHello(p.Payload)
	if err != nil {
		r.t.Fatal(err)
	}
	return h
}

func (r *rawConn) next(t wire.FrameType, flags wire.Flags, payload []byte) []byte {
	r.seq++
	return wire.AppendPacket(nil, t, flags, r.seq, payload)
}

// read returns the next packet (its payload copied).
func (r *rawConn) read() wire.Packet {
	r.t.Helper()
	p, err := r.tryRead(5 * time.Second)
	if err != nil {
		r.t.Fatalf("read: %v", err)
	}
	return p
}

func (r *rawConn) tryRead(d time.Duration) (wire.Packet, error) {
	r.c.SetReadDeadline(time.Now().Add(d))
	hdr, err := r.r.Peek(wire.HeaderSize)
	if err != nil {
		return wire.Packet{}, err
	}
	h, err := wire.DecodeHeader(hdr)
	if err != nil {
		return wire.Packet{}, err
	}
	buf := make([]byte, h.Size)
	if _, err := io.ReadFull(r.r, buf); err != nil {
		return wire.Packet{}, err
	}
	p, _, err := wire.Parse(buf, wire.Limits{MaxPacketSize: 1 << 30, PayloadCRC: true})
	return p, err
}

// expectError reads until an ERROR arrives and checks its code, then
// checks that the server closes the connection.
func (r *rawConn) expectError(code wire.Code) {
	r.t.Helper()
	for {
		p := r.read()
		if p.Type() != wire.FrameError {
			continue
		}
		got, msg, err := wire.ParseErrorPayload(p.Payload)
		if err != nil || got != code || p.Seq != 0 {
			r.t.Fatalf("ERROR seq %d code %v (%q), want seq 0 code %v", p.Seq, got, msg, code)
		}
		break
	}
	r.expectEOF()
}

func (r *rawConn) expectEOF() {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, r.r); err != nil {
		r.t.Fatalf("want EOF, got %v", err)
	}
}

// openFDs counts this process's open file descriptors.
func openFDs(t testing.TB) int {
	if runtime.GOOS != "linux" {
		return 0
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func goroutineLeakCheck(t *testing.T) func() {
	before := runtime.NumGoroutine()
	fds := openFDs(t)
	return func() {
		t.Helper()
		waitFor(t, "goroutines and fds to return to their count", func() bool {
			return runtime.NumGoroutine() <= before && openFDs(t) <= fds
		})
	}
}
