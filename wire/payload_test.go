package wire

import (
	"bytes"
	"encoding/hex"
	"strconv"
	"testing"
)

func TestHello(t *testing.T) {
	h := Hello{MinVersion: 1, MaxVersion: 3, MaxPacketSize: 65536, IdleTimeoutMS: 30000, Capabilities: CapPayloadCRC | 1<<7}
	h.Extensions = AppendExtension(AppendExtension(nil, 0x0102, []byte("ab")), 7, nil)
	b := AppendHello(nil, h)
	want := "0100" + "0300" + "00000100" + "30750000" + "81000000" + "0201" + "0200" + "6162" + "0700" + "0000"
	if got := hex.EncodeToString(b); got != want {
		t.Fatalf("AppendHello = %s\nwant          %s", got, want)
	}
	got, err := ParseHello(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.MinVersion != 1 || got.MaxVersion != 3 || got.MaxPacketSize != 65536 || got.IdleTimeoutMS != 30000 ||
		got.Capabilities != CapPayloadCRC|1<<7 || !bytes.Equal(got.Extensions, h.Extensions) {
		t.Fatalf("ParseHello = %+v, want %+v", got, h)
	}
	if &got.Extensions[0] != &b[16] {
		t.Error("Extensions is a copy, want a view")
	}

	var exts []Extension
	for rest := got.Extensions; len(rest) > 0; {
		var e Extension
		if e, rest, err = NextExtension(rest); err != nil {
			t.Fatal(err)
		}
		exts = append(exts, e)
	}
	if len(exts) != 2 || exts[0].Type != 0x0102 || string(exts[0].Value) != "ab" || exts[1].Type != 7 || len(exts[1].Value) != 0 {
		t.Fatalf("extensions = %+v", exts)
	}

	for _, tc := range []struct {
		name string
		b    []byte
		want *Error
	}{
		{"empty", nil, errHelloTooShort},
		{"15 bytes", b[:15], errHelloTooShort},
		{"no extensions", b[:16], nil},
		{"cut extension header", b[:19], errHelloExtensions},
		{"cut extension value", b[:21], errHelloExtensions},
		{"extensions before versions", append(AppendHello(nil, Hello{MinVersion: 2, MaxVersion: 1}), 0), errHelloExtensions},
		{"min > max", AppendHello(nil, Hello{MinVersion: 2, MaxVersion: 1, MaxPacketSize: 4096}), errHelloVersions},
		{"versions before max_packet_size", AppendHello(nil, Hello{MinVersion: 2, MaxVersion: 1}), errHelloVersions},
		{"max_packet_size 4095", AppendHello(nil, Hello{MaxPacketSize: 4095}), errHelloMaxPacket},
		{"max_packet_size 4096", AppendHello(nil, Hello{MaxPacketSize: 4096}), nil},
	} {
		if _, err := ParseHello(tc.b); (tc.want == nil && err != nil) || (tc.want != nil && err != tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestExtension(t *testing.T) {
	long := make([]byte, 0xffff)
	b := AppendExtension([]byte{9}, 0xabcd, long)
	if len(b) != 1+4+0xffff || b[1] != 0xcd || b[2] != 0xab || b[3] != 0xff || b[4] != 0xff {
		t.Fatalf("AppendExtension header % x", b[:5])
	}
	e, rest, err := NextExtension(b[1:])
	if err != nil || e.Type != 0xabcd || len(e.Value) != 0xffff || len(rest) != 0 {
		t.Fatalf("NextExtension = %d %d %d %v", e.Type, len(e.Value), len(rest), err)
	}
	for _, bad := range [][]byte{nil, {1}, {1, 0, 0}, {1, 0, 1, 0}, {1, 0, 5, 0, 1, 2, 3, 4}} {
		if _, _, err := NextExtension(bad); err != errExtension {
			t.Errorf("NextExtension(% x) err %v", bad, err)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("AppendExtension with 65536 bytes did not panic")
		}
	}()
	AppendExtension(nil, 1, make([]byte, 0x10000))
}

func TestNegotiate(t *testing.T) {
	for _, tc := range []struct {
		l, p   [2]uint16
		v      uint16
		agreed bool
	}{
		{[2]uint16{1, 1}, [2]uint16{1, 1}, 1, true},
		{[2]uint16{1, 3}, [2]uint16{2, 5}, 3, true},
		{[2]uint16{2, 5}, [2]uint16{1, 3}, 3, true},
		{[2]uint16{1, 5}, [2]uint16{2, 2}, 2, true},
		{[2]uint16{1, 1}, [2]uint16{2, 3}, 0, false},
		{[2]uint16{4, 9}, [2]uint16{1, 3}, 0, false},
		{[2]uint16{0, 0}, [2]uint16{0, 0}, 0, false},
	} {
		v, ok := Negotiate(Hello{MinVersion: tc.l[0], MaxVersion: tc.l[1]}, Hello{MinVersion: tc.p[0], MaxVersion: tc.p[1]})
		if v != tc.v || ok != tc.agreed {
			t.Errorf("Negotiate(%v, %v) = %d, %v; want %d, %v", tc.l, tc.p, v, ok, tc.v, tc.agreed)
		}
	}
}

func TestErrorPayload(t *testing.T) {
	b := AppendErrorPayload([]byte{0xee}, CodeFrameTooLarge, "too big ✗")
	if got, want := hex.EncodeToString(b[:5]), "ee02000000"; got != want {
		t.Fatalf("AppendErrorPayload = %s, want %s", got, want)
	}
	code, msg, err := ParseErrorPayload(b[1:])
	if err != nil || code != CodeFrameTooLarge || string(msg) != "too big ✗" {
		t.Fatalf("ParseErrorPayload = %v %q %v", code, msg, err)
	}
	if code, msg, err := ParseErrorPayload([]byte{99, 0, 0, 0}); err != nil || code != 99 || len(msg) != 0 {
		t.Fatalf("unknown code: %v %q %v", code, msg, err)
	}
	if _, _, err := ParseErrorPayload([]byte{1, 0, 0}); err != errErrorTooShort {
		t.Fatalf("short: %v", err)
	}
	if _, _, err := ParseErrorPayload([]byte{1, 0, 0, 0, 0xed, 0xa0, 0x80}); err != errErrorUTF8 { // a surrogate
		t.Fatalf("surrogate: %v", err)
	}
}

func TestGoAway(t *testing.T) {
	b := AppendGoAwayPayload(nil, 0x0102030405060708, CodeShuttingDown, "bye")
	if got, want := hex.EncodeToString(b), "0807060504030201"+"06000000"+"627965"; got != want {
		t.Fatalf("AppendGoAwayPayload = %s, want %s", got, want)
	}
	g, err := ParseGoAway(b)
	if err != nil || g.LastSeq != 0x0102030405060708 || g.Code != CodeShuttingDown || string(g.Msg) != "bye" {
		t.Fatalf("ParseGoAway = %+v, %v", g, err)
	}
	if _, err := ParseGoAway(b[:11]); err != errGoAwayTooShort {
		t.Fatalf("short: %v", err)
	}
	if _, err := ParseGoAway(append(b[:12:12], 0xff)); err != errGoAwayUTF8 {
		t.Fatalf("bad UTF-8: %v", err)
	}
}

func TestSeqChecker(t *testing.T) {
	var s SeqChecker
	if s.Last() != 0 {
		t.Fatal("zero value Last != 0")
	}
	for _, bad := range []uint64{0, 2, ^uint64(0)} {
		if err := s.Check(bad); err != errSeqOrder {
			t.Fatalf("Check(%d) first = %v", bad, err)
		}
	}
	for seq := uint64(1); seq <= 100; seq++ {
		if err := s.Check(seq); err != nil {
			t.Fatalf("Check(%d) = %v", seq, err)
		}
	}
	for _, bad := range []uint64{100, 99, 102, 0} {
		if err := s.Check(bad); err != errSeqOrder || s.Last() != 100 {
			t.Fatalf("Check(%d) = %v, Last %d", bad, err, s.Last())
		}
	}
	if err := s.Check(101); err != nil || s.Last() != 101 {
		t.Fatalf("Check(101) = %v, Last %d", err, s.Last())
	}
	s = SeqChecker{last: ^uint64(0)}
	if err := s.Check(0); err == nil {
		t.Fatal("seq wrapped to 0")
	}
}

func TestAppendPacketPanics(t *testing.T) {
	if strconv.IntSize == 32 {
		t.Skip("a 4 GiB payload length does not fit an int")
	}
	var top uint64 = 1 << 32 // a variable, so that 32-bit builds compile
	fits := int(top) - HeaderSize - 1
	for _, tc := range []struct {
		n     int
		flags Flags
	}{{-1, 0}, {fits + 1, 0}, {fits - TrailerSize + 1, FlagPayloadCRC}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("AppendPacketHeader(len %d, flags %#x) did not panic", tc.n, tc.flags)
				}
			}()
			AppendPacketHeader(nil, FrameData, tc.flags, 1, tc.n)
		}()
	}
	if got := AppendPacketHeader(nil, FrameData, 0, 1, fits); len(got) != HeaderSize {
		t.Fatal("largest packet rejected")
	}
	if got := AppendPacketHeader(nil, FrameData, FlagPayloadCRC, 1, fits-TrailerSize); len(got) != HeaderSize {
		t.Fatal("largest packet with trailer rejected")
	}
}
