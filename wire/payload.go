package wire

import (
	"encoding/binary"
	"strconv"
	"unicode/utf8"
)

// Hello is the payload of a HELLO, the first packet each side sends. A Hello
// returned by ParseHello is a view: Extensions aliases the parsed payload.
// It is valid until the bytes under it are reused.
type Hello struct {
	MinVersion    uint16 // lowest version the sender speaks
	MaxVersion    uint16 // highest version the sender speaks
	MaxPacketSize uint32 // largest packet the sender accepts, >= MinMaxPacketSize
	IdleTimeoutMS uint32 // the sender closes a connection idle this long; 0 = never
	// Capabilities is kept as received: bits other than CapPayloadCRC are
	// ignored on receipt, and keeping them makes a parsed Hello re-encode
	// to the same bytes.
	Capabilities uint32
	// Extensions is the raw extension bytes (u16 type, u16 length, value,
	// repeated); walk them with NextExtension and build them with
	// AppendExtension.
	Extensions []byte
}

// AppendHello appends the payload of a HELLO carrying h to dst (the payload
// only: AppendPacket with FrameHello and seq 0 frames it). It does not check
// h: the sender is trusted to respect the contract.
func AppendHello(dst []byte, h Hello) []byte {
	dst, b := grow(dst, MinHelloPayload)
	binary.LittleEndian.PutUint16(b[0:2], h.MinVersion)
	binary.LittleEndian.PutUint16(b[2:4], h.MaxVersion)
	binary.LittleEndian.PutUint32(b[4:8], h.MaxPacketSize)
	binary.LittleEndian.PutUint32(b[8:12], h.IdleTimeoutMS)
	binary.LittleEndian.PutUint32(b[12:16], h.Capabilities)
	return append(dst, h.Extensions...)
}

// ParseHello parses a HELLO payload (trailer excluded) and enforces its
// layout rules in the contract's order. It returns a *Error with code
// PROTOCOL_ERROR when the payload is shorter than 16 bytes, its extensions
// do not exactly fill the rest, min_version exceeds max_version, or
// max_packet_size is below 4096; a HELLO breaking them is rejected even
// when its range shares no version with ours. The Hello is valid until the
// bytes under it are reused.
func ParseHello(p []byte) (Hello, error) {
	if len(p) < MinHelloPayload {
		return Hello{}, errHelloTooShort
	}
	ext := p[MinHelloPayload:len(p):len(p)]
	for rest := ext; len(rest) > 0; {
		var err error
		if _, rest, err = NextExtension(rest); err != nil {
			return Hello{}, errHelloExtensions
		}
	}
	h := Hello{
		MinVersion:    binary.LittleEndian.Uint16(p[0:2]),
		MaxVersion:    binary.LittleEndian.Uint16(p[2:4]),
		MaxPacketSize: binary.LittleEndian.Uint32(p[4:8]),
		IdleTimeoutMS: binary.LittleEndian.Uint32(p[8:12]),
		Capabilities:  binary.LittleEndian.Uint32(p[12:16]),
		Extensions:    ext,
	}
	if h.MinVersion > h.MaxVersion {
		return Hello{}, errHelloVersions
	}
	if h.MaxPacketSize < MinMaxPacketSize {
		return Hello{}, errHelloMaxPacket
	}
	return h, nil
}

// Extension is one HELLO extension. Unknown types are to be ignored, not
// rejected, so that a later version can add extensions a version-1 peer
// skips. An Extension returned by NextExtension is a view: Value aliases the
// extension bytes. It is valid until the bytes under it are reused.
type Extension struct {
	Type  uint16
	Value []byte
}

// AppendExtension appends one extension (u16 type, u16 length, value) to
// dst. It panics if value is longer than 65535 bytes, which the length
// field cannot express.
func AppendExtension(dst []byte, typ uint16, value []byte) []byte {
	if len(value) > 0xffff {
		panic("zerowire: extension value of " + strconv.Itoa(len(value)) + " bytes exceeds 65535")
	}
	dst = binary.LittleEndian.AppendUint16(dst, typ)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(value)))
	return append(dst, value...)
}

