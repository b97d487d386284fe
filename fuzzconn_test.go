package zerowire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zerowire/zerowire/wire"
)

// FuzzServerConn drives a whole server connection, handshake included,
// with an arbitrary byte stream written in arbitrary pieces (split by the
// second argument), then half-closes and reads everything the server
// sends until it closes. Whatever came in, what goes out must be valid
// packets: HELLO first (when anything is sent), then only RESPONSE, PONG,
// ERROR and GOAWAY; an ERROR with seq 0 is the last packet and carries a
// defined code; and once the server has closed, it holds no connection, no
// partial packet and (on Linux) no pool buffer, and OnClose has followed
// every OnOpen. A panic on the loop ends the process: the fuzzer reports it
// as a crash.
//
// The server is started once per process and shared by every input. On
// Linux each input is one end of a socket pair adopted straight into the
// server's only loop (fuzzconn_linux_test.go): no TCP handshake, no accept,
// and the end of the connection is awaited through the loop rather than
// with sleeps. Elsewhere each input dials the server over TCP.
func FuzzServerConn(f *testing.F) {
	for _, seed := range fzSeeds() {
		f.Add(seed, uint64(0)) // whole
		f.Add(seed, uint64(1)) // a byte at a time
		f.Add(seed, uint64(2)) // in pieces
		f.Add(seed, uint64(3)) // cut anywhere
	}
	f.Fuzz(func(t *testing.T, stream []byte, split uint64) {
		s := fzServer(t)
		out := fzExchange(t, fzConnect(t, s), stream, split)
		if err := fzCheckOutput(out); err != nil {
			t.Fatalf("%v\ninput %x", err, stream)
		}
		fzSettle(t, s)
	})
}

// TestFuzzServerConnAnswers checks that the fuzz target's exchange gets
// answers at all, through the transport the target uses (fzConnect) and
// over TCP: a valid stream, whole, a byte at a time and in pieces, is
// answered with HELLO, a RESPONSE per REQUEST and a PONG per PING, its
// DATA reaches the handler, and the server then settles.
func TestFuzzServerConnAnswers(t *testing.T) {
	valid := fzSeeds()[2]
	s := fzServer(t)
	for name, connect := range map[string]func(*testing.T, *Server) fzPipe{"fzConnect": fzConnect, "tcp": fzDialTCP} {
		for _, split := range []uint64{0, 1, 2} {
			out := fzExchange(t, connect(t, s), valid, split)
			var got []wire.FrameType
			for len(out) > 0 {
				p, n, err := wire.Parse(out, wire.Limits{MaxPacketSize: 1 << 30})
				if err != nil {
					t.Fatal(err)
				}
				got, out = append(got, p.Type()), out[n:]
			}
			want := []wire.FrameType{wire.FrameHello, wire.FrameResponse, wire.FramePong, wire.FrameResponse, wire.FrameResponse}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s, split %d: got %v, want %v", name, split, got, want)
			}
			fzSettle(t, s)
		}
	}
	if h := s.handler.(*echoHandler); h.opened.Load() == 0 || h.data.Load() == 0 {
		t.Errorf("OnOpen ran %d times, DATA reached the handler %d times", h.opened.Load(), h.data.Load())
	}
}

// fzPipe is the test's end of a connection to the server.
type fzPipe interface {
	io.ReadWriteCloser
	CloseWrite() error
}

// fzDialTCP connects to the server's listener, with a 5 s deadline.
func fzDialTCP(t *testing.T, s *Server) fzPipe {
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c.(*net.TCPConn)
}

// fzExchange writes stream to c, half-closes, returns everything the
// server sent until it closed, and closes c. The stream goes in at most
// fzMaxWrites writes, cut as split says (fzCuts).
func fzExchange(t *testing.T, c fzPipe, stream []byte, split uint64) []byte {
	defer c.Close()
	// Each piece is a write of its own (TCP_NODELAY, Go's default, sends
	// it on its own); how many reach the server in one read is up to the
	// race between this writer and the loop.
	prev := 0
	for _, cut := range append(fzCuts(len(stream), split), len(stream)) {
		if _, err := c.Write(stream[prev:cut]); err != nil {
			break // the server closed first; what it sent is checked
		}
		prev = cut
	}
	c.CloseWrite()
	out, err := io.ReadAll(c)
	if err != nil && !fzReset(err) {
		t.Fatalf("reading what the server sent: %v (%d bytes so far)", err, len(out))
	}
	return out
}

