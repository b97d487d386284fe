package zerowire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/zerowire/zerowire/pool"
	"github.com/zerowire/zerowire/wire"
)

// Helpers of the end-to-end server tests (server_*_test.go).

// eachBackend runs f in a subtest per backend this platform has.
func eachBackend(t *testing.T, f func(t *testing.T, b Backend)) {
	for _, b := range backends {
		if b == BackendEpoll && !epollAvailable {
			continue
		}
		t.Run(b.String(), func(t *testing.T) { f(t, b) })
	}
}

// funcHandler is a Handler made of functions; a nil OnPacket echoes.
type funcHandler struct {
	open   func(c *Conn)
	packet func(c *Conn, p *Packet)
	close  func(c *Conn, err error)

	mu     sync.Mutex
	ids    []ConnID
	closed []error
}

func (h *funcHandler) OnOpen(c *Conn) {
	h.mu.Lock()
	h.ids = append(h.ids, c.ID())
	h.mu.Unlock()
	if h.open != nil {
		h.open(c)
	}
}

func (h *funcHandler) OnPacket(c *Conn, p *Packet) {
	if h.packet != nil {
		h.packet(c, p)
		return
	}
	if p.Type() == wire.FrameRequest {
		c.Reply(p, p.Payload)
	}
}

func (h *funcHandler) OnClose(c *Conn, err error) {
	h.mu.Lock()
	h.closed = append(h.closed, err)
	h.mu.Unlock()
	if h.close != nil {
		h.close(c, err)
	}
}

func (h *funcHandler) openedIDs() []ConnID {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]ConnID(nil), h.ids...)
}

func (h *funcHandler) closedErrs() []error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]error(nil), h.closed...)
}

// startOn starts a server with handler h on backend b, listening on
// 127.0.0.1:0, closed when the test ends.
func startOn(t testing.TB, b Backend, h Handler, o Options) *Server {
	t.Helper()
	o.Backend = b
	return startServer(t, h, o)
}

// rawPacket builds a packet with every header field as given and a valid
// header checksum, for inputs the encoders refuse to make.
func rawPacket(magic string, version uint16, flags wire.Flags, size uint32, seq uint64, payload []byte) []byte {
	b := make([]byte, wire.HeaderSize, wire.HeaderSize+len(payload))
	copy(b[0:4], magic)
	binary.LittleEndian.PutUint16(b[4:6], version)
	binary.LittleEndian.PutUint16(b[6:8], uint16(flags))
	binary.LittleEndian.PutUint32(b[8:12], size)
	binary.LittleEndian.PutUint64(b[12:20], seq)
	binary.LittleEndian.PutUint32(b[20:24], wire.Checksum(b[:20]))
	return append(b, payload...)
}

// helloWith is a client HELLO packet with the given fields.
func helloWith(h wire.Hello) []byte {
	return wire.AppendPacket(nil, wire.FrameHello, 0, 0, wire.AppendHello(nil, h))
}

// dialRawNet is dialRaw over any network, with a reader sized for the test.
func dialRawNet(t testing.TB, network, addr string, rbuf int) *rawConn {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, r: bufio.NewReaderSize(c, rbuf)}
}

// echo sends one REQUEST and checks its RESPONSE.
func (r *rawConn) echo(payload []byte) {
	r.t.Helper()
	r.write(r.next(wire.FrameRequest, 0, payload))
	r.expectResponse(r.seq, payload)
}

func (r *rawConn) expectResponse(seq uint64, payload []byte) {
	r.t.Helper()
	p := r.read()
	if p.Type() != wire.FrameResponse || p.Seq != seq || !bytes.Equal(p.Payload, payload) {
		r.t.Fatalf("got %v seq %d (%d bytes), want RESPONSE seq %d (%d bytes)", p.Type(), p.Seq, len(p.Payload), seq, len(payload))
	}
}

// expectErrorSeq reads the next packet and checks that it is ERROR code
// answering seq; the connection stays open.
func (r *rawConn) expectErrorSeq(seq uint64, code wire.Code) {
	r.t.Helper()
	p := r.read()
	if p.Type() != wire.FrameError {
		r.t.Fatalf("got %v seq %d, want ERROR seq %d", p.Type(), p.Seq, seq)
	}
	got, msg, err := wire.ParseErrorPayload(p.Payload)
	if err != nil || got != code || p.Seq != seq {
		r.t.Fatalf("ERROR seq %d code %v (%q), want seq %d code %v", p.Seq, got, msg, seq, code)
	}
}

// expectHello checks that the next packet is the server's HELLO.
func (r *rawConn) expectHello() wire.Hello {
	r.t.Helper()
	p := r.read()
	if p.Type() != wire.FrameHello || p.Seq != 0 {
		r.t.Fatalf("first packet from server is %v seq %d, want HELLO", p.Type(), p.Seq)
	}
	h, err := wire.ParseHello(p.Payload)
	if err != nil {
		r.t.Fatal(err)
	}
	return h
}

// poolInUse is the number of pooled buffers holding a reference.
func poolInUse(st pool.Stats) int {
	n := 0
	for _, c := range st.Classes {
		n += c.InUse
	}
	return n
}

// waitLong polls cond for up to d.
func waitLong(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// errorsSent is the server's count of ERRORs sent with code.
func errorsSent(s *Server, code wire.Code) uint64 { return s.Stats().ErrorsSent[code] }

// quietLogger drops every record: for tests that provoke warnings by the
// thousand.
func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// waitPoolBack waits until the pool has no more buffers in use than base
// (a snapshot taken when the server was idle) and reports any class that
// keeps more.
func waitPoolBack(t testing.TB, st func() pool.Stats, base pool.Stats) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		now := st()
		over := ""
		for i, c := range now.Classes {
			if i < len(base.Classes) && c.InUse > base.Classes[i].InUse {
				over += fmt.Sprintf(" %d-byte class: %d in use, %d at the start;", c.Size, c.InUse, base.Classes[i].InUse)
			}
		}
		if over == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pooled buffers not returned:%s", over)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// settledPool returns the server's pool usage with every loop's Cache
// flushed first (on the loop): a Cache's parked buffers count as in use
// until Flush, and they are not held by any connection.
func settledPool(s *Server) pool.Stats {
	for _, l := range s.loops {
		if l.cache != nil {
			l.runSync(func() { l.cache.Flush() })
		}
	}
	return s.Stats().Pool
}