// NextExtension splits the first extension off b, the extension bytes of a
// HELLO; call it while len(rest) > 0. It returns a *Error with code
// PROTOCOL_ERROR when b is too short for the extension's header or its
// value. ext is valid until the bytes under it are reused.
func NextExtension(b []byte) (ext Extension, rest []byte, err error) {
	if len(b) < 4 {
		return Extension{}, b, errExtension
	}
	end := 4 + int(binary.LittleEndian.Uint16(b[2:4]))
	if len(b) < end {
		return Extension{}, b, errExtension
	}
	return Extension{
		Type:  binary.LittleEndian.Uint16(b[0:2]),
		Value: b[4:end:end],
	}, b[end:], nil
}

// Negotiate returns the version both sides speak: the highest one in both
// HELLOs' ranges. ok is false when the ranges share none; the server then
// sends its HELLO, ERROR UNSUPPORTED_VERSION, and closes. Version 0 does not
// exist, so a common range of only 0 is no agreement.
func Negotiate(local, peer Hello) (version uint16, ok bool) {
	lo := max(local.MinVersion, peer.MinVersion)
	hi := min(local.MaxVersion, peer.MaxVersion)
	if lo > hi || hi == 0 {
		return 0, false
	}
	return hi, true
}

// AppendErrorPayload appends the payload of an ERROR (u32 code, then the
// message) to dst. msg must be valid UTF-8; it is not checked.
func AppendErrorPayload(dst []byte, code Code, msg string) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(code))
	return append(dst, msg...)
}

// ParseErrorPayload parses an ERROR payload (trailer excluded). msg aliases
// p and is valid until the bytes under it are reused. It returns a *Error
// with code PROTOCOL_ERROR when p is shorter than 4 bytes or the message is
// not valid UTF-8. Codes version 1 does not define are returned as they
// are, for the caller to treat as an unknown failure.
func ParseErrorPayload(p []byte) (code Code, msg []byte, err error) {
	if len(p) < MinErrorPayload {
		return 0, nil, errErrorTooShort
	}
	msg = p[MinErrorPayload:len(p):len(p)]
	if !utf8.Valid(msg) {
		return 0, nil, errErrorUTF8
	}
	return Code(binary.LittleEndian.Uint32(p[0:4])), msg, nil
}

// GoAway is the payload of a GOAWAY: the sender is closing on purpose. A
// GoAway returned by ParseGoAway is a view: Msg aliases the parsed payload.
// It is valid until the bytes under it are reused.
type GoAway struct {
	// LastSeq is the highest DATA/REQUEST/PING seq the sender received
	// before deciding to close: everything up to it is answered, anything
	// after it was discarded unprocessed and may be retried elsewhere.
	LastSeq uint64
	Code    Code
	Msg     []byte
}

// AppendGoAwayPayload appends the payload of a GOAWAY (u64 last seq, u32
// code, message) to dst. msg must be valid UTF-8; it is not checked.
func AppendGoAwayPayload(dst []byte, lastSeq uint64, code Code, msg string) []byte {
	dst, b := grow(dst, MinGoAwayPayload)
	binary.LittleEndian.PutUint64(b[0:8], lastSeq)
	binary.LittleEndian.PutUint32(b[8:12], uint32(code))
	return append(dst, msg...)
}

// ParseGoAway parses a GOAWAY payload (trailer excluded). It returns a
// *Error with code PROTOCOL_ERROR when p is shorter than 12 bytes or the
// message is not valid UTF-8. The GoAway is valid until the bytes under it
// are reused.
func ParseGoAway(p []byte) (GoAway, error) {
	if len(p) < MinGoAwayPayload {
		return GoAway{}, errGoAwayTooShort
	}
	msg := p[MinGoAwayPayload:len(p):len(p)]
	if !utf8.Valid(msg) {
		return GoAway{}, errGoAwayUTF8
	}
	return GoAway{
		LastSeq: binary.LittleEndian.Uint64(p[0:8]),
		Code:    Code(binary.LittleEndian.Uint32(p[8:12])),
		Msg:     msg,
	}, nil
}
