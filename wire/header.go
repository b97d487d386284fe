package wire

import (
	"encoding/binary"
	"slices"
)

// Header is a decoded header; the checksum is verified on decode and computed
// on encode, so it has no field of its own.
type Header struct {
	Version uint16 // 1 on every packet of a version-1 connection, HELLO included
	Flags   Flags  // frame type in bits 0-3, then COPY and PAYLOAD_CRC
	Size    uint32 // the whole packet: header, payload and trailer
	Seq     uint64
}

// Type returns the frame type carried in h.Flags.
func (h Header) Type() FrameType { return h.Flags.Type() }

// PutHeader writes h into b[:24], checksum included, for callers that
// reserve the header's room before they know the payload's length.
// It panics if len(b) < HeaderSize.
func PutHeader(b []byte, h Header) {
	_ = b[HeaderSize-1] // one bounds check for the whole header
	binary.LittleEndian.PutUint32(b[0:4], magicLE)
	binary.LittleEndian.PutUint16(b[4:6], h.Version)
	binary.LittleEndian.PutUint16(b[6:8], uint16(h.Flags))
	binary.LittleEndian.PutUint32(b[8:12], h.Size)
	binary.LittleEndian.PutUint64(b[12:20], h.Seq)
	var sum uint32
	if h.Version == Version {
		sum = headerChecksum(h.Flags, h.Size, h.Seq)
	} else {
		sum = Checksum(b[:headerCRCCoverage])
	}
	binary.LittleEndian.PutUint32(b[20:24], sum)
}

// AppendHeader appends the 24 bytes of h, checksum included, to dst.
func AppendHeader(dst []byte, h Header) []byte {
	dst, b := grow(dst, HeaderSize)
	PutHeader(b, h)
	return dst
}

// DecodeHeader decodes b[:24], checking only what any version must agree
// on: the magic and the checksum. Parse enforces the rest of the contract.
//
// It returns ErrIncomplete when len(b) < HeaderSize, and a *Error with code
// PROTOCOL_ERROR for a bad magic or checksum.
func DecodeHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, ErrIncomplete
	}
	b = b[:HeaderSize]
	if binary.LittleEndian.Uint32(b[0:4]) != magicLE {
		return Header{}, errBadMagic
	}
	h := Header{
		Version: binary.LittleEndian.Uint16(b[4:6]),
		Flags:   Flags(binary.LittleEndian.Uint16(b[6:8])),
		Size:    binary.LittleEndian.Uint32(b[8:12]),
		Seq:     binary.LittleEndian.Uint64(b[12:20]),
	}
	var sum uint32
	if h.Version == Version {
		sum = headerChecksum(h.Flags, h.Size, h.Seq)
	} else {
		sum = Checksum(b[:headerCRCCoverage])
	}
	if sum != binary.LittleEndian.Uint32(b[20:24]) {
		return Header{}, errHeaderChecksum
	}
	return h, nil
}

// grow extends dst by n bytes and returns it with the new n bytes as b, so
// encoders write in place instead of appending field by field; it allocates
// only when cap(dst) is too small.
func grow(dst []byte, n int) (out, b []byte) {
	l := len(dst)
	dst = slices.Grow(dst, n)[:l+n]
	return dst, dst[l:]
}

// The header checksum is on the path of every packet, and hash/crc32 costs
// more for 20 bytes than the rest of Parse: several calls deep, one of them
// indirect, before three dependent CRC32 instructions. CRC-32C over a fixed
// length is affine in the message bits, so the checksum of a version-1
// header is a constant (magic, version) XORed with one table entry per
// remaining byte, and a byte that is zero contributes nothing. The lookups
// are independent, so they overlap; a header of real traffic needs 8 of
// them, and the tables (14 KiB) stay in the L1 cache of a busy receiver.
// The tests check it against Checksum.
//
// headerTab[i][v] is what value v at header offset 6+i changes in the
// checksum of a version-1 header whose flags, size and seq are zero; that
// checksum itself is folded into headerTab[0], which every header uses.
var headerTab [headerCRCCoverage - 6][256]uint32

func init() {
	var h [headerCRCCoverage]byte
	binary.LittleEndian.PutUint32(h[0:4], magicLE)
	binary.LittleEndian.PutUint16(h[4:6], Version)
	base := Checksum(h[:])
	for i := range headerTab {
		t := &headerTab[i]
		for bit := range 8 {
			h[6+i] = 1 << bit
			t[1<<bit] = Checksum(h[:]) ^ base
		}
		h[6+i] = 0
		for v := 3; v < 256; v++ {
			t[v] = t[v&(v-1)] ^ t[v&-v] // linearity: split off the lowest bit
		}
	}
	for v := range headerTab[0] {
		headerTab[0][v] ^= base
	}
}

// headerChecksum returns the CRC-32C of the first 20 bytes of a version-1
// header with these fields, the same as Checksum over them.
func headerChecksum(flags Flags, size uint32, seq uint64) uint32 {
	if headerHighBytes(flags, size, seq) {
		return headerChecksumAll(flags, size, seq)
	}
	return headerChecksumLow(flags, size, seq)
}

// headerHighBytes reports whether a header has a non-zero byte that
// headerChecksumLow skips: reserved flag bits, a size of 16 MiB or more, a
// seq past 2^32. Real traffic has none.
func headerHighBytes(flags Flags, size uint32, seq uint64) bool {
	return uint32(flags>>8)|size>>24|uint32(seq>>32) != 0
}

// headerChecksumLow is headerChecksum for a header without high bytes,
// small enough (just) to be inlined into Parse. The XORs form a tree, not a chain,
// so the lookups' latencies overlap.
func headerChecksumLow(flags Flags, size uint32, seq uint64) uint32 {
	t := &headerTab
	return ((t[0][byte(flags)] ^ t[2][byte(size)]) ^ (t[3][byte(size>>8)] ^ t[4][byte(size>>16)])) ^
		((t[6][byte(seq)] ^ t[7][byte(seq>>8)]) ^ (t[8][byte(seq>>16)] ^ t[9][byte(seq>>24)]))
}

// headerChecksumAll is headerChecksum for any header.
func headerChecksumAll(flags Flags, size uint32, seq uint64) uint32 {
	t := &headerTab
	return (t[0][byte(flags)] ^ t[1][byte(flags>>8)]) ^
		((t[2][byte(size)] ^ t[3][byte(size>>8)]) ^ (t[4][byte(size>>16)] ^ t[5][byte(size>>24)])) ^
		((t[6][byte(seq)] ^ t[7][byte(seq>>8)]) ^ (t[8][byte(seq>>16)] ^ t[9][byte(seq>>24)])) ^
		((t[10][byte(seq>>32)] ^ t[11][byte(seq>>40)]) ^ (t[12][byte(seq>>48)] ^ t[13][byte(seq>>56)]))
}
