package zerowire

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/zerowire/zerowire/wire"
)

// rejectCase is a malformed input of the contract and the ERROR code the
// server must close the connection with.
type rejectCase struct {
	name string
	// first: the input is the client's first packet (no handshake before
	// it); otherwise the client completes a HELLO exchange with caps first.
	first bool
	caps  uint32
	input func(r *rawConn) []byte
	code  wire.Code
}

func req(seq uint64, flags wire.Flags, payload string) []byte {
	return wire.AppendPacket(nil, wire.FrameRequest, flags, seq, []byte(payload))
}

var rejectCases = []rejectCase{
	// The packet rules, in the contract's order.
	{name: "bad magic", input: func(r *rawConn) []byte {
		return rawPacket("ZWIX", 1, wire.MakeFlags(wire.FrameRequest, 0), 29, 1, []byte("hello"))
	}, code: wire.CodeProtocolError},
	{name: "bad version", input: func(r *rawConn) []byte {
		return rawPacket(wire.Magic, 2, wire.MakeFlags(wire.FrameRequest, 0), 29, 1, []byte("hello"))
	}, code: wire.CodeProtocolError},
	{name: "version 0", input: func(r *rawConn) []byte {
		return rawPacket(wire.Magic, 0, wire.MakeFlags(wire.FrameRequest, 0), 29, 1, []byte("hello"))
	}, code: wire.CodeProtocolError},
	{name: "bad header checksum", input: func(r *rawConn) []byte {
		b := req(1, 0, "hello")
		b[21] ^= 0x40
		return b
	}, code: wire.CodeProtocolError},
	{name: "size below 24", input: func(r *rawConn) []byte {
		return rawPacket(wire.Magic, 1, wire.MakeFlags(wire.FrameRequest, 0), 20, 1, nil)
	}, code: wire.CodeProtocolError},
	{name: "size 0", input: func(r *rawConn) []byte {
		return rawPacket(wire.Magic, 1, wire.MakeFlags(wire.FrameData, 0), 0, 1, nil)
	}, code: wire.CodeProtocolError},
	// Only the header is sent: the server must reject it without waiting
	// for the 8168 payload bytes.
	{name: "size above max, header only", input: func(r *rawConn) []byte {
		return rawPacket(wire.Magic, 1, wire.MakeFlags(wire.FrameRequest, 0), 8192, 1, nil)
	}, code: wire.CodeFrameTooLarge},
	{name: "size 4097, header only", input: func(r *rawConn) []byte {
		return rawPacket(wire.Magic, 1, wire.MakeFlags(wire.FrameData, 0), 4097, 1, nil)
	}, code: wire.CodeFrameTooLarge},
	{name: "size above max and unknown type", input: func(r *rawConn) []byte {
		return rawPacket(wire.Magic, 1, 9, 1<<20, 1, nil)
	}, code: wire.CodeFrameTooLarge},
	{name: "unknown frame type 8", input: func(r *rawConn) []byte {
		return rawPacket(wire.Magic, 1, 8, 29, 1, []byte("hello"))
	}, code: wire.CodeProtocolError},
	{name: "unknown frame type 15", input: func(r *rawConn) []byte {
		return rawPacket(wire.Magic, 1, 15, 24, 1, nil)
	}, code: wire.CodeProtocolError},
	{name: "reserved flag bit 6", input: func(r *rawConn) []byte {
		return req(1, 1<<6, "hello")
	}, code: wire.CodeProtocolError},
	{name: "reserved flag bit 15", input: func(r *rawConn) []byte {
		return req(1, 1<<15, "hello")
	}, code: wire.CodeProtocolError},
	{name: "PAYLOAD_CRC not negotiated", caps: 0, input: func(r *rawConn) []byte {
		return req(1, wire.FlagPayloadCRC, "hello")
	}, code: wire.CodeProtocolError},
	{name: "PAYLOAD_CRC bad trailer", caps: wire.CapPayloadCRC, input: func(r *rawConn) []byte {
		b := req(1, wire.FlagPayloadCRC, "hello")
		b[len(b)-1] ^= 1
		return b
	}, code: wire.CodeProtocolError},
	{name: "PAYLOAD_CRC payload corrupted", caps: wire.CapPayloadCRC, input: func(r *rawConn) []byte {
		b := req(1, wire.FlagPayloadCRC, "hello")
		b[wire.HeaderSize] ^= 1
		return b
	}, code: wire.CodeProtocolError},
	{name: "PAYLOAD_CRC size below 28", caps: wire.CapPayloadCRC, input: func(r *rawConn) []byte {
		return rawPacket(wire.Magic, 1, wire.MakeFlags(wire.FrameRequest, wire.FlagPayloadCRC), 26, 1, []byte("ab"))
	}, code: wire.CodeProtocolError},
	// The frame-type rules.
	{name: "PING over 64 bytes", input: func(r *rawConn) []byte {
		return wire.AppendPacket(nil, wire.FramePing, 0, 1, make([]byte, 65))
	}, code: wire.CodeProtocolError},
	{name: "PING over 64 bytes with trailer", caps: wire.CapPayloadCRC, input: func(r *rawConn) []byte {
		return wire.AppendPacket(nil, wire.FramePing, wire.FlagPayloadCRC, 1, make([]byte, 61))
	}, code: wire.CodeProtocolError},
	{name: "ERROR payload below 4 bytes", input: func(r *rawConn) []byte {
		return wire.AppendPacket(nil, wire.FrameError, 0, 0, []byte{1, 0})
	}, code: wire.CodeProtocolError},
	{name: "ERROR answering nothing", input: func(r *rawConn) []byte {
		return wire.AppendPacket(nil, wire.FrameError, 0, 3, wire.AppendErrorPayload(nil, wire.CodeApplication, "no"))
	}, code: wire.CodeProtocolError},
	{name: "ERROR message not UTF-8", input: func(r *rawConn) []byte {
		return wire.AppendPacket(nil, wire.FrameError, 0, 0, append(wire.AppendErrorPayload(nil, wire.CodeApplication, "bad "), 0xff, 0xfe))
	}, code: wire.CodeProtocolError},
	{name: "GOAWAY seq not 0", input: func(r *rawConn) []byte {
		return wire.AppendPacket(nil, wire.FrameGoAway, 0, 7, wire.AppendGoAwayPayload(nil, 0, wire.CodeNone, "bye"))
	}, code: wire.CodeProtocolError},
	{name: "GOAWAY payload below 12 bytes", input: func(r *rawConn) []byte {
		return wire.AppendPacket(nil, wire.FrameGoAway, 0, 0, make([]byte, 8))
	}, code: wire.CodeProtocolError},
	{name: "GOAWAY message not UTF-8", input: func(r *rawConn) []byte {
		return wire.AppendPacket(nil, wire.FrameGoAway, 0, 0, append(wire.AppendGoAwayPayload(nil, 0, wire.CodeNone, ""), 0xc3))
	}, code: wire.CodeProtocolError},
	{name: "second HELLO", input: func(r *rawConn) []byte { return helloPacket(0) }, code: wire.CodeProtocolError},
	{name: "REQUEST seq gap", input: func(r *rawConn) []byte {
		return append(req(1, 0, "one"), req(3, 0, "three")...)
	}, code: wire.CodeProtocolError},
	{name: "REQUEST seq 0", input: func(r *rawConn) []byte { return req(0, 0, "zero") }, code: wire.CodeProtocolError},
	{name: "REQUEST seq repeated", input: func(r *rawConn) []byte {
		return append(req(1, 0, "one"), req(1, 0, "one again")...)
	}, code: wire.CodeProtocolError},
	{name: "DATA seq gap", input: func(r *rawConn) []byte {
		return wire.AppendPacket(nil, wire.FrameData, 0, 2, []byte("two"))
	}, code: wire.CodeProtocolError},
	{name: "PING seq gap", input: func(r *rawConn) []byte {
		return append(wire.AppendPacket(nil, wire.FramePing, 0, 1, []byte("p1")),
			wire.AppendPacket(nil, wire.FramePing, 0, 5, []byte("p5"))...)
	}, code: wire.CodeProtocolError},
	{name: "RESPONSE for nothing outstanding", input: func(r *rawConn) []byte {
		return wire.AppendPacket(nil, wire.FrameResponse, 0, 1, []byte("unasked"))
	}, code: wire.CodeProtocolError},
	{name: "RESPONSE with COPY", input: func(r *rawConn) []byte {
		return wire.AppendPacket(nil, wire.FrameResponse, wire.FlagCopy, 1, []byte("copy"))
	}, code: wire.CodeProtocolError},
	{name: "PONG for nothing outstanding", input: func(r *rawConn) []byte {
		return wire.AppendPacket(nil, wire.FramePong, 0, 1, []byte("pong"))
	}, code: wire.CodeProtocolError},

	// The handshake.
	{name: "first packet not HELLO", first: true, input: func(r *rawConn) []byte {
		return req(1, 0, "hello")
	}, code: wire.CodeProtocolError},
	{name: "first packet DATA", first: true, input: func(r *rawConn) []byte {
		return wire.AppendPacket(nil, wire.FrameData, 0, 1, []byte("data"))
	}, code: wire.CodeProtocolError},
	{name: "first packet bad magic", first: true, input: func(r *rawConn) []byte {
		return rawPacket("HTTP", 1, wire.MakeFlags(wire.FrameHello, 0), 40, 0, make([]byte, 16))
	}, code: wire.CodeProtocolError},
	{name: "HELLO header version 2", first: true, input: func(r *rawConn) []byte {
		h := wire.AppendHello(nil, wire.Hello{MinVersion: 1, MaxVersion: 2, MaxPacketSize: 4096})
		return rawPacket(wire.Magic, 2, wire.MakeFlags(wire.FrameHello, 0), uint32(24+len(h)), 0, h)
	}, code: wire.CodeProtocolError},
	{name: "HELLO max_packet_size below 4096", first: true, input: func(r *rawConn) []byte {
		return helloWith(wire.Hello{MinVersion: 1, MaxVersion: 1, MaxPacketSize: 4095})
	}, code: wire.CodeProtocolError},
	{name: "HELLO min_version above max_version", first: true, input: func(r *rawConn) []byte {
		return helloWith(wire.Hello{MinVersion: 2, MaxVersion: 1, MaxPacketSize: 4096})
	}, code: wire.CodeProtocolError},
	{name: "HELLO min_version above max_version, no common version", first: true, input: func(r *rawConn) []byte {
		return helloWith(wire.Hello{MinVersion: 3, MaxVersion: 2, MaxPacketSize: 4096})
	}, code: wire.CodeProtocolError},
	{name: "HELLO no common version", first: true, input: func(r *rawConn) []byte {
		return helloWith(wire.Hello{MinVersion: 2, MaxVersion: 2, MaxPacketSize: 4096})
	}, code: wire.CodeUnsupportedVersion},
	{name: "HELLO versions 0..0", first: true, input: func(r *rawConn) []byte {
		return helloWith(wire.Hello{MinVersion: 0, MaxVersion: 0, MaxPacketSize: 4096})
	}, code: wire.CodeUnsupportedVersion},
	{name: "HELLO payload below 16 bytes", first: true, input: func(r *rawConn) []byte {
		return wire.AppendPacket(nil, wire.FrameHello, 0, 0, make([]byte, 12))
	}, code: wire.CodeProtocolError},
	{name: "HELLO extensions do not fill the payload", first: true, input: func(r *rawConn) []byte {
		h := wire.AppendHello(nil, wire.Hello{MinVersion: 1, MaxVersion: 1, MaxPacketSize: 4096})
		h = append(h, 1, 0, 5, 0, 'x') // announces 5 value bytes, has 1
		return wire.AppendPacket(nil, wire.FrameHello, 0, 0, h)
	}, code: wire.CodeProtocolError},
	{name: "HELLO seq not 0", first: true, input: func(r *rawConn) []byte {
		h := wire.AppendHello(nil, wire.Hello{MinVersion: 1, MaxVersion: 1, MaxPacketSize: 4096})
		return wire.AppendPacket(nil, wire.FrameHello, 0, 1, h)
	}, code: wire.CodeProtocolError},
	{name: "HELLO with PAYLOAD_CRC", first: true, input: func(r *rawConn) []byte {
		h := wire.AppendHello(nil, wire.Hello{MinVersion: 1, MaxVersion: 1, MaxPacketSize: 4096, Capabilities: wire.CapPayloadCRC})
		return wire.AppendPacket(nil, wire.FrameHello, wire.FlagPayloadCRC, 0, h)
	}, code: wire.CodeProtocolError},
	{name: "HELLO above max", first: true, input: func(r *rawConn) []byte {
		h := wire.AppendHello(nil, wire.Hello{MinVersion: 1, MaxVersion: 1, MaxPacketSize: 4096})
		h = wire.AppendExtension(h, 99, make([]byte, 5000))
		return wire.AppendPacket(nil, wire.FrameHello, 0, 0, h)
	}, code: wire.CodeFrameTooLarge},
}

