package echoproto

import (
	"bytes"
	"errors"
	"testing"

	"github.com/zerowire/zerowire/wire"
)

func clientHello(caps uint32, maxPacket uint32) []byte {
	h := wire.Hello{MinVersion: 1, MaxVersion: 1, MaxPacketSize: maxPacket, Capabilities: caps}
	return wire.AppendPacket(nil, wire.FrameHello, 0, 0, wire.AppendHello(nil, h))
}

// run feeds stream to a new session the way a server does, handing it one
// more byte at a time (nats-server's split test) so that every cut point
// of every packet is met, and returns what the session sent and its last
// error.
func run(t *testing.T, stream []byte) (sent []byte, s *Session, err error) {
	t.Helper()
	s = &Session{}
	var buf []byte
	need := wire.HeaderSize
	for i := 0; i < len(stream); {
		buf = append(buf, stream[i])
		i++
		if len(buf) < need {
			continue
		}
		n, answer, body, err := s.Handle(buf, sent)
		if err == wire.ErrIncomplete {
			if n <= len(buf) {
				t.Fatalf("ErrIncomplete asks for %d bytes with %d held", n, len(buf))
			}
			need = n
			continue
		}
		sent = append(answer, body...)
		if err != nil {
			return sent, s, err
		}
		buf = buf[n:]
		need = wire.HeaderSize
	}
	if len(buf) != 0 {
		t.Fatalf("%d bytes left unparsed", len(buf))
	}
	return sent, s, nil
}

// packets splits b into the packets the session sent.
func packets(t *testing.T, b []byte) []wire.Packet {
	t.Helper()
	var ps []wire.Packet
	for len(b) > 0 {
		p, n, err := wire.Parse(b, wire.Limits{PayloadCRC: true})
		if err != nil {
			t.Fatalf("the session sent a bad packet: %v", err)
		}
		ps = append(ps, p)
		b = b[n:]
	}
	return ps
}

func TestEcho(t *testing.T) {
	var in []byte
	in = append(in, clientHello(wire.CapPayloadCRC, wire.DefaultMaxPacketSize)...)
	in = wire.AppendPacket(in, wire.FrameData, 0, 1, []byte("d"))
	in = wire.AppendPacket(in, wire.FrameRequest, wire.FlagCopy, 2, []byte("req"))
	in = wire.AppendPacket(in, wire.FramePing, wire.FlagPayloadCRC, 3, []byte("ping"))
	in = wire.AppendPacket(in, wire.FrameRequest, wire.FlagPayloadCRC, 4, nil)
	in = wire.AppendPacket(in, wire.FrameGoAway, 0, 0, wire.AppendGoAwayPayload(nil, 0, wire.CodeNone, ""))
	sent, s, err := run(t, in)
	if err != ErrPeerClosing {
		t.Fatalf("err = %v, want ErrPeerClosing after GOAWAY", err)
	}
	if s.data != 1 {
		t.Errorf("DATA counted %d, want 1", s.data)
	}
	want := []struct {
		flags   wire.Flags
		seq     uint64
		payload string
	}{
		{wire.MakeFlags(wire.FrameHello, 0), 0, string(wire.AppendHello(nil, Hello))},
		{wire.MakeFlags(wire.FrameResponse, 0), 2, "req"},
		{wire.MakeFlags(wire.FramePong, wire.FlagPayloadCRC), 3, "ping"},
		{wire.MakeFlags(wire.FrameResponse, wire.FlagPayloadCRC), 4, ""},
	}
	got := packets(t, sent)
	if len(got) != len(want) {
		t.Fatalf("sent %d packets, want %d", len(got), len(want))
	}
	for i, w := range want {
		if p := got[i]; p.Flags != w.flags || p.Seq != w.seq || string(p.Payload) != w.payload {
			t.Errorf("packet %d: flags %#x seq %d payload %q, want %#x %d %q",
				i, uint16(p.Flags), p.Seq, p.Payload, uint16(w.flags), w.seq, w.payload)
		}
	}
}

