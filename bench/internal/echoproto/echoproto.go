// Package echoproto is the server side of the echo service of wire-v1.md,
// with no I/O: the handshake, sequence checking, and the bytes to send back.
//
// Every peer server of the benchmark (gnet, netpoll, Go's net) runs this
// same state machine, so that they differ only in how bytes move between
// the socket and memory, which is what the comparison measures.
//
// A Session works on one packet at a time, in bytes the caller holds
// contiguously: each I/O layer has its own way of getting a whole packet
// into one slice (gnet's Peek, netpoll's Next, bufio's Peek), and its own way
// of sending an answer (copied into a buffer, or referenced for vectored
// I/O), so Session hands back the answer's header and the payload to send
// after it separately and leaves that choice to the caller.
package echoproto

import (
	"errors"
	"sync/atomic"

	"github.com/zerowire/zerowire/wire"
)

// Hello is what every peer server advertises: version 1 only, the default
// 1 MiB max packet size, no idle timeout, and PAYLOAD_CRC understood.
var Hello = wire.Hello{
	MinVersion:    wire.Version,
	MaxVersion:    wire.Version,
	MaxPacketSize: wire.DefaultMaxPacketSize,
	IdleTimeoutMS: 0,
	Capabilities:  wire.CapPayloadCRC,
}

// helloPacket is the server's whole HELLO, built once: it is the same bytes
// on every connection.
var helloPacket = wire.AppendPacket(nil, wire.FrameHello, 0, 0, wire.AppendHello(nil, Hello))

// ErrPeerClosing reports that the client ended the connection on purpose
// (GOAWAY, or ERROR with seq 0). Everything it sent before has been
// answered: the caller sends what it has, then closes.
var ErrPeerClosing = errors.New("echoproto: the client is closing the connection")

// Rules of the contract that need connection state, which wire.Parse leaves
// to its caller. Shared like wire's own errors, so rejecting never allocates.
var (
	errFirstNotHello = &wire.Error{Code: wire.CodeProtocolError, Msg: "first packet is not HELLO"}
	errSecondHello   = &wire.Error{Code: wire.CodeProtocolError, Msg: "second HELLO"}
	errNoVersion     = &wire.Error{Code: wire.CodeUnsupportedVersion, Msg: "no common version"}
	errUnsolicited   = &wire.Error{Code: wire.CodeProtocolError, Msg: "RESPONSE, PONG or ERROR answers nothing this server sent"}
)

const msgResponseTooLarge = "RESPONSE would exceed your max_packet_size"

var dataFramesConsumed atomic.Uint64

// Session is the protocol state of one server-side connection. The zero
// value is a connection on which nothing has arrived yet. It is not safe
// for concurrent use: the goroutine serving the connection owns it.
type Session struct {
	lim     wire.Limits
	peerMax uint32 // the client's max_packet_size: no answer may exceed it
	greeted bool   // the client's HELLO has arrived and ours has been sent
	closed  bool   // an error or the client's goodbye ended the session
	seq     wire.SeqChecker
	data    uint64 // DATA frames consumed, added to the process total by End
}