// TestRejectMalformed sends every malformed input of the contract on a
// connection of its own and checks that the server answers ERROR with the
// rule's code (after its HELLO when the input came first) and closes that
// connection only: a neighbour keeps echoing throughout.
func TestRejectMalformed(t *testing.T) {
	eachBackend(t, func(t *testing.T, b Backend) {
		h := &funcHandler{}
		s := startOn(t, b, h, Options{MaxPacketSize: 4096})
		addr := s.Addr().String()
		before := s.Stats().ErrorsSent
		want := map[wire.Code]uint64{}

		nb := dialRaw(t, addr)
		nb.handshake(wire.CapPayloadCRC)
		nb.echo([]byte("neighbour"))

		for _, tc := range rejectCases {
			// The neighbour's request is in flight while the bad
			// connection is rejected.
			payload := []byte("neighbour " + tc.name)
			nb.write(nb.next(wire.FrameRequest, wire.FlagPayloadCRC, payload))

			r := dialRaw(t, addr)
			if !tc.first {
				sh := r.handshake(tc.caps)
				if sh.MaxPacketSize != 4096 {
					t.Fatalf("%s: server HELLO max_packet_size %d, want 4096", tc.name, sh.MaxPacketSize)
				}
			}
			r.write(tc.input(r))
			if tc.first {
				r.expectHello() // the server's HELLO comes first, even for a rejected client
			}
			for {
				p := r.read()
				if p.Type() == wire.FrameResponse || p.Type() == wire.FramePong {
					continue // answers to the valid packets before the bad one
				}
				if p.Type() != wire.FrameError {
					t.Fatalf("%s: got %v seq %d, want ERROR", tc.name, p.Type(), p.Seq)
				}
				code, msg, err := wire.ParseErrorPayload(p.Payload)
				if err != nil || code != tc.code || p.Seq != 0 {
					t.Fatalf("%s: got ERROR seq %d code %v (%q), want seq 0 code %v", tc.name, p.Seq, code, msg, tc.code)
				}
				break
			}
			r.expectEOF()
			r.c.Close()
			want[tc.code]++

			p := nb.read()
			if p.Type() != wire.FrameResponse || p.Seq != nb.seq || string(p.Payload) != string(payload) || p.Flags&wire.FlagPayloadCRC == 0 {
				t.Fatalf("%s: neighbour got %v seq %d %q, want its RESPONSE", tc.name, p.Type(), p.Seq, p.Payload)
			}
		}
		nb.echo([]byte("still here"))

		got := s.Stats().ErrorsSent
		for code, n := range want {
			if got[code]-before[code] != n {
				t.Errorf("ErrorsSent[%v] = %d, want %d", code, got[code]-before[code], n)
			}
		}
		waitFor(t, "rejected connections to close", func() bool { return s.Stats().Conns == 1 })
		if n := len(h.openedIDs()); n != 1+countHandshaken() {
			t.Errorf("OnOpen called %d times, want %d", n, 1+countHandshaken())
		}
	})
}

