package wire

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"unicode/utf8"
)

// sent is a packet as its sender described it to AppendPacket.
type sent struct {
	t       FrameType
	flags   Flags // without the type bits
	seq     uint64
	payload []byte
}

// randPacket returns a valid packet of type t that follows every rule Parse
// enforces, with PAYLOAD_CRC when crc (except on HELLO, which may not).
func randPacket(r *rand.Rand, t FrameType, crc bool) sent {
	s := sent{t: t, seq: r.Uint64()}
	if r.IntN(4) == 0 {
		s.seq = r.Uint64N(100)
	}
	if crc && t != FrameHello {
		s.flags |= FlagPayloadCRC
	}
	if r.IntN(2) == 0 && t != FrameResponse && t != FramePong {
		s.flags |= FlagCopy
	}
	switch t {
	case FramePing, FramePong:
		max := MaxPingPayload
		if crc {
			max -= TrailerSize
		}
		s.payload = randBytes(r, r.IntN(max+1))
	case FrameError:
		s.payload = AppendErrorPayload(nil, Code(r.Uint32N(12)), randText(r))
	case FrameGoAway:
		s.seq = 0
		s.payload = AppendGoAwayPayload(nil, r.Uint64(), Code(r.Uint32N(12)), randText(r))
	case FrameHello:
		s.seq = 0
		lo := uint16(r.IntN(3))
		h := Hello{
			MinVersion: lo, MaxVersion: lo + uint16(r.IntN(3)),
			MaxPacketSize: MinMaxPacketSize + r.Uint32N(1<<20),
			IdleTimeoutMS: r.Uint32(), Capabilities: r.Uint32(),
		}
		for range r.IntN(4) {
			h.Extensions = AppendExtension(h.Extensions, uint16(r.Uint32()), randBytes(r, r.IntN(20)))
		}
		s.payload = AppendHello(nil, h)
	default:
		n := r.IntN(300)
		if r.IntN(20) == 0 {
			n = r.IntN(20000)
		}
		s.payload = randBytes(r, n)
	}
	return s
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func randText(r *rand.Rand) string {
	var b []byte
	for range r.IntN(12) {
		b = utf8.AppendRune(b, rune(r.IntN(0x3000)))
	}
	if !utf8.Valid(b) { // surrogates are replaced by AppendRune, so this holds
		panic("invalid text")
	}
	return string(b)
}

// randStream returns n random valid packets of every type, with and without
// PAYLOAD_CRC, and their bytes back to back.
func randStream(r *rand.Rand, n int) ([]sent, []byte) {
	var pkts []sent
	var b []byte
	for range n {
		s := randPacket(r, FrameType(r.IntN(8)), r.IntN(2) == 0)
		pkts = append(pkts, s)
		b = AppendPacket(b, s.t, s.flags, s.seq, s.payload)
	}
	return pkts, b
}

func checkPacket(t *testing.T, i int, p Packet, s sent) {
	t.Helper()
	want := Header{Version: Version, Flags: MakeFlags(s.t, s.flags), Size: uint32(PacketSize(len(s.payload), s.flags)), Seq: s.seq}
	if p.Header != want || p.Type() != s.t || !bytes.Equal(p.Payload, s.payload) {
		t.Fatalf("packet %d: got %+v payload %x\nwant %+v payload %x", i, p.Header, p.Payload, want, s.payload)
	}
	if cap(p.Payload) != len(p.Payload) {
		t.Fatalf("packet %d: payload cap %d > len %d: an append would overwrite the stream", i, cap(p.Payload), len(p.Payload))
	}
}

var streamLimits = Limits{PayloadCRC: true}

func TestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 5000 {
		s := randPacket(r, FrameType(i%8), i/8%2 == 1)
		b := AppendPacket(nil, s.t, s.flags, s.seq, s.payload)
		if len(b) != PacketSize(len(s.payload), s.flags) {
			t.Fatalf("len %d, PacketSize %d", len(b), PacketSize(len(s.payload), s.flags))
		}
		// The header-only encoder plus the trailer give the same bytes.
		v := AppendPacketHeader(nil, s.t, s.flags|Flags(r.IntN(16)), s.seq, len(s.payload))
		v = append(v, s.payload...)
		if s.flags&FlagPayloadCRC != 0 {
			v = AppendTrailer(v, s.payload)
		}
		if !bytes.Equal(v, b) {
			t.Fatalf("AppendPacketHeader+payload+AppendTrailer:\n got %x\nwant %x", v, b)
		}
		p, n, err := Parse(b, streamLimits)
		if err != nil || n != len(b) {
			t.Fatalf("packet %d (%v): n %d, err %v", i, s.t, n, err)
		}
		checkPacket(t, i, p, s)
		h, err := DecodeHeader(b)
		if err != nil || h != p.Header {
			t.Fatalf("DecodeHeader = %+v, %v; want %+v", h, err, p.Header)
		}
		if got := AppendHeader(nil, h); !bytes.Equal(got, b[:HeaderSize]) {
			t.Fatalf("AppendHeader = %x, want %x", got, b[:HeaderSize])
		}
	}
}

