package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"testing"
	"unicode/utf8"
)

// fuzzInput turns the parser targets' arguments into the bytes and limits
// to parse: with fix, a repaired copy of b (the fuzzer owns b).
func fuzzInput(b []byte, max uint32, crc, fix bool) ([]byte, Limits) {
	if fix {
		b = bytes.Clone(b)
		repair(b)
	}
	return b, Limits{MaxPacketSize: max, PayloadCRC: crc}
}

// repair makes random bytes more likely to reach the rules past the header
// checksum, which a fuzzer cannot invert: it walks the packets by their size
// fields, setting magic and version and recomputing the header checksum and,
// when PAYLOAD_CRC is set, the trailer.
func repair(b []byte) {
	for len(b) >= HeaderSize {
		binary.LittleEndian.PutUint32(b[0:4], magicLE)
		binary.LittleEndian.PutUint16(b[4:6], Version)
		binary.LittleEndian.PutUint32(b[20:24], Checksum(b[:20]))
		size := binary.LittleEndian.Uint32(b[8:12])
		if size < HeaderSize || uint64(size) > uint64(len(b)) {
			return
		}
		if Flags(binary.LittleEndian.Uint16(b[6:8]))&FlagPayloadCRC != 0 && size >= HeaderSize+TrailerSize {
			binary.LittleEndian.PutUint32(b[size-4:size], Checksum(b[HeaderSize:size-4]))
		}
		b = b[size:]
	}
}

// checkStream parses b packet by packet and checks what Parse promises.
func checkStream(t *testing.T, b []byte, lim Limits) {
	max := lim.MaxPacketSize
	if max == 0 {
		max = DefaultMaxPacketSize
	}
	for {
		p, n, err := Parse(b, lim)
		var early error // the verdict on the header alone
		if len(b) >= HeaderSize {
			_, _, early = Parse(b[:HeaderSize], lim)
			if early != errBadMagic && early != errBadVersion &&
				(early == errHeaderChecksum) != (Checksum(b[:20]) != binary.LittleEndian.Uint32(b[20:24])) {
				t.Fatalf("header checksum verdict %v disagrees with hash/crc32", early)
			}
		}
		switch {
		case err == nil:
			if n != int(p.Size) || n < HeaderSize || n > len(b) || p.Size > max {
				t.Fatalf("n %d, size %d, len %d, max %d", n, p.Size, len(b), max)
			}
			// Whatever parses re-encodes to the same bytes.
			if enc := AppendPacket(nil, p.Type(), p.Flags, p.Seq, p.Payload); !bytes.Equal(enc, b[:n]) {
				t.Fatalf("re-encoded\n %x\nparsed\n %x", enc, b[:n])
			}
			checkParsedPayload(t, p)
			// Every prefix of a valid packet asks for more bytes.
			for k := range n {
				if _, m, err := Parse(b[:k], lim); err != ErrIncomplete || (k < HeaderSize && m != HeaderSize) || (k >= HeaderSize && m != n) {
					t.Fatalf("prefix %d of %d: n %d, err %v", k, n, m, err)
				}
			}
			b = b[n:]
			continue
		case err == ErrIncomplete:
			if len(b) < HeaderSize && n != HeaderSize || len(b) >= HeaderSize && (n <= len(b) || uint32(n) > max) {
				t.Fatalf("incomplete with %d bytes: n %d", len(b), n)
			}
			if early != nil && early != ErrIncomplete {
				t.Fatalf("header alone rejected (%v), whole prefix incomplete", early)
			}
		default:
			var e *Error
			if !errors.As(err, &e) || n != 0 || e.Code != CodeProtocolError && e.Code != CodeFrameTooLarge {
				t.Fatalf("n %d, err %v", n, err)
			}
			if early != ErrIncomplete && early != err {
				t.Fatalf("header alone: %v, whole packet: %v", early, err)
			}
		}
		return
	}
}

// checkParsedPayload checks that the payload of a parsed packet satisfies its
// frame type's parser, since Parse enforced the same rules.
func checkParsedPayload(t *testing.T, p Packet) {
	if err := payloadErr(p); err != nil {
		t.Fatalf("%v payload rejected after Parse accepted it: %v", p.Type(), err)
	}
}

// payloadErr is the verdict of p's frame type's own payload parser (nil
// for types without one).
func payloadErr(p Packet) error {
	switch p.Type() {
	case FrameHello:
		_, err := ParseHello(p.Payload)
		return err
	case FrameError:
		_, _, err := ParseErrorPayload(p.Payload)
		return err
	case FrameGoAway:
		_, err := ParseGoAway(p.Payload)
		return err
	}
	return nil
}