// Handle processes the packet at the start of b. It returns answer, which
// is out with the reply's first bytes appended, and body, to be sent right
// after them: the caller sends answer[len(out):], then body, before anything
// a later call appends. body is a view into b (the echoed payload, trailer
// included), valid as long as b is, and nil when there is nothing to echo.
//
// n and err tell the caller what to do next:
//   - err == nil: the packet was n bytes long; drop them and go on.
//   - err == wire.ErrIncomplete: b does not hold a whole packet yet; call
//     again when at least n bytes (counted from the start of b) are there.
//   - err == ErrPeerClosing: send answer, then close.
//   - err is a *wire.Error: the client broke the contract. answer ends with
//     the ERROR to send (preceded by this server's HELLO if the handshake
//     had not happened yet); send it, then close.
//
// After an error other than wire.ErrIncomplete the session is over and
// Handle must not be called again.
func (s *Session) Handle(b, out []byte) (n int, answer, body []byte, err error) {
	if s.closed {
		panic("echoproto: Handle called after the session ended")
	}
	p, n, err := wire.Parse(b, s.lim)
	if err != nil {
		if err == wire.ErrIncomplete {
			return n, out, nil, err
		}
		return 0, s.fail(out, err), nil, err
	}
	if !s.greeted {
		out, err = s.greet(p, out)
		return n, out, nil, err
	}
	switch t := p.Type(); t {
	case wire.FrameData, wire.FrameRequest, wire.FramePing:
		if err := s.seq.Check(p.Seq); err != nil {
			return 0, s.fail(out, err), nil, err
		}
		if t == wire.FrameData {
			s.data++
			return n, out, nil, nil
		}
		if uint32(n) > s.peerMax {
			// Only a REQUEST can get here: a PONG is at most 88 bytes and
			// every max_packet_size is at least 4096. The contract keeps
			// the connection open for this one.
			return n, appendError(out, wire.CodeFrameTooLarge, p.Seq, msgResponseTooLarge), nil, nil
		}
		answer := wire.FrameResponse
		if t == wire.FramePing {
			answer = wire.FramePong
		}
		// Same payload and same PAYLOAD_CRC flag make the same trailer, so
		// the request's payload region is echoed as it lies, trailer and
		// all, with no CRC computed again. COPY is never set on an answer.
		out = wire.AppendHeader(out, wire.Header{
			Version: wire.Version,
			Flags:   wire.MakeFlags(answer, p.Flags&wire.FlagPayloadCRC),
			Size:    p.Size,
			Seq:     p.Seq,
		})
		return n, out, b[wire.HeaderSize:n:n], nil
	case wire.FrameHello:
		return 0, s.fail(out, errSecondHello), nil, errSecondHello
	case wire.FrameError:
		if p.Seq == 0 {
			s.closed = true
			return n, out, nil, ErrPeerClosing
		}
		return 0, s.fail(out, errUnsolicited), nil, errUnsolicited
	case wire.FrameGoAway:
		// Every REQUEST and PING before it has already been answered:
		// this server answers each one as it arrives.
		s.closed = true
		return n, out, nil, ErrPeerClosing
	default: // RESPONSE, PONG: this server never sends a REQUEST or PING
		return 0, s.fail(out, errUnsolicited), nil, errUnsolicited
	}
}

// greet handles the client's first packet, which must be a HELLO.
func (s *Session) greet(p wire.Packet, out []byte) ([]byte, error) {
	if p.Type() != wire.FrameHello {
		return s.fail(out, errFirstNotHello), errFirstNotHello
	}
	peer, err := wire.ParseHello(p.Payload) // Parse has checked it: cannot fail
	if err != nil {
		return s.fail(out, err), err
	}
	if _, ok := wire.Negotiate(Hello, peer); !ok {
		return s.fail(out, errNoVersion), errNoVersion
	}
	s.greeted = true
	s.peerMax = peer.MaxPacketSize
	s.lim = wire.Limits{
		MaxPacketSize: Hello.MaxPacketSize,
		PayloadCRC:    peer.Capabilities&wire.CapPayloadCRC != 0, // ours always has it
	}
	return append(out, helloPacket...), nil
}

// fail ends the session on err, a protocol error, and appends what the
// contract says to send before closing: this server's HELLO if the client's
// first packet was the bad one, then ERROR with seq 0.
func (s *Session) fail(out []byte, err error) []byte {
	s.closed = true
	if !s.greeted {
		s.greeted = true
		out = append(out, helloPacket...)
	}
	e, ok := err.(*wire.Error)
	if !ok { // wire and this package return only *wire.Error for broken rules
		e = &wire.Error{Code: wire.CodeProtocolError, Msg: err.Error()}
	}
	return appendError(out, e.Code, 0, e.Msg)
}

// appendError appends a whole ERROR packet, writing its payload in place so
// that rejecting allocates nothing.
func appendError(out []byte, code wire.Code, seq uint64, msg string) []byte {
	out = wire.AppendPacketHeader(out, wire.FrameError, 0, seq, wire.MinErrorPayload+len(msg))
	return wire.AppendErrorPayload(out, code, msg)
}

// End adds the session's DATA count to the process total that DataFrames
// reports. Call it once, when the connection has closed.
func (s *Session) End() {
	dataFramesConsumed.Add(s.data)
	s.data = 0
}

// DataFrames returns the number of DATA frames consumed by the sessions
// that have ended so far. Counting per session and adding once at the end
// keeps a shared atomic off the per-packet path of every server.
func DataFrames() uint64 { return dataFramesConsumed.Load() }
