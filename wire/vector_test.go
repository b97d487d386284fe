package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"testing"
)

// contractVector is the test vector of wire-v1.md: a REQUEST with seq 1,
// flags 0x0001 and the payload "hello".
const contractVector = "5a574952010001001d0000000100000000000000b1da6a6868656c6c6f"

func TestContractVector(t *testing.T) {
	want, err := hex.DecodeString(contractVector)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != 29 {
		t.Fatalf("vector is %d bytes, want 29", len(want))
	}
	if got := Checksum(want[:20]); got != 0x686adab1 {
		t.Fatalf("Checksum(header[:20]) = %#x, want 0x686adab1", got)
	}

	got := AppendPacket(nil, FrameRequest, 0, 1, []byte("hello"))
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendPacket:\n got %x\nwant %x", got, want)
	}
	hdr := AppendPacketHeader(nil, FrameRequest, 0, 1, 5)
	if !bytes.Equal(hdr, want[:HeaderSize]) {
		t.Fatalf("AppendPacketHeader:\n got %x\nwant %x", hdr, want[:HeaderSize])
	}
	var put [HeaderSize]byte
	PutHeader(put[:], Header{Version: 1, Flags: 0x0001, Size: 29, Seq: 1})
	if !bytes.Equal(put[:], want[:HeaderSize]) {
		t.Fatalf("PutHeader:\n got %x\nwant %x", put, want[:HeaderSize])
	}

	p, n, err := Parse(want, Limits{})
	if err != nil || n != 29 {
		t.Fatalf("Parse = n %d, err %v; want 29, nil", n, err)
	}
	wantHdr := Header{Version: 1, Flags: MakeFlags(FrameRequest, 0), Size: 29, Seq: 1}
	if p.Header != wantHdr || p.Type() != FrameRequest || string(p.Payload) != "hello" {
		t.Fatalf("Parse = %+v %q; want %+v \"hello\"", p.Header, p.Payload, wantHdr)
	}
	h, err := DecodeHeader(want)
	if err != nil || h != wantHdr {
		t.Fatalf("DecodeHeader = %+v, %v; want %+v", h, err, wantHdr)
	}
}

// TestHeaderChecksum checks the table-driven header checksum against
// hash/crc32 on every single-bit header and on random ones.
func TestHeaderChecksum(t *testing.T) {
	check := func(flags Flags, size uint32, seq uint64) {
		t.Helper()
		var b [HeaderSize]byte
		copy(b[:], Magic)
		b[4] = Version
		binary.LittleEndian.PutUint16(b[6:], uint16(flags))
		binary.LittleEndian.PutUint32(b[8:], size)
		binary.LittleEndian.PutUint64(b[12:], seq)
		if got, want := headerChecksum(flags, size, seq), Checksum(b[:20]); got != want {
			t.Fatalf("headerChecksum(%#x, %d, %d) = %#x, want %#x", flags, size, seq, got, want)
		}
	}
	check(0, 0, 0)
	for bit := range 64 {
		check(Flags(1)<<(bit%16), uint32(1)<<(bit%32), uint64(1)<<bit)
		check(0, 0, uint64(1)<<bit)
		check(0, uint32(1)<<(bit%32), 0)
		check(Flags(1)<<(bit%16), 0, 0)
	}
	r := rand.New(rand.NewPCG(15, 16))
	for range 100000 {
		check(Flags(r.Uint32()), r.Uint32(), r.Uint64())
	}
}