func TestRejects(t *testing.T) {
	hello := clientHello(wire.CapPayloadCRC, wire.DefaultMaxPacketSize)
	req := func(seq uint64) []byte { return wire.AppendPacket(nil, wire.FrameRequest, 0, seq, []byte("x")) }
	badHeader := req(1)
	badHeader[0] = 'X'
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	tests := []struct {
		name string
		in   []byte
		code wire.Code
	}{
		{"first packet not HELLO", req(1), wire.CodeProtocolError},
		{"bad header first", badHeader, wire.CodeProtocolError},
		{"no common version", wire.AppendPacket(nil, wire.FrameHello, 0, 0,
			wire.AppendHello(nil, wire.Hello{MinVersion: 2, MaxVersion: 2, MaxPacketSize: 4096})), wire.CodeUnsupportedVersion},
		{"bad header", cat(hello, badHeader), wire.CodeProtocolError},
		{"seq starts at 2", cat(hello, req(2)), wire.CodeProtocolError},
		{"seq repeats", cat(hello, req(1), req(1)), wire.CodeProtocolError},
		{"second HELLO", cat(hello, hello), wire.CodeProtocolError},
		{"unsolicited RESPONSE", cat(hello, wire.AppendPacket(nil, wire.FrameResponse, 0, 1, nil)), wire.CodeProtocolError},
		{"unsolicited PONG", cat(hello, wire.AppendPacket(nil, wire.FramePong, 0, 1, nil)), wire.CodeProtocolError},
		{"ERROR with a seq", cat(hello, wire.AppendPacket(nil, wire.FrameError, 0, 1,
			wire.AppendErrorPayload(nil, wire.CodeApplication, ""))), wire.CodeProtocolError},
		{"CRC not negotiated", cat(clientHello(0, wire.DefaultMaxPacketSize),
			wire.AppendPacket(nil, wire.FrameRequest, wire.FlagPayloadCRC, 1, nil)), wire.CodeProtocolError},
		{"too large", cat(hello, wire.AppendPacketHeader(nil, wire.FrameData, 0, 1, wire.DefaultMaxPacketSize)), wire.CodeFrameTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sent, _, err := run(t, tt.in)
			var werr *wire.Error
			if !errors.As(err, &werr) || werr.Code != tt.code {
				t.Fatalf("err = %v, want a *wire.Error with code %v", err, tt.code)
			}
			ps := packets(t, sent)
			last := ps[len(ps)-1]
			code, _, _ := wire.ParseErrorPayload(last.Payload)
			if last.Type() != wire.FrameError || last.Seq != 0 || code != tt.code {
				t.Fatalf("last packet sent: %v seq %d code %v, want ERROR seq 0 %v", last.Type(), last.Seq, code, tt.code)
			}
			// The server sends its HELLO even when it then rejects the
			// client's first packet, and never twice.
			for i, p := range ps {
				if (p.Type() == wire.FrameHello) != (i == 0) {
					t.Fatalf("packet %d sent is %v; want one HELLO, first", i, p.Type())
				}
			}
		})
	}
}

// TestResponseTooLarge: a RESPONSE the client could not accept is refused
// with an ERROR carrying the REQUEST's seq, and the session goes on.
func TestResponseTooLarge(t *testing.T) {
	var in []byte
	in = append(in, clientHello(0, wire.MinMaxPacketSize)...)
	in = wire.AppendPacket(in, wire.FrameRequest, 0, 1, make([]byte, wire.MinMaxPacketSize))
	in = wire.AppendPacket(in, wire.FrameRequest, 0, 2, []byte("fits"))
	sent, _, err := run(t, in)
	if err != nil {
		t.Fatal(err)
	}
	ps := packets(t, sent)
	if len(ps) != 3 {
		t.Fatalf("sent %d packets, want HELLO, ERROR, RESPONSE", len(ps))
	}
	code, _, _ := wire.ParseErrorPayload(ps[1].Payload)
	if ps[1].Type() != wire.FrameError || ps[1].Seq != 1 || code != wire.CodeFrameTooLarge {
		t.Errorf("got %v seq %d code %v, want ERROR seq 1 FRAME_TOO_LARGE", ps[1].Type(), ps[1].Seq, code)
	}
	if ps[2].Type() != wire.FrameResponse || ps[2].Seq != 2 {
		t.Errorf("got %v seq %d, want RESPONSE seq 2", ps[2].Type(), ps[2].Seq)
	}
}

// TestHandleAllocs: answering a REQUEST, a PING or a DATA costs no
// allocation, so that the peers' numbers measure their I/O and not this
// package.
func TestHandleAllocs(t *testing.T) {
	var s Session
	out := make([]byte, 0, 256)
	if _, _, _, err := s.Handle(clientHello(wire.CapPayloadCRC, wire.DefaultMaxPacketSize), out); err != nil {
		t.Fatal(err)
	}
	req := wire.AppendPacket(nil, wire.FrameRequest, wire.FlagPayloadCRC, 1, make([]byte, 512))
	seq := uint64(0)
	allocs := testing.AllocsPerRun(1000, func() {
		seq++
		wire.PutHeader(req, wire.Header{Version: 1, Flags: wire.MakeFlags(wire.FrameRequest, wire.FlagPayloadCRC), Size: uint32(len(req)), Seq: seq})
		if _, _, _, err := s.Handle(req, out[:0]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Handle allocates %v times per REQUEST", allocs)
	}
}
