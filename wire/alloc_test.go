package wire

import (
	"math/rand/v2"
	"testing"
)

func assertNoAllocs(t *testing.T, name string, f func()) {
	t.Helper()
	if n := testing.AllocsPerRun(100, f); n != 0 {
		t.Errorf("%s: %v allocations per run, want 0", name, n)
	}
}

func TestParseAllocs(t *testing.T) {
	pkts, stream := randStream(rand.New(rand.NewPCG(11, 12)), 200)
	assertNoAllocs(t, "Parse of a valid stream", func() {
		b := stream
		for range pkts {
			_, n, err := Parse(b, streamLimits)
			if err != nil {
				panic(err)
			}
			b = b[n:]
		}
	})
	for _, tc := range ruleCases() {
		assertNoAllocs(t, "Parse: "+tc.name, func() {
			if _, _, err := Parse(tc.b, tc.lim); err != tc.want && tc.want != nil {
				panic(err)
			}
			if _, _, err := Parse(tc.b[:HeaderSize], tc.lim); err == nil && len(tc.b) > HeaderSize {
				panic("header alone parsed")
			}
			if _, _, err := Parse(tc.b[:5], tc.lim); err != ErrIncomplete {
				panic(err)
			}
		})
	}
}

func TestEncodeAllocs(t *testing.T) {
	payload := bytesN(1000)
	buf := make([]byte, 0, 4096)
	ext := AppendExtension(nil, 3, []byte("value"))
	hello := Hello{MinVersion: 1, MaxVersion: 1, MaxPacketSize: 4096, Extensions: ext}
	var hdr [HeaderSize]byte
	assertNoAllocs(t, "encoders", func() {
		b := AppendPacket(buf, FrameRequest, FlagPayloadCRC|FlagCopy, 9, payload)
		b = AppendPacket(b, FrameData, 0, 10, payload)
		b = AppendPacketHeader(b, FrameRequest, FlagPayloadCRC, 11, len(payload))
		b = AppendTrailer(b, payload)
		b = AppendHeader(b, Header{Version: 1, Size: 24, Seq: 12})
		PutHeader(hdr[:], Header{Version: 1, Size: 24, Seq: 13})
		b = AppendHello(b, hello)
		b = AppendExtension(b, 4, ext)
		b = AppendErrorPayload(b, CodeApplication, "failed")
		b = AppendGoAwayPayload(b, 8, CodeNone, "bye")
		if len(b) > cap(buf) {
			panic("buffer grew")
		}
	})
	errPayload := AppendErrorPayload(nil, CodeApplication, "failed")
	goAway := AppendGoAwayPayload(nil, 8, CodeNone, "bye")
	helloPayload := AppendHello(nil, hello)
	var seq SeqChecker
	assertNoAllocs(t, "payload parsers", func() {
		if _, err := ParseHello(helloPayload); err != nil {
			panic(err)
		}
		if _, err := ParseHello(helloPayload[:3]); err == nil {
			panic("short HELLO parsed")
		}
		if _, _, err := NextExtension(ext); err != nil {
			panic(err)
		}
		if _, _, err := ParseErrorPayload(errPayload); err != nil {
			panic(err)
		}
		if _, err := ParseGoAway(goAway); err != nil {
			panic(err)
		}
		if _, err := DecodeHeader(hdr[:]); err != nil {
			panic(err)
		}
		if err := seq.Check(seq.Last() + 1); err != nil {
			panic(err)
		}
		if err := seq.Check(0); err == nil {
			panic("seq 0 accepted")
		}
	})
}
