package wire

import (
	"bytes"
	"encoding/hex"
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