func countHandshaken() int {
	n := 0
	for _, tc := range rejectCases {
		if !tc.first {
			n++
		}
	}
	return n
}

// TestHelloAccepted checks HELLOs the contract accepts: a wider version
// range, unknown extensions, unknown capability bits, and a client that
// pipelines packets right behind its HELLO.
func TestHelloAccepted(t *testing.T) {
	hellos := map[string][]byte{
		"versions 1..5":      helloWith(wire.Hello{MinVersion: 1, MaxVersion: 5, MaxPacketSize: 4096}),
		"versions 0..1":      helloWith(wire.Hello{MinVersion: 0, MaxVersion: 1, MaxPacketSize: 4096}),
		"unknown extensions": helloWith(wire.Hello{MinVersion: 1, MaxVersion: 1, MaxPacketSize: 1 << 20, Extensions: wire.AppendExtension(wire.AppendExtension(nil, 7, []byte("x")), 0xffff, nil)}),
		"unknown caps":       helloWith(wire.Hello{MinVersion: 1, MaxVersion: 1, MaxPacketSize: 4096, Capabilities: 0xfffffffe}),
	}
	eachBackend(t, func(t *testing.T, b Backend) {
		s := startOn(t, b, &funcHandler{}, Options{})
		for name, hello := range hellos {
			r := dialRaw(t, s.Addr().String())
			r.write(append(hello, r.next(wire.FrameRequest, 0, []byte(name))...))
			r.expectHello()
			r.expectResponse(1, []byte(name))
			// Capability bits other than PAYLOAD_CRC are ignored, so
			// PAYLOAD_CRC is not negotiated with "unknown caps".
			r.write(r.next(wire.FramePing, 0, []byte(fmt.Sprint("ping ", name))))
			if p := r.read(); p.Type() != wire.FramePong || p.Seq != 2 {
				t.Fatalf("%s: got %v seq %d, want PONG seq 2", name, p.Type(), p.Seq)
			}
		}
	})
}

// TestClientErrorSeqZero: an ERROR with seq 0 from the client drops the
// connection; the server answers nothing and closes.
func TestClientErrorSeqZero(t *testing.T) {
	eachBackend(t, func(t *testing.T, b Backend) {
		h := &funcHandler{}
		s := startOn(t, b, h, Options{})
		r := dialRaw(t, s.Addr().String())
		r.handshake(0)
		r.echo([]byte("x"))
		r.write(wire.AppendPacket(nil, wire.FrameError, 0, 0, wire.AppendErrorPayload(nil, wire.CodeApplication, "going")))
		if p, err := r.tryRead(5 * time.Second); err == nil {
			t.Fatalf("got %v seq %d after the client's ERROR, want EOF", p.Type(), p.Seq)
		}
		waitFor(t, "OnClose", func() bool { return len(h.closedErrs()) == 1 })
		var we *wire.Error
		if err := h.closedErrs()[0]; !errors.As(err, &we) || we.Code != wire.CodeApplication {
			t.Fatalf("OnClose err %v, want the client's ERROR APPLICATION", err)
		}
	})
}
