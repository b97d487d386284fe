package main

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zerowire/zerowire/wire"
)

// The contract's test vector: a REQUEST, seq 1, payload "hello".
const vectorHex = `5a 57 49 52 01 00 01 00 1d 00 00 00 01 00 00 00
00 00 00 00 b1 da 6a 68 68 65 6c 6c 6f`

func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustContain(t *testing.T, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

func TestDecodeVector(t *testing.T) {
	f := writeFile(t, "vector.hex", []byte(vectorHex+"\n"))
	code, out, errOut := runCmd(t, "decode", "--hex", f)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	mustContain(t, out,
		"offset 0  REQUEST",
		"version=1", "flags=0x0001 (REQUEST)", "size=29", "seq=1",
		"checksum=0x686adab1 ok",
		"payload   5 bytes: 68 65 6c 6c 6f  |hello|",
		"1 packets, 29 bytes")
}

// stream builds a capture of both directions: every frame type with a
// decoded payload, flags, and a PAYLOAD_CRC trailer.
func stream() []byte {
	var b []byte
	hello := wire.AppendHello(nil, wire.Hello{MinVersion: 1, MaxVersion: 1, MaxPacketSize: 1 << 20,
		IdleTimeoutMS: 30000, Capabilities: wire.CapPayloadCRC, Extensions: wire.AppendExtension(nil, 9, []byte("abc"))})
	b = wire.AppendPacket(b, wire.FrameHello, 0, 0, hello)
	b = wire.AppendPacket(b, wire.FrameRequest, wire.FlagCopy|wire.FlagPayloadCRC, 1, []byte(strings.Repeat("x", 40)))
	b = wire.AppendPacket(b, wire.FramePing, 0, 2, []byte{1, 2, 3})
	b = wire.AppendPacket(b, wire.FrameError, 0, 0, wire.AppendErrorPayload(nil, wire.CodeIdleTimeout, "idle too long"))
	b = wire.AppendPacket(b, wire.FrameGoAway, 0, 0, wire.AppendGoAwayPayload(nil, 7, wire.CodeShuttingDown, "bye"))
	return b
}

func TestDecodeStream(t *testing.T) {
	f := writeFile(t, "stream.bin", stream())
	code, out, errOut := runCmd(t, "decode", f)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q\n%s", code, errOut, out)
	}
	mustContain(t, out,
		"HELLO", "versions 1..1, max_packet_size 1048576, idle_timeout_ms 30000, capabilities 0x00000001 (PAYLOAD_CRC)",
		"extensions type 9 (3 bytes)",
		"(REQUEST|COPY|PAYLOAD_CRC)", "trailer   crc32c=", "40 bytes: 78 78", " ...  |xxxx",
		"PING", "3 bytes: 01 02 03  |...|",
		"ERROR", `IDLE_TIMEOUT (code 5) "idle too long"`,
		"GOAWAY", `last_seq 7, SHUTTING_DOWN (code 6) "bye"`,
		"5 packets,")
}

func TestDecodeCorrupt(t *testing.T) {
	good, _ := hex.DecodeString(strings.Join(strings.Fields(vectorHex), ""))
	bad := append([]byte(nil), good...)
	bad[12] = 9 // seq 9: the header checksum no longer matches
	f := writeFile(t, "bad.bin", append(append([]byte(nil), good...), bad...))
	code, out, errOut := runCmd(t, "decode", f)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	mustContain(t, out, "offset 0  REQUEST", "offset 29  malformed: PROTOCOL_ERROR (code 1)",
		"checksum  0x686adab1 in the header, 0x", "1 packets, 29 bytes before the error")
	mustContain(t, errOut, "zw: decode: offset 29: PROTOCOL_ERROR (code 1)")
	if n := strings.Count(errOut, "\n"); n != 1 {
		t.Errorf("stderr has %d lines, want 1: %q", n, errOut)
	}

	// A size beyond any receiver's limit, with a good checksum.
	huge := wire.AppendHeader(nil, wire.Header{Version: 1, Flags: wire.MakeFlags(wire.FrameData, 0), Size: 1<<32 - 1, Seq: 1})
	code, out, _ = runCmd(t, "decode", writeFile(t, "huge.bin", huge))
	if code != 1 {
		t.Fatalf("huge: exit %d, want 1", code)
	}
	mustContain(t, out, "offset 0  malformed: FRAME_TOO_LARGE (code 2)", "size=4294967295")

	// A reserved flag bit.
	res := wire.AppendPacket(nil, wire.FrameData, 1<<9, 1, []byte("z"))
	code, out, _ = runCmd(t, "decode", writeFile(t, "res.bin", res))
	if code != 1 {
		t.Fatalf("reserved: exit %d, want 1", code)
	}
	mustContain(t, out, "PROTOCOL_ERROR (code 1)", "RESERVED(0x0200)")

	// A bad payload trailer.
	crc := wire.AppendPacket(nil, wire.FrameData, wire.FlagPayloadCRC, 1, []byte("payload"))
	crc[len(crc)-1] ^= 0xff
	code, out, _ = runCmd(t, "decode", writeFile(t, "crc.bin", crc))
	if code != 1 {
		t.Fatalf("trailer: exit %d, want 1", code)
	}
	mustContain(t, out, "offset 0  malformed: PROTOCOL_ERROR (code 1)", "(DATA|PAYLOAD_CRC)")
}

func TestDecodeIncomplete(t *testing.T) {
	good, _ := hex.DecodeString(strings.Join(strings.Fields(vectorHex), ""))
	for _, tc := range []struct {
		cut  int
		want string
	}{
		{10, "offset 29  incomplete packet: 10 bytes, short of a 24-byte header"},
		{26, "offset 29  incomplete packet: 26 of the 29 bytes the header gives as its size"},
	} {
		in := append(append([]byte(nil), good...), good[:tc.cut]...)
		code, out, errOut := runCmd(t, "decode", writeFile(t, "cut.bin", in))
		if code != 1 {
			t.Fatalf("cut %d: exit %d, want 1", tc.cut, code)
		}
		mustContain(t, out, tc.want)
		mustContain(t, errOut, "incomplete packet at the end of the input")
	}
}

func TestDecodeStdinAndBadHex(t *testing.T) {
	old := stdin
	defer func() { stdin = old }()
	stdin = strings.NewReader(vectorHex)
	if code, out, errOut := runCmd(t, "decode", "--hex", "-"); code != 0 || !strings.Contains(out, "seq=1") {
		t.Fatalf("stdin: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	stdin = strings.NewReader("5a 57 zz")
	code, _, errOut := runCmd(t, "decode", "--hex")
	if code != 1 || !strings.Contains(errOut, "--hex") {
		t.Fatalf("bad hex: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := runCmd(t, "decode", filepath.Join(t.TempDir(), "missing")); code != 1 || !strings.Contains(errOut, "no such file") {
		t.Fatalf("missing file: exit %d, stderr %q", code, errOut)
	}
}

func TestDecodeEmpty(t *testing.T) {
	code, out, _ := runCmd(t, "decode", writeFile(t, "empty", nil))
	if code != 0 || !strings.Contains(out, "0 packets, 0 bytes") {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
}
