package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
)

// raw builds a packet with AppendPacket, then lets edit change its bytes
// before the header checksum is recomputed, so a test can break exactly one
// rule. Pass fixSum=false to keep a broken checksum.
func raw(t FrameType, flags Flags, seq uint64, payload []byte, edit func(b []byte)) []byte {
	b := AppendPacket(nil, t, flags, seq, payload)
	if edit != nil {
		edit(b)
		binary.LittleEndian.PutUint32(b[20:24], Checksum(b[:20]))
	}
	return b
}

// xor flips bits of b[i] and keeps the checksum as it was.
func xor(b []byte, i int, x byte) []byte {
	b[i] ^= x
	return b
}

func setSize(size uint32) func([]byte) {
	return func(b []byte) { binary.LittleEndian.PutUint32(b[8:12], size) }
}

func setFlags(f Flags) func([]byte) {
	return func(b []byte) { binary.LittleEndian.PutUint16(b[6:8], uint16(f)) }
}

func helloPayload(h Hello) []byte { return AppendHello(nil, h) }

var validHello = Hello{MinVersion: 1, MaxVersion: 1, MaxPacketSize: 1 << 16, IdleTimeoutMS: 30000, Capabilities: CapPayloadCRC}

func bytesN(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

var crcOn = Limits{PayloadCRC: true}

type ruleCase struct {
	name  string
	b     []byte
	lim   Limits
	want  *Error // nil: the packet is valid
	early bool   // the rule needs only the header: rejected with 24 bytes
}

func ruleCases() []ruleCase {
	big := uint32(DefaultMaxPacketSize + 1)
	return []ruleCase{
		// Packet rules, in the contract's order.
		{"bad magic", raw(FrameData, 0, 1, nil, func(b []byte) { b[3] = 'S' }), Limits{}, errBadMagic, true},
		{"bad magic, unfixed checksum", xor(AppendPacket(nil, FrameData, 0, 1, nil), 0, 0x20), Limits{}, errBadMagic, true},
		{"version 0", raw(FrameData, 0, 1, nil, func(b []byte) { b[4] = 0 }), Limits{}, errBadVersion, true},
		{"version 2", raw(FrameData, 0, 1, nil, func(b []byte) { b[4] = 2 }), Limits{}, errBadVersion, true},
		{"version 0x0101", raw(FrameData, 0, 1, nil, func(b []byte) { b[5] = 1 }), Limits{}, errBadVersion, true},
		{"version 1 on HELLO too", raw(FrameHello, 0, 0, helloPayload(validHello), func(b []byte) { b[4] = 2 }), Limits{}, errBadVersion, true},
		{"checksum", xor(AppendPacket(nil, FrameData, 0, 1, nil), 23, 1), Limits{}, errHeaderChecksum, true},
		{"checksum over seq", xor(AppendPacket(nil, FrameData, 0, 1, nil), 19, 0x80), Limits{}, errHeaderChecksum, true},
		{"size 0", raw(FrameData, 0, 1, nil, setSize(0)), Limits{}, errSizeTooSmall, true},
		{"size 23", raw(FrameData, 0, 1, nil, setSize(23)), Limits{}, errSizeTooSmall, true},
		{"size over default max", raw(FrameData, 0, 1, nil, setSize(big)), Limits{}, errFrameTooLarge, true},
		{"size over max", raw(FrameData, 0, 1, bytesN(4073), nil), Limits{MaxPacketSize: 4096}, errFrameTooLarge, true},
		{"size 0xffffffff", raw(FrameData, 0, 1, nil, setSize(0xffffffff)), Limits{MaxPacketSize: 1 << 31}, errFrameTooLarge, true},
		{"type 8", raw(FrameData, 0, 1, nil, setFlags(8)), Limits{}, errUnknownType, true},
		{"type 15", raw(FrameData, 0, 1, nil, setFlags(15)), Limits{}, errUnknownType, true},
		{"reserved bit 6", raw(FrameData, 1<<6, 1, nil, nil), Limits{}, errReservedFlags, true},
		{"reserved bit 15", raw(FrameData, 1<<15, 1, nil, nil), Limits{}, errReservedFlags, true},
		{"PAYLOAD_CRC size 24", raw(FrameData, FlagPayloadCRC, 1, nil, setSize(24)), crcOn, errTrailerTooShort, true},
		{"PAYLOAD_CRC size 27", raw(FrameData, FlagPayloadCRC, 1, nil, setSize(27)), crcOn, errTrailerTooShort, true},
		{"trailer mismatch", xor(AppendPacket(nil, FrameData, FlagPayloadCRC, 1, []byte("hello")), 24, 1), crcOn, errTrailerMismatch, false},
		{"trailer mismatch, empty payload", xor(AppendPacket(nil, FrameData, FlagPayloadCRC, 1, nil), 27, 1), crcOn, errTrailerMismatch, false},

		// Flags and frame-type rules.
		{"PAYLOAD_CRC not negotiated", raw(FrameData, FlagPayloadCRC, 1, []byte("x"), nil), Limits{}, errCRCNotNegotiated, true},
		{"PAYLOAD_CRC not negotiated, PING", raw(FramePing, FlagPayloadCRC, 1, nil, nil), Limits{}, errCRCNotNegotiated, true},
		{"PAYLOAD_CRC on HELLO", raw(FrameHello, FlagPayloadCRC, 0, helloPayload(validHello), nil), crcOn, errCRCOnHello, true},
		{"COPY on RESPONSE", raw(FrameResponse, FlagCopy, 1, nil, nil), Limits{}, errCopyOnAnswer, true},
		{"COPY on PONG", raw(FramePong, FlagCopy, 1, nil, nil), Limits{}, errCopyOnAnswer, true},
		{"PING 65 bytes", raw(FramePing, 0, 1, bytesN(65), nil), Limits{}, errPingTooLarge, true},
		{"PING 61 bytes and trailer", raw(FramePing, FlagPayloadCRC, 1, bytesN(61), nil), crcOn, errPingTooLarge, true},
		{"PONG 65 bytes", raw(FramePong, 0, 1, bytesN(65), nil), Limits{}, errPingTooLarge, true},
		{"PONG 61 bytes and trailer", raw(FramePong, FlagPayloadCRC, 1, bytesN(61), nil), crcOn, errPingTooLarge, true},
		{"ERROR payload 0", raw(FrameError, 0, 0, nil, nil), Limits{}, errErrorTooShort, true},
		{"ERROR payload 3", raw(FrameError, 0, 0, bytesN(3), nil), Limits{}, errErrorTooShort, true},
		{"ERROR payload 3 and trailer", raw(FrameError, FlagPayloadCRC, 0, bytesN(3), nil), crcOn, errErrorTooShort, true},
		{"ERROR message not UTF-8", raw(FrameError, 0, 0, AppendErrorPayload(nil, CodeApplication, "bad \xff"), nil), Limits{}, errErrorUTF8, false},
		{"ERROR message truncated rune", raw(FrameError, FlagPayloadCRC, 0, AppendErrorPayload(nil, CodeApplication, "é"[:1]), nil), crcOn, errErrorUTF8, false},
		{"GOAWAY payload 11", raw(FrameGoAway, 0, 0, bytesN(11), nil), Limits{}, errGoAwayTooShort, true},
		{"GOAWAY payload 11 and trailer", raw(FrameGoAway, FlagPayloadCRC, 0, bytesN(11), nil), crcOn, errGoAwayTooShort, true},
		{"GOAWAY message not UTF-8", raw(FrameGoAway, 0, 0, AppendGoAwayPayload(nil, 3, CodeNone, "\xc0\xaf"), nil), Limits{}, errGoAwayUTF8, false},
		{"GOAWAY seq 1", raw(FrameGoAway, 0, 1, AppendGoAwayPayload(nil, 3, CodeNone, ""), nil), Limits{}, errGoAwaySeq, true},
		{"HELLO seq 1", raw(FrameHello, 0, 1, helloPayload(validHello), nil), Limits{}, errHelloSeq, true},
		{"HELLO payload 15", raw(FrameHello, 0, 0, helloPayload(validHello)[:15], nil), Limits{}, errHelloTooShort, true},
		{"HELLO extension header cut", raw(FrameHello, 0, 0, append(helloPayload(validHello), 1, 0, 0), nil), Limits{}, errHelloExtensions, false},
		{"HELLO extension value cut", raw(FrameHello, 0, 0, append(helloPayload(validHello), 1, 0, 2, 0, 'x'), nil), Limits{}, errHelloExtensions, false},
		{"HELLO extension then a byte", raw(FrameHello, 0, 0, append(AppendExtension(helloPayload(validHello), 9, []byte("v")), 0), nil), Limits{}, errHelloExtensions, false},
		{"HELLO min > max", raw(FrameHello, 0, 0, helloPayload(Hello{MinVersion: 2, MaxVersion: 1, MaxPacketSize: 4096}), nil), Limits{}, errHelloVersions, false},
		{"HELLO max_packet_size 4095", raw(FrameHello, 0, 0, helloPayload(Hello{MinVersion: 1, MaxVersion: 1, MaxPacketSize: 4095}), nil), Limits{}, errHelloMaxPacket, false},
		{"HELLO no common version still checked", raw(FrameHello, 0, 0, helloPayload(Hello{MinVersion: 7, MaxVersion: 9, MaxPacketSize: 100}), nil), Limits{}, errHelloMaxPacket, false},

		// Precedence: the first rule in the contract's list decides.
		{"magic before version", raw(FrameData, 0, 1, nil, func(b []byte) { b[0], b[4] = 0, 9 }), Limits{}, errBadMagic, true},
		{"version before checksum", xor(AppendPacket(nil, FrameData, 0, 1, nil), 4, 8), Limits{}, errBadVersion, true},
		{"checksum before size", xor(AppendPacket(nil, FrameData, 0, 1, nil), 8, 24^1), Limits{}, errHeaderChecksum, true},
		{"checksum before FRAME_TOO_LARGE", xor(AppendPacket(nil, FrameData, 0, 1, nil), 10, 0x20), Limits{}, errHeaderChecksum, true},
		{"version before FRAME_TOO_LARGE", raw(FrameData, 0, 1, nil, func(b []byte) { setSize(big)(b); b[4] = 2 }), Limits{}, errBadVersion, true},
		{"FRAME_TOO_LARGE before type", raw(FrameData, 0, 1, nil, func(b []byte) { setSize(big)(b); setFlags(9)(b) }), Limits{}, errFrameTooLarge, true},
		{"FRAME_TOO_LARGE before reserved bits", raw(FrameData, 1<<9, 1, nil, setSize(big)), Limits{}, errFrameTooLarge, true},
		{"FRAME_TOO_LARGE before PAYLOAD_CRC", raw(FrameData, FlagPayloadCRC, 1, nil, setSize(big)), Limits{}, errFrameTooLarge, true},
		{"FRAME_TOO_LARGE before PING size", raw(FramePing, 0, 1, nil, setSize(big)), Limits{}, errFrameTooLarge, true},
		{"FRAME_TOO_LARGE before HELLO seq", raw(FrameHello, 0, 5, nil, setSize(big)), Limits{}, errFrameTooLarge, true},
		{"FRAME_TOO_LARGE before COPY", raw(FrameResponse, FlagCopy, 1, nil, setSize(big)), Limits{}, errFrameTooLarge, true},
		{"type before reserved bits", raw(FrameData, 0, 1, nil, setFlags(0xa|1<<7)), Limits{}, errUnknownType, true},
		{"reserved bits before short trailer", raw(FrameData, FlagPayloadCRC|1<<6, 1, nil, setSize(25)), crcOn, errReservedFlags, true},
		{"short trailer before not negotiated", raw(FrameData, FlagPayloadCRC, 1, nil, setSize(25)), Limits{}, errTrailerTooShort, true},

		// Valid packets at the edges of the rules.
		{"DATA empty", raw(FrameData, 0, 1, nil, nil), Limits{}, nil, false},
		{"DATA at max", raw(FrameData, FlagCopy, 1, bytesN(4096-24), nil), Limits{MaxPacketSize: 4096}, nil, false},
		{"REQUEST with trailer at max", raw(FrameRequest, FlagPayloadCRC, 1, bytesN(4096-28), nil), Limits{MaxPacketSize: 4096, PayloadCRC: true}, nil, false},
		{"RESPONSE", raw(FrameResponse, 0, 7, []byte("x"), nil), Limits{}, nil, false},
		{"PING 64 bytes", raw(FramePing, 0, 1, bytesN(64), nil), Limits{}, nil, false},
		{"PING 60 bytes and trailer", raw(FramePing, FlagPayloadCRC, 1, bytesN(60), nil), crcOn, nil, false},
		{"PING with COPY", raw(FramePing, FlagCopy, 1, nil, nil), Limits{}, nil, false},
		{"PONG 64 bytes", raw(FramePong, 0, 1, bytesN(64), nil), Limits{}, nil, false},
		{"ERROR code only", raw(FrameError, 0, 0, AppendErrorPayload(nil, CodeIdleTimeout, ""), nil), Limits{}, nil, false},
		{"ERROR with trailer", raw(FrameError, FlagPayloadCRC, 3, AppendErrorPayload(nil, CodeApplication, "é"), nil), crcOn, nil, false},
		{"GOAWAY", raw(FrameGoAway, 0, 0, AppendGoAwayPayload(nil, 42, CodeShuttingDown, "bye ✓"), nil), Limits{}, nil, false},
		{"HELLO", raw(FrameHello, 0, 0, helloPayload(validHello), nil), Limits{}, nil, false},
		{"HELLO with extensions", raw(FrameHello, 0, 0, AppendExtension(AppendExtension(helloPayload(validHello), 1, nil), 0xffff, []byte("abc")), nil), Limits{}, nil, false},
		{"HELLO without common version", raw(FrameHello, 0, 0, helloPayload(Hello{MinVersion: 7, MaxVersion: 9, MaxPacketSize: 4096}), nil), Limits{}, nil, false},
	}
}

func TestParseRules(t *testing.T) {
	for _, tc := range ruleCases() {
		t.Run(tc.name, func(t *testing.T) {
			p, n, err := Parse(tc.b, tc.lim)
			if tc.want == nil {
				if err != nil || n != len(tc.b) || int(p.Size) != len(tc.b) {
					t.Fatalf("Parse = n %d, err %v; want n %d, nil", n, err, len(tc.b))
				}
				return
			}
			if err != tc.want || n != 0 {
				t.Fatalf("Parse = n %d, err %v; want n 0, err %v", n, err, tc.want)
			}
			if !errors.Is(err, &Error{Code: tc.want.Code}) {
				t.Fatalf("errors.Is(%v, code %v) = false", err, tc.want.Code)
			}
			if wantFTL := tc.want == errFrameTooLarge; (tc.want.Code == CodeFrameTooLarge) != wantFTL || (!wantFTL && tc.want.Code != CodeProtocolError) {
				t.Fatalf("%v has code %v", tc.want, tc.want.Code)
			}
			// Bytes after the packet change nothing.
			if _, n, err := Parse(append(tc.b[:len(tc.b):len(tc.b)], AppendPacket(nil, FrameData, 0, 1, nil)...), tc.lim); err != tc.want || n != 0 {
				t.Fatalf("Parse with a following packet = n %d, err %v; want 0, %v", n, err, tc.want)
			}
		})
	}
}

// TestParseEarly feeds every prefix of every rule case: fewer than 24 bytes
// wait for the header, a header that breaks a rule is rejected at once with
// the same error as the whole packet, and any other header waits for the
// whole packet.
func TestParseEarly(t *testing.T) {
	for _, tc := range ruleCases() {
		t.Run(tc.name, func(t *testing.T) {
			for k := 0; k < len(tc.b); k++ {
				_, n, err := Parse(tc.b[:k], tc.lim)
				switch {
				case k < HeaderSize:
					if err != ErrIncomplete || n != HeaderSize {
						t.Fatalf("Parse(%d bytes) = n %d, err %v; want %d, ErrIncomplete", k, n, err, HeaderSize)
					}
				case tc.early:
					if err != tc.want || n != 0 {
						t.Fatalf("Parse(%d bytes) = n %d, err %v; want 0, %v", k, n, err, tc.want)
					}
				default:
					if err != ErrIncomplete || n != len(tc.b) {
						t.Fatalf("Parse(%d bytes) = n %d, err %v; want %d, ErrIncomplete", k, n, err, len(tc.b))
					}
				}
			}
		})
	}
}

func TestErrorIs(t *testing.T) {
	if !errors.Is(errFrameTooLarge, &Error{Code: CodeFrameTooLarge}) {
		t.Error("FRAME_TOO_LARGE does not match its code")
	}
	if errors.Is(errBadMagic, &Error{Code: CodeFrameTooLarge}) {
		t.Error("PROTOCOL_ERROR matches FRAME_TOO_LARGE")
	}
	if errors.Is(errBadMagic, (*Error)(nil)) {
		t.Error("matches a nil *Error")
	}
	if errors.Is(ErrIncomplete, &Error{Code: CodeProtocolError}) {
		t.Error("ErrIncomplete is a protocol error")
	}
	if got, want := errHeaderChecksum.Error(), "zerowire: PROTOCOL_ERROR: header checksum mismatch"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got := fmt.Sprint(FrameType(9), " ", Code(12), " ", FrameGoAway, " ", CodeOverloaded); got != "UNKNOWN(9) CODE(12) GOAWAY OVERLOADED" {
		t.Errorf("names = %q", got)
	}
}

func TestDecodeHeader(t *testing.T) {
	b := AppendPacket(nil, FramePing, FlagCopy, 77, []byte("abc"))
	b[4] = 2 // a later version: DecodeHeader leaves the version to the caller
	binary.LittleEndian.PutUint32(b[20:24], Checksum(b[:20]))
	h, err := DecodeHeader(b[:HeaderSize])
	if want := (Header{Version: 2, Flags: MakeFlags(FramePing, FlagCopy), Size: 27, Seq: 77}); err != nil || h != want {
		t.Fatalf("DecodeHeader = %+v, %v; want %+v", h, err, want)
	}
	if _, err := DecodeHeader(b[:HeaderSize-1]); err != ErrIncomplete {
		t.Fatalf("short: err %v", err)
	}
	b[21] ^= 1
	if _, err := DecodeHeader(b); err != errHeaderChecksum {
		t.Fatalf("checksum: err %v", err)
	}
	b[0] = 0
	if _, err := DecodeHeader(b); err != errBadMagic {
		t.Fatalf("magic: err %v", err)
	}
	if got := AppendHeader([]byte("x"), h); string(got[:1]) != "x" || len(got) != 25 {
		t.Fatalf("AppendHeader kept %q, len %d", got[:1], len(got))
	}
}
