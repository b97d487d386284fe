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
	binary.LittleEndian.PutUint32(b[20:24], Checksum(b[:headerCRCCoverage]))
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
	if Checksum(b[:headerCRCCoverage]) != binary.LittleEndian.Uint32(b[20:24]) {
		return Header{}, errHeaderChecksum
	}
	return Header{
		Version: binary.LittleEndian.Uint16(b[4:6]),
		Flags:   Flags(binary.LittleEndian.Uint16(b[6:8])),
		Size:    binary.LittleEndian.Uint32(b[8:12]),
		Seq:     binary.LittleEndian.Uint64(b[12:20]),
	}, nil
}

// grow extends dst by n bytes and returns it with the new n bytes as b, so
// encoders write in place instead of appending field by field; it allocates
// only when cap(dst) is too small.
func grow(dst []byte, n int) (out, b []byte) {
	l := len(dst)
	dst = slices.Grow(dst, n)[:l+n]
	return dst, dst[l:]
}