func TestStream(t *testing.T) {
	pkts, b := randStream(rand.New(rand.NewPCG(3, 4)), 2000)
	for i, s := range pkts {
		p, n, err := Parse(b, streamLimits)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		checkPacket(t, i, p, s)
		b = b[n:]
	}
	if len(b) != 0 {
		t.Fatalf("%d bytes left", len(b))
	}
	if _, n, err := Parse(b, streamLimits); err != ErrIncomplete || n != HeaderSize {
		t.Fatalf("empty: n %d, err %v", n, err)
	}
}

// feed plays a receiver that gets the stream in the given chunk sizes,
// parsing every complete packet in its buffer after each read and checking
// what Parse asks for while a packet is incomplete.
func feed(t *testing.T, pkts []sent, stream []byte, chunk func() int) {
	t.Helper()
	var buf []byte
	i := 0
	for len(stream) > 0 {
		c := min(chunk(), len(stream))
		buf, stream = append(buf, stream[:c]...), stream[c:]
		for {
			p, n, err := Parse(buf, streamLimits)
			if err == ErrIncomplete {
				want := HeaderSize
				if len(buf) >= HeaderSize {
					want = PacketSize(len(pkts[i].payload), pkts[i].flags)
				}
				if n != want || n <= len(buf) {
					t.Fatalf("packet %d with %d bytes: n %d, want %d", i, len(buf), n, want)
				}
				break
			}
			if err != nil {
				t.Fatalf("packet %d: %v", i, err)
			}
			checkPacket(t, i, p, pkts[i])
			buf = buf[n:]
			i++
		}
	}
	if i != len(pkts) || len(buf) != 0 {
		t.Fatalf("parsed %d of %d packets, %d bytes left", i, len(pkts), len(buf))
	}
}

func TestSplitOneByte(t *testing.T) {
	pkts, stream := randStream(rand.New(rand.NewPCG(5, 6)), 300)
	feed(t, pkts, stream, func() int { return 1 })
}

func TestSplitRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for range 20 {
		pkts, stream := randStream(r, 200)
		maxChunk := 1 + r.IntN(600)
		feed(t, pkts, stream, func() int { return 1 + r.IntN(maxChunk) })
	}
}

// TestSplitEveryPoint cuts a stream at every byte into two reads.
func TestSplitEveryPoint(t *testing.T) {
	pkts, stream := randStream(rand.New(rand.NewPCG(9, 10)), 24)
	for cut := 0; cut <= len(stream); cut++ {
		first := true
		feed(t, pkts, stream, func() int {
			if first {
				first = false
				return max(cut, 1)
			}
			return len(stream)
		})
	}
}