func FuzzParse(f *testing.F) {
	_, stream := randStream(rand.New(rand.NewPCG(13, 14)), 6)
	f.Add(stream, uint32(0), true, false)
	for _, tc := range ruleCases() {
		f.Add(tc.b, tc.lim.MaxPacketSize, tc.lim.PayloadCRC, false)
	}
	f.Add(AppendPacket(AppendPacket(nil, FrameHello, 0, 0, AppendHello(nil, validHello)), FramePing, 0, 1, nil), uint32(4096), false, true)
	f.Add([]byte("ZWIR"), uint32(0), false, false)
	f.Fuzz(func(t *testing.T, b []byte, max uint32, crc bool, fix bool) {
		b, lim := fuzzInput(b, max, crc, fix)
		checkStream(t, b, lim)
	})
}

func FuzzHello(f *testing.F) {
	f.Add(uint16(1), uint16(1), uint32(4096), uint32(0), uint32(1), []byte(nil))
	f.Add(uint16(1), uint16(3), uint32(1<<20), uint32(30000), uint32(0xffffffff), AppendExtension(AppendExtension(nil, 1, []byte("x")), 2, nil))
	f.Add(uint16(2), uint16(1), uint32(4095), uint32(0), uint32(0), []byte{1, 0, 9, 0})
	f.Fuzz(func(t *testing.T, lo, hi uint16, mps, idle, caps uint32, ext []byte) {
		h := Hello{MinVersion: lo, MaxVersion: hi, MaxPacketSize: mps, IdleTimeoutMS: idle, Capabilities: caps, Extensions: ext}
		b := AppendHello(nil, h)
		// Walk the extensions independently of NextExtension.
		extOK := true
		for rest := ext; len(rest) > 0; {
			if len(rest) < 4 || len(rest)-4 < int(binary.LittleEndian.Uint16(rest[2:])) {
				extOK = false
				break
			}
			rest = rest[4+int(binary.LittleEndian.Uint16(rest[2:])):]
		}
		got, err := ParseHello(b)
		switch {
		case !extOK:
			if err != errHelloExtensions {
				t.Fatalf("bad extensions: %v", err)
			}
		case lo > hi:
			if err != errHelloVersions {
				t.Fatalf("min > max: %v", err)
			}
		case mps < MinMaxPacketSize:
			if err != errHelloMaxPacket {
				t.Fatalf("max_packet_size %d: %v", mps, err)
			}
		default:
			if err != nil || got.MinVersion != lo || got.MaxVersion != hi || got.MaxPacketSize != mps ||
				got.IdleTimeoutMS != idle || got.Capabilities != caps || !bytes.Equal(got.Extensions, ext) {
				t.Fatalf("ParseHello = %+v, %v; want %+v", got, err, h)
			}
			if v, ok := Negotiate(got, got); ok != (hi > 0) || ok && v != hi {
				t.Fatalf("Negotiate with itself = %d, %v", v, ok)
			}
		}
		// Raw bytes: whatever parses re-encodes to the same bytes.
		if got, err := ParseHello(ext); err == nil && !bytes.Equal(AppendHello(nil, got), ext) {
			t.Fatalf("re-encoded %x, parsed %x", AppendHello(nil, got), ext)
		}
	})
}

func FuzzErrorPayload(f *testing.F) {
	f.Add(uint32(CodeProtocolError), "bad magic", []byte{1, 0, 0, 0, 'x'})
	f.Add(uint32(99), "\xff", []byte{1, 0, 0})
	f.Fuzz(func(t *testing.T, code uint32, msg string, raw []byte) {
		b := AppendErrorPayload(nil, Code(code), msg)
		c, m, err := ParseErrorPayload(b)
		if utf8.ValidString(msg) {
			if err != nil || c != Code(code) || string(m) != msg {
				t.Fatalf("ParseErrorPayload = %v %q %v; want %v %q", c, m, err, Code(code), msg)
			}
		} else if err != errErrorUTF8 {
			t.Fatalf("invalid UTF-8 accepted: %v", err)
		}
		if c, m, err := ParseErrorPayload(raw); err == nil && !bytes.Equal(AppendErrorPayload(nil, c, string(m)), raw) {
			t.Fatalf("raw %x did not round-trip", raw)
		}
	})
}

func FuzzGoAway(f *testing.F) {
	f.Add(uint64(7), uint32(CodeShuttingDown), "bye", AppendGoAwayPayload(nil, 1, CodeNone, ""))
	f.Add(uint64(0), uint32(0), "\xc0", []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, last uint64, code uint32, msg string, raw []byte) {
		b := AppendGoAwayPayload(nil, last, Code(code), msg)
		g, err := ParseGoAway(b)
		if utf8.ValidString(msg) {
			if err != nil || g.LastSeq != last || g.Code != Code(code) || string(g.Msg) != msg {
				t.Fatalf("ParseGoAway = %+v %v", g, err)
			}
		} else if err != errGoAwayUTF8 {
			t.Fatalf("invalid UTF-8 accepted: %v", err)
		}
		if g, err := ParseGoAway(raw); err == nil && !bytes.Equal(AppendGoAwayPayload(nil, g.LastSeq, g.Code, string(g.Msg)), raw) {
			t.Fatalf("raw %x did not round-trip", raw)
		}
	})
}

