// Package wire is the zerowire version-1 byte contract in code: the packed
// 24-byte header, frame types, flag bits, error codes, payload codecs, a
// zero-copy parser and appending encoders.
//
// It uses only the standard library, performs no I/O and no unsafe
// operations, so other implementations may import it.
//
// Ownership: a Packet returned by Parse is a view into the bytes given to
// Parse: it is valid until the bytes under it are reused; copy what must
// outlive them.
package wire

import (
	"errors"
	"hash/crc32"
	"strconv"
)

// Sizes and limits of version 1.
const (
	HeaderSize  = 24 // bytes in a packed header
	TrailerSize = 4  // bytes in a PAYLOAD_CRC trailer

	Version = 1 // the only version this package speaks

	// MinMaxPacketSize is the smallest max_packet_size a side may advertise,
	// and so the largest packet a client may send before the server's HELLO.
	MinMaxPacketSize = 4096
	// DefaultMaxPacketSize is the max_packet_size used when none is configured.
	DefaultMaxPacketSize = 1 << 20

	MaxPingPayload    = 64 // bytes after the header of a PING or PONG, trailer included
	MinHelloPayload   = 16 // fixed part of a HELLO payload
	MinErrorPayload   = 4  // u32 code
	MinGoAwayPayload  = 12 // u64 last seq, u32 code
	magicLE           = 0x5249575A
	headerCRCCoverage = 20
)

// Magic is the first four bytes of every packet.
const Magic = "ZWIR"

// castagnoli is the CRC-32C table; hash/crc32 uses the SSE4.2 instruction
// for it on amd64 and the CRC instructions on arm64.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksum returns the CRC-32C (Castagnoli) of b, as used by the header
// checksum and the PAYLOAD_CRC trailer.
func Checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// FrameType is the packet's frame type, flag bits 0-3.
type FrameType uint8

// Frame types of version 1. Values 8-15 are unknown and rejected.
const (
	FrameData     FrameType = 0
	FrameRequest  FrameType = 1
	FrameResponse FrameType = 2
	FrameError    FrameType = 3
	FramePing     FrameType = 4
	FramePong     FrameType = 5
	FrameHello    FrameType = 6
	FrameGoAway   FrameType = 7
)

var frameNames = [...]string{"DATA", "REQUEST", "RESPONSE", "ERROR", "PING", "PONG", "HELLO", "GOAWAY"}

// String returns the contract's name of t (DATA, REQUEST, ...), or
// UNKNOWN(n) for values 8-15, so logs read like the contract.
func (t FrameType) String() string {
	if int(t) < len(frameNames) {
		return frameNames[t]
	}
	return "UNKNOWN(" + strconv.Itoa(int(t)) + ")"
}

// Sequenced reports whether frames of type t carry the sender's next sequence
// number (DATA, REQUEST, PING), as opposed to answering another frame.
func (t FrameType) Sequenced() bool {
	return t == FrameData || t == FrameRequest || t == FramePing
}

// Flags is the header's 16-bit flags field: frame type and flag bits.
type Flags uint16

// Flag bits.
const (
	// FlagCopy asks the receiver to hand the payload to its application in
	// memory the application owns.
	FlagCopy Flags = 1 << 4
	// FlagPayloadCRC says the last 4 bytes of the packet are the CRC-32C of
	// the payload bytes before them.
	FlagPayloadCRC Flags = 1 << 5

	typeMask     Flags = 0x000f
	reservedMask Flags = 0xffc0
)

// Type returns the frame type in bits 0-3.
func (f Flags) Type() FrameType { return FrameType(f & typeMask) }

// MakeFlags combines a frame type with flag bits.
func MakeFlags(t FrameType, bits Flags) Flags { return Flags(t)&typeMask | bits&^typeMask }

// Code is an error code carried by ERROR and GOAWAY.
type Code uint32

// Error codes of version 1.
const (
	CodeNone               Code = 0
	CodeProtocolError      Code = 1
	CodeFrameTooLarge      Code = 2
	CodeUnsupportedVersion Code = 3
	CodeSlowConsumer       Code = 4
	CodeIdleTimeout        Code = 5
	CodeShuttingDown       Code = 6
	CodeApplication        Code = 7
	CodeAuthFailed         Code = 8
	CodeOverloaded         Code = 9
)

var codeNames = [...]string{"NONE", "PROTOCOL_ERROR", "FRAME_TOO_LARGE", "UNSUPPORTED_VERSION",
	"SLOW_CONSUMER", "IDLE_TIMEOUT", "SHUTTING_DOWN", "APPLICATION", "AUTH_FAILED", "OVERLOADED"}

// String returns the contract's name of c (PROTOCOL_ERROR, ...), or CODE(n)
// for a code version 1 does not define, so logs read like the contract.
func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "CODE(" + strconv.FormatUint(uint64(c), 10) + ")"
}

// Capability bits of a HELLO.
const (
	CapPayloadCRC uint32 = 1 << 0
)

// Error is a protocol error: the wire code a receiver sends in ERROR (or the
// code a peer sent), and a message. errors.Is matches two *Error values with
// the same Code, so errors.Is(err, &wire.Error{Code: wire.CodeFrameTooLarge})
// tests the code alone.
//
// The *Error values returned by this package's parsers are shared,
// preallocated package variables (so that rejecting a packet never
// allocates): they must not be modified.
type Error struct {
	Code Code
	Msg  string
}

// Error formats e as "zerowire: CODE: message".
func (e *Error) Error() string { return "zerowire: " + e.Code.String() + ": " + e.Msg }

// Is reports whether target is a non-nil *Error with the same Code, so that
// callers can test the code without depending on the message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t != nil && t.Code == e.Code
}

// ErrIncomplete is returned by Parse when b holds no complete packet yet and
// nothing seen so far breaks a rule; more bytes are needed.
var ErrIncomplete = errors.New("zerowire: incomplete packet")
