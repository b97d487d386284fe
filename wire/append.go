package wire

import (
	"encoding/binary"
	"math"
	"strconv"
)

// PacketSize returns the size of a packet carrying payloadLen application
// bytes: the header, the payload, and the trailer when flags has
// FlagPayloadCRC. It is the number a sender compares with the peer's
// max_packet_size.
func PacketSize(payloadLen int, flags Flags) int {
	n := HeaderSize + payloadLen
	if flags&FlagPayloadCRC != 0 {
		n += TrailerSize
	}
	return n
}

// AppendPacket appends a whole packet to dst: the header, payload, and the
// trailer when flags has FlagPayloadCRC. The type bits of flags are ignored
// (t decides); the other bits are written as given, so it can also build the
// bad packets tests need. The encoders do not check the contract's rules:
// the sender is trusted to respect them.
//
// It panics if the packet would not fit the 32-bit size field.
func AppendPacket(dst []byte, t FrameType, flags Flags, seq uint64, payload []byte) []byte {
	h := packetHeader(t, flags, seq, len(payload))
	dst, b := grow(dst, int(h.Size))
	PutHeader(b, h)
	n := copy(b[HeaderSize:], payload)
	if h.Flags&FlagPayloadCRC != 0 {
		binary.LittleEndian.PutUint32(b[HeaderSize+n:], Checksum(payload))
	}
	return dst
}

// AppendPacketHeader appends only the 24-byte header of the packet
// AppendPacket would build for a payload of payloadLen bytes (its size
// counts the trailer when flags has FlagPayloadCRC), so that the payload can
// be sent from where it lies with vectored I/O instead of being copied. The
// caller sends the payload after it, then AppendTrailer's 4 bytes if
// FlagPayloadCRC is set.
//
// It panics if the packet would not fit the 32-bit size field.
func AppendPacketHeader(dst []byte, t FrameType, flags Flags, seq uint64, payloadLen int) []byte {
	return AppendHeader(dst, packetHeader(t, flags, seq, payloadLen))
}

// AppendTrailer appends the PAYLOAD_CRC trailer of payload (the application
// bytes, not the header) to dst: its CRC-32C, little-endian.
func AppendTrailer(dst []byte, payload []byte) []byte {
	return binary.LittleEndian.AppendUint32(dst, Checksum(payload))
}

// packetHeader builds the header of a version-1 packet. A size that does not
// fit the header is a bug in the caller, which must respect the peer's
// max_packet_size anyway, so it panics rather than send a corrupt stream.
func packetHeader(t FrameType, flags Flags, seq uint64, payloadLen int) Header {
	flags = MakeFlags(t, flags)
	size := PacketSize(payloadLen, flags)
	if payloadLen < 0 || size < HeaderSize || uint64(size) > math.MaxUint32 {
		panic("zerowire: payload length " + strconv.Itoa(payloadLen) + " does not fit the 32-bit size field")
	}
	return Header{Version: Version, Flags: flags, Size: uint32(size), Seq: seq}
}
