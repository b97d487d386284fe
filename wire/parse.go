package wire

import (
	"encoding/binary"
	"math"
	"strconv"
	"unicode/utf8"
)

// The errors of the rules Parse and the payload parsers enforce, one per rule
// so a log names the rule that was broken. They are preallocated so that
// rejecting a packet never allocates; like every *Error this package
// returns, they must not be modified.
var (
	// Packet rules, in the contract's order.
	errBadMagic         = protocolError("bad magic")
	errBadVersion       = protocolError("version is not 1")
	errHeaderChecksum   = protocolError("header checksum mismatch")
	errSizeTooSmall     = protocolError("size below the 24-byte header")
	errFrameTooLarge    = &Error{Code: CodeFrameTooLarge, Msg: "size exceeds the max packet size"}
	errUnknownType      = protocolError("unknown frame type")
	errReservedFlags    = protocolError("reserved flag bit set")
	errTrailerTooShort  = protocolError("PAYLOAD_CRC set and size below 28")
	errTrailerMismatch  = protocolError("payload CRC mismatch")
	errCRCOnHello       = protocolError("PAYLOAD_CRC set on HELLO")
	errCRCNotNegotiated = protocolError("PAYLOAD_CRC set but not negotiated")
	errCopyOnAnswer     = protocolError("COPY set on RESPONSE or PONG")
	errPingTooLarge     = protocolError("PING or PONG with more than 64 bytes after the header")
	errErrorTooShort    = protocolError("ERROR payload shorter than 4 bytes")
	errErrorUTF8        = protocolError("ERROR message not valid UTF-8")
	errGoAwayTooShort   = protocolError("GOAWAY payload shorter than 12 bytes")
	errGoAwayUTF8       = protocolError("GOAWAY message not valid UTF-8")
	errGoAwaySeq        = protocolError("GOAWAY seq not 0")
	errHelloSeq         = protocolError("HELLO seq not 0")
	errHelloTooShort    = protocolError("HELLO payload shorter than 16 bytes")
	errHelloExtensions  = protocolError("HELLO extensions do not exactly fill the payload")
	errHelloVersions    = protocolError("HELLO min_version exceeds max_version")
	errHelloMaxPacket   = protocolError("HELLO max_packet_size below 4096")
	errExtension        = protocolError("truncated extension")
	errSeqOrder         = protocolError("seq not one more than the previous one")
)

func protocolError(msg string) *Error { return &Error{Code: CodeProtocolError, Msg: msg} }

// Packet is a parsed packet. It is a view: Payload holds the application
// bytes (the PAYLOAD_CRC trailer excluded) and aliases the bytes given to
// Parse. A Packet is valid until the bytes under it are reused.
type Packet struct {
	Header
	Payload []byte
}

// Limits is the receiver's side of the rules Parse enforces: what this side
// advertised and negotiated in the handshake.
type Limits struct {
	MaxPacketSize uint32 // the receiver's advertised max packet size; 0 means DefaultMaxPacketSize
	PayloadCRC    bool   // both HELLOs advertised CapPayloadCRC; when false any PAYLOAD_CRC is a protocol error
}

// Parse parses the packet at the start of b and enforces every rule of the
// contract that needs no connection state: the header, the flags, the
// trailer, and the payload layout of each frame type. Sequence order, the
// handshake order and the correlation of answers to requests are the
// caller's (see SeqChecker).
//
// On success n is p.Size, the bytes consumed. When b holds no complete
// packet yet, err is ErrIncomplete and n is the packet's total size if the
// header is already known, else HeaderSize: the bytes to wait for.
// A header that breaks a rule is rejected as soon as its 24 bytes are in,
// before the payload arrives. A broken rule returns a *Error, n = 0:
// FRAME_TOO_LARGE when the size exceeds lim's max packet size, otherwise
// PROTOCOL_ERROR. Where several rules are broken, the contract's order
// decides the code. The *Error values are shared: do not modify them.
//
// Parse never allocates and never reads past b. p is valid until the bytes
// under it are reused.
func Parse(b []byte, lim Limits) (p Packet, n int, err error) {
	if len(b) < HeaderSize {
		return Packet{}, HeaderSize, ErrIncomplete
	}
	hb := b[:HeaderSize]
	w0 := binary.LittleEndian.Uint64(hb[0:8]) // magic, version, flags
	flags := Flags(w0 >> 48)
	size := binary.LittleEndian.Uint32(hb[8:12])
	seq := binary.LittleEndian.Uint64(hb[12:20])
	// Rules 1-4 for real traffic in one branch, with no call on the way;
	// checkHeader sorts out which rule failed, or finds the header valid
	// after all when it has bytes headerChecksumLow skips.
	if w0&(1<<48-1) != magicLE|Version<<32 ||
		headerHighBytes(flags, size, seq) ||
		headerChecksumLow(flags, size, seq) != binary.LittleEndian.Uint32(hb[20:24]) ||
		size < HeaderSize {
		if err := checkHeader(hb); err != nil {
			return Packet{}, 0, err
		}
	}
	max := lim.MaxPacketSize
	if max == 0 {
		max = DefaultMaxPacketSize
	}
	if strconv.IntSize == 32 && max > math.MaxInt32 {
		max = math.MaxInt32 // n is an int: a larger packet could not be returned, nor held in memory
	}
	if size > max {
		return Packet{}, 0, errFrameTooLarge
	}
	// DATA and REQUEST without PAYLOAD_CRC, the bulk of the traffic, have
	// no more rules to check; anything else takes the slow path.
	slow := flags&^(FlagCopy|Flags(FrameRequest)) != 0
	if slow {
		if err := checkFlags(flags, size, seq, lim); err != nil {
			return Packet{}, 0, err
		}
	}
	if len(b) < int(size) {
		return Packet{}, int(size), ErrIncomplete
	}
	payload := b[HeaderSize:size:size] // capped: an append by the caller must not overwrite the next packet
	if slow {
		if payload, err = checkPayload(flags, payload); err != nil {
			return Packet{}, 0, err
		}
	}
	return Packet{
		Header:  Header{Version: Version, Flags: flags, Size: size, Seq: seq},
		Payload: payload,
	}, int(size), nil
}