// fzSettle waits until the server has finished with the connection that
// just ended: it is gone from the table (and from the refused ones) and
// its partial packet from the budget, OnClose has followed every OnOpen, and (fzIdle) what else the
// platform can check holds. The waiting is fzWait's.
func fzSettle(t *testing.T, s *Server) {
	h := s.handler.(*echoHandler)
	deadline := time.Now().Add(5 * time.Second)
	st := &s.stats
	for st.conns.Load() != 0 || st.refusing.Load() != 0 || st.partialBytes.Load() != 0 || h.opened.Load() != h.closed.Load() {
		if time.Now().After(deadline) {
			t.Fatalf("after the close: %d connections (%d refusing), %d partial bytes, OnOpen %d times and OnClose %d",
				st.conns.Load(), st.refusing.Load(), st.partialBytes.Load(), h.opened.Load(), h.closed.Load())
		}
		fzWait(s)
	}
	if err := fzIdle(s); err != nil {
		t.Fatal(err)
	}
}

// fzMaxWrites bounds the writes per input. Every write wakes the loop, so
// an input of a few KiB sent a byte at a time took a second, and the
// fuzzer spent most of its time on such inputs; cuts at chosen places
// reach the same states of the reader (a header, a payload or a trailer
// cut anywhere) at a bounded cost.
const fzMaxWrites = 64

// fzCuts returns the offsets, ascending, at which a stream of n bytes is
// cut: none (split%4 == 0); after each of the first fzMaxWrites-1 bytes
// (1); or at 1 to fzMaxWrites-1 places drawn from split (2, 3), in pieces
// of 1 to 64 bytes (2) or anywhere in the stream (3).
func fzCuts(n int, split uint64) []int {
	var cuts []int
	r := rand.New(rand.NewPCG(split, split>>32))
	switch split % 4 {
	case 1:
		for k := 1; k < n && len(cuts) < fzMaxWrites-1; k++ {
			cuts = append(cuts, k)
		}
	case 2:
		for k := 1 + r.IntN(64); k < n && len(cuts) < fzMaxWrites-1; k += 1 + r.IntN(64) {
			cuts = append(cuts, k)
		}
	case 3:
		if n < 2 {
			break
		}
		for range 1 + r.IntN(fzMaxWrites-1) {
			cuts = append(cuts, 1+r.IntN(n-1))
		}
		slices.Sort(cuts)
		cuts = slices.Compact(cuts)
	}
	return cuts
}

// fzReset reports a reset: the server closed with bytes of ours unread,
// which it may do after an ERROR.
func fzReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

// fzCheckOutput checks the bytes a server sent on one connection.
func fzCheckOutput(out []byte) error {
	lim := wire.Limits{MaxPacketSize: 1 << 30, PayloadCRC: true}
	for k := 0; len(out) > 0; k++ {
		p, n, err := wire.Parse(out, lim)
		if err != nil {
			return fmt.Errorf("packet %d from the server does not parse: %v (%d bytes left)", k, err, len(out))
		}
		out = out[n:]
		switch t := p.Type(); {
		case k == 0 && t != wire.FrameHello:
			return fmt.Errorf("the server's first packet is %v", t)
		case k == 0:
			if p.Seq != 0 {
				return fmt.Errorf("HELLO with seq %d", p.Seq)
			}
			if _, err := wire.ParseHello(p.Payload); err != nil {
				return fmt.Errorf("the server's HELLO: %v", err)
			}
		case t == wire.FrameResponse || t == wire.FramePong:
			if p.Seq == 0 {
				return fmt.Errorf("packet %d: %v with seq 0", k, t)
			}
		case t == wire.FrameError:
			code, _, err := wire.ParseErrorPayload(p.Payload)
			if err != nil {
				return fmt.Errorf("packet %d: ERROR payload: %v", k, err)
			}
			if code == wire.CodeNone || code > wire.CodeOverloaded {
				return fmt.Errorf("packet %d: ERROR with code %v", k, code)
			}
			if p.Seq == 0 && len(out) > 0 {
				return fmt.Errorf("packet %d: ERROR seq 0 is followed by %d more bytes", k, len(out))
			}
		case t == wire.FrameGoAway:
			if _, err := wire.ParseGoAway(p.Payload); err != nil || p.Seq != 0 {
				return fmt.Errorf("packet %d: GOAWAY seq %d: %v", k, p.Seq, err)
			}
		default:
			return fmt.Errorf("packet %d: the server sent %v", k, t)
		}
	}
	return nil
}

// fzServer is the server every input runs against, started on first use:
// an echo server with one loop, on the epoll backend where there is one,
// with a handshake deadline short enough that an input without a HELLO
// costs little. It listens on loopback too, for the TCP path.
var fzShared struct {
	once sync.Once
	s    *Server
	err  error
}