// FuzzParsePacket is the lean companion of FuzzParse: one Parse call per
// input, its verdict checked against the header's bytes read
// independently. FuzzParse's stream walk, header-alone re-parse,
// re-encoding and every-prefix loop make each of its inputs cost tens of
// Parse calls; this target spends its executions on Parse alone.
func FuzzParsePacket(f *testing.F) {
	for _, tc := range ruleCases() {
		f.Add(tc.b, tc.lim.MaxPacketSize, tc.lim.PayloadCRC, false)
	}
	f.Add(AppendPacket(nil, FrameHello, 0, 0, AppendHello(nil, validHello)), uint32(4096), false, true)
	f.Add(AppendPacket(nil, FrameRequest, FlagPayloadCRC, 1, []byte("checked")), uint32(0), true, false)
	f.Add([]byte("ZWIR"), uint32(0), false, false)
	f.Fuzz(func(t *testing.T, b []byte, max uint32, crc bool, fix bool) {
		b, lim := fuzzInput(b, max, crc, fix)
		p, n, err := Parse(b, lim)
		if msg := checkVerdict(b, lim, p, n, err); msg != "" {
			t.Fatalf("%s\nParse(%x, %+v) = %+v, %d, %v", msg, b, lim, p.Header, n, err)
		}
	})
}

// checkVerdict returns what is wrong with Parse(b, lim) = p, n, err, or "".
// The header rules are checked in the contract's order from b's bytes;
// a rejection past them must be a PROTOCOL_ERROR (FuzzParse and
// rules_test.go check which rule); whatever Parse accepts must keep every
// rule and be a well-formed view of b.
func checkVerdict(b []byte, lim Limits, p Packet, n int, err error) string {
	max := lim.MaxPacketSize
	if max == 0 {
		max = DefaultMaxPacketSize
	}
	if len(b) < HeaderSize {
		if err != ErrIncomplete || n != HeaderSize {
			return "short input: want ErrIncomplete, n = 24"
		}
		return ""
	}
	le := binary.LittleEndian
	size := le.Uint32(b[8:12])
	var want error
	switch {
	case le.Uint32(b[0:4]) != 0x5249575a: // "ZWIR"
		want = errBadMagic
	case le.Uint16(b[4:6]) != 1:
		want = errBadVersion
	case crc32.Checksum(b[:20], crc32.MakeTable(crc32.Castagnoli)) != le.Uint32(b[20:24]):
		want = errHeaderChecksum
	case size < HeaderSize:
		want = errSizeTooSmall
	case size > max:
		want = errFrameTooLarge
	}
	if want != nil {
		if err != want || n != 0 {
			return fmt.Sprintf("want %v, n = 0", want)
		}
		return ""
	}
	var e *Error
	switch {
	case err == ErrIncomplete:
		if n != int(size) || n <= len(b) {
			return "incomplete: n must be the header's size, beyond the input"
		}
	case errors.As(err, &e):
		if e.Code != CodeProtocolError || n != 0 {
			return "a rule past the header: want PROTOCOL_ERROR, n = 0"
		}
	case err != nil:
		return "an error that is not a *Error"
	default:
		flags := Flags(le.Uint16(b[6:8]))
		plen := int(size) - HeaderSize
		if flags&FlagPayloadCRC != 0 {
			plen -= TrailerSize
			if !lim.PayloadCRC || Checksum(b[HeaderSize:HeaderSize+plen]) != le.Uint32(b[size-4:size]) {
				return "PAYLOAD_CRC accepted without negotiation or with a wrong trailer"
			}
		}
		switch {
		case n != int(size) || n > len(b):
			return "n is not the header's size"
		case p.Header != Header{Version: 1, Flags: flags, Size: size, Seq: le.Uint64(b[12:20])}:
			return "the header does not match the bytes"
		case flags&reservedMask != 0 || flags.Type() > FrameGoAway:
			return "reserved bits or an unknown type accepted"
		case flags&FlagPayloadCRC != 0 && flags.Type() == FrameHello:
			return "PAYLOAD_CRC accepted on HELLO"
		case flags&FlagCopy != 0 && (flags.Type() == FrameResponse || flags.Type() == FramePong):
			return "COPY accepted on an answer"
		case (flags.Type() == FramePing || flags.Type() == FramePong) && size-HeaderSize > MaxPingPayload:
			return "a PING or PONG over 64 bytes accepted"
		case (flags.Type() == FrameHello || flags.Type() == FrameGoAway) && p.Seq != 0:
			return "HELLO or GOAWAY with a seq accepted"
		case len(p.Payload) != plen || cap(p.Payload) != plen:
			return "the payload's length or capacity is not the packet's"
		case plen > 0 && &p.Payload[0] != &b[HeaderSize]:
			return "the payload is not a view of the input"
		}
		if perr := payloadErr(p); perr != nil {
			return fmt.Sprintf("the payload parser rejects what Parse accepted: %v", perr)
		}
	}
	return ""
}
