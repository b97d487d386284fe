package wire

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"testing"
)

// benchPayloads are the payload sizes of the benchmarks; SetBytes counts the
// whole packet, the bytes Parse consumes and AppendPacket produces.
var benchPayloads = []struct {
	name string
	n    int
}{{"64B", 64}, {"1KiB", 1 << 10}, {"64KiB", 64 << 10}}

func benchCases(b *testing.B, f func(b *testing.B, payload []byte, flags Flags)) {
	for _, size := range benchPayloads {
		for _, flags := range []Flags{0, FlagPayloadCRC} {
			name := size.name + "/crc=" + strconv.FormatBool(flags != 0)
			b.Run(name, func(b *testing.B) {
				payload := bytesN(size.n)
				b.SetBytes(int64(PacketSize(size.n, flags)))
				b.ReportAllocs()
				f(b, payload, flags)
			})
		}
	}
}

func BenchmarkParse(b *testing.B) {
	benchCases(b, func(b *testing.B, payload []byte, flags Flags) {
		pkt := AppendPacket(nil, FrameData, flags, 1, payload)
		lim := Limits{PayloadCRC: true}
		for b.Loop() {
			if _, _, err := Parse(pkt, lim); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkAppendPacket(b *testing.B) {
	benchCases(b, func(b *testing.B, payload []byte, flags Flags) {
		buf := make([]byte, 0, PacketSize(len(payload), flags))
		for b.Loop() {
			buf = AppendPacket(buf[:0], FrameData, flags, 1, payload)
		}
	})
}

func BenchmarkAppendHeader(b *testing.B) {
	h := Header{Version: Version, Flags: MakeFlags(FrameRequest, 0), Size: HeaderSize + 64, Seq: 1}
	buf := make([]byte, 0, HeaderSize)
	b.SetBytes(HeaderSize)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendHeader(buf[:0], h)
	}
}

// binaryReadHeader is the header as a typical Go program declares it to
// decode it with encoding/binary.Read.
type binaryReadHeader struct {
	Magic    [4]byte
	Version  uint16
	Flags    uint16
	Size     uint32
	Seq      uint64
	Checksum uint32
}

// BenchmarkBaselineBinaryRead decodes the header of BenchmarkParse's 64-byte
// payload packet the way a typical Go program would, with the same checks
// (magic, version, checksum), to put Parse's numbers in proportion.
func BenchmarkBaselineBinaryRead(b *testing.B) {
	pkt := AppendPacket(nil, FrameData, 0, 1, bytesN(64))
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		var h binaryReadHeader
		if err := binary.Read(bytes.NewReader(pkt), binary.LittleEndian, &h); err != nil {
			b.Fatal(err)
		}
		if string(h.Magic[:]) != Magic || h.Version != Version || h.Checksum != Checksum(pkt[:20]) {
			b.Fatal("bad header")
		}
	}
}