// checkHeader returns the error of the first of rules 1-4 (magic, version,
// checksum, size) that hb breaks, or nil.
func checkHeader(hb []byte) error {
	switch {
	case binary.LittleEndian.Uint32(hb[0:4]) != magicLE:
		return errBadMagic
	case binary.LittleEndian.Uint16(hb[4:6]) != Version:
		return errBadVersion
	case headerChecksumAll(Flags(binary.LittleEndian.Uint16(hb[6:8])), binary.LittleEndian.Uint32(hb[8:12]),
		binary.LittleEndian.Uint64(hb[12:20])) != binary.LittleEndian.Uint32(hb[20:24]):
		return errHeaderChecksum
	case binary.LittleEndian.Uint32(hb[8:12]) < HeaderSize:
		return errSizeTooSmall
	}
	return nil
}

// checkFlags enforces the rules after FRAME_TOO_LARGE that need only the
// header: frame type, reserved bits, PAYLOAD_CRC, and the frame-type rules,
// so that Parse rejects such a packet before its payload has arrived.
func checkFlags(flags Flags, size uint32, seq uint64, lim Limits) error {
	t := flags.Type()
	if t > FrameGoAway {
		return errUnknownType
	}
	if flags&reservedMask != 0 {
		return errReservedFlags
	}
	// plen is the application payload's length: the minimum payload
	// lengths of the contract do not count the trailer.
	plen := size - HeaderSize
	if flags&FlagPayloadCRC != 0 {
		if size < HeaderSize+TrailerSize {
			return errTrailerTooShort
		}
		if t == FrameHello {
			return errCRCOnHello
		}
		if !lim.PayloadCRC {
			return errCRCNotNegotiated
		}
		plen -= TrailerSize
	}
	return checkFrameHeader(t, flags, size, plen, seq)
}

// checkPayload checks the trailer and the payload layouts of a complete
// packet whose header passed checkFlags, and returns the application
// payload: the payload region without the trailer.
func checkPayload(flags Flags, payload []byte) ([]byte, error) {
	if flags&FlagPayloadCRC != 0 {
		end := len(payload) - TrailerSize
		if Checksum(payload[:end]) != binary.LittleEndian.Uint32(payload[end:]) {
			return nil, errTrailerMismatch
		}
		payload = payload[:end:end]
	}
	switch flags.Type() {
	case FrameError:
		if !utf8.Valid(payload[MinErrorPayload:]) {
			return nil, errErrorUTF8
		}
	case FrameGoAway:
		if !utf8.Valid(payload[MinGoAwayPayload:]) {
			return nil, errGoAwayUTF8
		}
	case FrameHello:
		if _, err := ParseHello(payload); err != nil {
			return nil, err
		}
	}
	return payload, nil
}

// checkFrameHeader enforces the rules of the frame-type sections that need
// only the header. All of them are PROTOCOL_ERROR, so their order among
// themselves decides only the message.
func checkFrameHeader(t FrameType, flags Flags, size, plen uint32, seq uint64) error {
	switch t {
	case FrameResponse:
		if flags&FlagCopy != 0 {
			return errCopyOnAnswer
		}
	case FrameError:
		if plen < MinErrorPayload {
			return errErrorTooShort
		}
	case FramePing:
		if size-HeaderSize > MaxPingPayload {
			return errPingTooLarge
		}
	case FramePong:
		// The contract bounds only PING; a PONG carries a PING's payload
		// unchanged, so a larger one can answer no valid PING.
		if flags&FlagCopy != 0 {
			return errCopyOnAnswer
		}
		if size-HeaderSize > MaxPingPayload {
			return errPingTooLarge
		}
	case FrameHello:
		if seq != 0 {
			return errHelloSeq
		}
		if plen < MinHelloPayload {
			return errHelloTooShort
		}
	case FrameGoAway:
		if seq != 0 {
			return errGoAwaySeq
		}
		if plen < MinGoAwayPayload {
			return errGoAwayTooShort
		}
	}
	return nil
}