func fzServer(t *testing.T) *Server {
	fzShared.once.Do(func() {
		b := BackendEpoll
		if !epollAvailable {
			b = BackendNet
		}
		s, err := NewServer(&echoHandler{}, Options{Backend: b, Loops: 1, HandshakeTimeout: time.Second, PartialTimeout: time.Second,
			Logger: slog.New(slog.DiscardHandler)})
		if err == nil {
			err = s.Listen("127.0.0.1:0")
		}
		fzShared.s, fzShared.err = s, err
	})
	if fzShared.err != nil {
		t.Fatal(fzShared.err)
	}
	return fzShared.s
}

// fzSeeds are valid streams and corruptions of them.
func fzSeeds() [][]byte {
	hello := func(h wire.Hello) []byte {
		return wire.AppendPacket(nil, wire.FrameHello, 0, 0, wire.AppendHello(nil, h))
	}
	std := wire.Hello{MinVersion: 1, MaxVersion: 1, MaxPacketSize: wire.DefaultMaxPacketSize}
	crc := std
	crc.Capabilities = wire.CapPayloadCRC
	small := std
	small.MaxPacketSize = 4096
	pkt := func(t wire.FrameType, flags wire.Flags, seq uint64, payload string) []byte {
		return wire.AppendPacket(nil, t, flags, seq, []byte(payload))
	}
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	valid := cat(hello(std), pkt(wire.FrameRequest, 0, 1, "hello"), pkt(wire.FramePing, 0, 2, "ping"),
		pkt(wire.FrameData, 0, 3, "data"), pkt(wire.FrameRequest, wire.FlagCopy, 4, "copy"), pkt(wire.FrameRequest, 0, 5, ""))
	withCRC := cat(hello(crc), pkt(wire.FrameRequest, wire.FlagPayloadCRC, 1, "checked"), pkt(wire.FramePing, wire.FlagPayloadCRC, 2, "p"))
	badChecksum := append([]byte(nil), valid...)
	badChecksum[len(hello(std))+20] ^= 0xff
	badMagic := append([]byte(nil), valid...)
	badMagic[0] = 'X'
	withExt := std
	withExt.Extensions = wire.AppendExtension(nil, 0x7777, []byte("unknown extension"))
	noVersion := std
	noVersion.MinVersion, noVersion.MaxVersion = 2, 3
	header := func(flags wire.Flags, size uint32, seq uint64) []byte {
		b := make([]byte, wire.HeaderSize)
		copy(b, wire.Magic)
		binary.LittleEndian.PutUint16(b[4:], 1)
		binary.LittleEndian.PutUint16(b[6:], uint16(flags))
		binary.LittleEndian.PutUint32(b[8:], size)
		binary.LittleEndian.PutUint64(b[12:], seq)
		binary.LittleEndian.PutUint32(b[20:], wire.Checksum(b[:20]))
		return b
	}
	return [][]byte{
		{},
		hello(std),
		valid,
		withCRC,
		cat(hello(small), pkt(wire.FrameRequest, 0, 1, string(make([]byte, 5000)))), // the answer is too large for the client
		cat(hello(withExt), pkt(wire.FrameRequest, 0, 1, "ext")),
		hello(noVersion),
		valid[:len(valid)-3],      // a partial packet at the end
		valid[:len(hello(std))-1], // HELLO cut short
		badChecksum,
		badMagic,
		cat(pkt(wire.FrameRequest, 0, 1, "no hello first")),
		cat(hello(std), hello(std)),                                   // a second HELLO
		cat(hello(std), pkt(wire.FrameRequest, 0, 2, "seq gap")),      // seq must start at 1
		cat(hello(std), pkt(wire.FrameResponse, 0, 1, "unsolicited")), // a RESPONSE to nothing
		cat(hello(std), pkt(wire.FrameError, 0, 0, "\x01\x00\x00\x00bye")),
		cat(hello(std), pkt(wire.FrameGoAway, 0, 0, string(wire.AppendGoAwayPayload(nil, 0, wire.CodeNone, "bye")))),
		cat(hello(std), pkt(wire.FramePing, 0, 1, string(make([]byte, 100)))), // PING too large
		cat(hello(std), pkt(wire.FrameRequest, wire.FlagPayloadCRC, 1, "crc not negotiated")),
		cat(hello(std), header(0x40|wire.Flags(wire.FrameRequest), 24, 1)),                     // a reserved flag bit
		cat(hello(std), header(wire.Flags(9), 24, 1)),                                          // an unknown frame type
		cat(hello(std), header(wire.Flags(wire.FrameRequest), 2<<20, 1)),                       // larger than max_packet_size
		cat(hello(std), header(wire.Flags(wire.FrameRequest), 10, 1)),                          // size < 24
		cat(hello(std), header(wire.Flags(wire.FrameRequest), 100<<10, 1), make([]byte, 1000)), // never finished
		[]byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"),
	}
}
