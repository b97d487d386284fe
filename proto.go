package zerowire

import (
	"strings"

	"github.com/zerowire/zerowire/pool"
	"github.com/zerowire/zerowire/wire"
)

// endpoint is the role a connection plays above the protocol: the server's
// Handler, or the client's call table.
type endpoint interface {
	onOpen(c *Conn)
	// onPacket receives DATA and REQUEST frames; p is loop-owned scratch.
	onPacket(c *Conn, p *Packet)
	// onAnswer receives RESPONSE, PONG and ERROR with a non-zero seq; it
	// returns false when the seq answers nothing outstanding.
	onAnswer(c *Conn, p *wire.Packet) bool
	onClose(c *Conn, err error)
	// waiting reports answers the endpoint still expects: a draining
	// connection stays open for them.
	waiting() bool
	onGoAway(c *Conn, lastSeq uint64)
	onGoAwaySent(c *Conn)
}

func (c *Conn) limits() wire.Limits {
	return wire.Limits{MaxPacketSize: c.o.MaxPacketSize, PayloadCRC: c.crc}
}

// consume dispatches every complete packet at the front of b. It returns
// the bytes used and, when a partial packet remains, the size that packet
// needs in all (or wire.HeaderSize while its header is incomplete).
func (c *Conn) consume(b []byte) (used, need int) {
	for used < len(b) {
		if c.st >= stClosing {
			return len(b), 0 // a closing connection discards what it reads
		}
		// The parsed packet lives in the loop: a local would escape
		// through the endpoint interface and cost an allocation a packet.
		p := &c.l.wpkt
		var n int
		var err error
		*p, n, err = wire.Parse(b[used:], c.limits())
		if err != nil {
			if err == wire.ErrIncomplete {
				return used, n
			}
			c.protocolError(err)
			return len(b), 0
		}
		used += n
		c.lastRecv = c.l.now
		c.l.srv.stats.packetsIn.Add(1)
		c.handle(p)
		if c.paused && c.st < stClosing {
			// The handler has as many REQUESTs in hand as it may, or the
			// queue to the peer is over its limit: what is left of this
			// read waits, kept as complete packets (need 0), until
			// answers go out. Dispatching it would queue its answers
			// past the limit.
			c.rdMore = true
			return used, 0
		}
	}
	return used, 0
}

// holding reports complete packets held back by MaxPendingRequests or
// MaxQueuedBytes.
func (c *Conn) holding() bool {
	return c.x != nil && c.x.pendNeed == 0 && len(c.x.pend) > 0
}

func (c *Conn) handle(p *wire.Packet) {
	t := p.Type()
	if c.st == stHandshake {
		c.onHello(p)
		return
	}
	switch t {
	case wire.FrameData, wire.FrameRequest, wire.FramePing:
		if err := c.recvSeq.Check(p.Seq); err != nil {
			c.protocolError(err)
			return
		}
		if c.goaway {
			return // above the GOAWAY's last seq: discarded unprocessed
		}
		if t == wire.FramePing {
			c.appendPacket(wire.FramePong, p.Flags&wire.FlagPayloadCRC, p.Seq, p.Payload)
			return
		}
		c.dispatch(p)
	case wire.FrameHello:
		c.protocolError(errSecondHello)
	case wire.FrameResponse, wire.FramePong:
		if !c.endpoint().onAnswer(c, p) {
			c.protocolError(errUnsolicited)
		}
	case wire.FrameError:
		code, msg, _ := wire.ParseErrorPayload(p.Payload)
		if p.Seq == 0 {
			// The peer is dropping the connection: nothing more to say.
			c.err = &wire.Error{Code: code, Msg: string(msg)}
			c.finalClose()
			return
		}
		if !c.endpoint().onAnswer(c, p) {
			c.protocolError(errUnsolicited)
		}
	case wire.FrameGoAway:
		g, _ := wire.ParseGoAway(p.Payload)
		c.peerGone = true
		c.endpoint().onGoAway(c, g.LastSeq)
		if g.Code != wire.CodeNone {
			c.err = &GoAwayError{LastSeq: g.LastSeq, Code: g.Code, Msg: string(g.Msg)}
		}
		if c.st == stOpen {
			c.st = stDraining
		}
		c.maybeFinish()
	}
}

var (
	errNotHello    = &wire.Error{Code: wire.CodeProtocolError, Msg: "first packet is not HELLO"}
	errSecondHello = &wire.Error{Code: wire.CodeProtocolError, Msg: "second HELLO"}
	errUnsolicited = &wire.Error{Code: wire.CodeProtocolError, Msg: "answer to nothing outstanding"}
	errNoVersion   = &wire.Error{Code: wire.CodeUnsupportedVersion, Msg: "no version in common"}
	errIdle        = &wire.Error{Code: wire.CodeIdleTimeout, Msg: "idle timeout"}
	errHandshake   = &wire.Error{Code: wire.CodeIdleTimeout, Msg: "no HELLO before the handshake timeout"}
	errPartial     = &wire.Error{Code: wire.CodeIdleTimeout, Msg: "packet incomplete past the deadline"}
	errSlow        = &wire.Error{Code: wire.CodeSlowConsumer, Msg: "outbound queue over its limit past the deadline"}
	errOverloaded  = &wire.Error{Code: wire.CodeOverloaded, Msg: "connection limit reached"}
)

// GoAwayError is the error a connection closed with when the peer sent
// GOAWAY with a code other than NONE.
type GoAwayError struct {
	LastSeq uint64
	Code    wire.Code
	Msg     string
}

// Error describes the GOAWAY.
func (e *GoAwayError) Error() string {
	return "zerowire: peer sent GOAWAY " + e.Code.String() + ": " + e.Msg
}

func (c *Conn) localHello() wire.Hello {
	o := c.o
	h := wire.Hello{MinVersion: wire.Version, MaxVersion: wire.Version, MaxPacketSize: o.MaxPacketSize,
		IdleTimeoutMS: uint32(o.IdleTimeout.Milliseconds())}
	if !o.DisablePayloadCRC {
		h.Capabilities = wire.CapPayloadCRC
	}
	return h
}

func (c *Conn) sendHello() {
	if c.helloOut {
		return
	}
	c.helloOut = true
	// Encoded once per server or client: a buffer on the stack would
	// escape through the CRC's indirect call and cost an allocation for
	// every connection.
	hello := c.l.srv.hello
	if c.cl != nil {
		hello = c.cl.hello
	}
	c.appendPacket(wire.FrameHello, 0, 0, hello)
}

func (c *Conn) onHello(p *wire.Packet) {
	if c.server {
		c.sendHello() // even when the client is then rejected
	}
	if p.Type() != wire.FrameHello {
		c.protocolError(errNotHello)
		return
	}
	peer, _ := wire.ParseHello(p.Payload) // Parse has checked the layout
	local := c.localHello()
	if _, ok := wire.Negotiate(local, peer); !ok {
		c.protocolError(errNoVersion)
		return
	}
	c.peerMax = peer.MaxPacketSize
	c.crc = local.Capabilities&peer.Capabilities&wire.CapPayloadCRC != 0
	c.st = stOpen
	if c.peerGone {
		c.st = stDraining
	}
	c.openCalled = true
	c.endpoint().onOpen(c)
}

// dispatch hands a DATA or REQUEST to the endpoint in the loop's Packet.
func (c *Conn) dispatch(wp *wire.Packet) {
	l := c.l
	p := &l.pkt
	p.Header, p.Payload, p.l = wp.Header, wp.Payload, l
	if wp.Flags&wire.FlagCopy != 0 {
		if b, err := l.get(len(wp.Payload)); err == nil {
			copy(b.Bytes(), wp.Payload)
			p.held, p.Payload = b, b.Bytes()
		} else {
			// The pool is at its cap; the application still gets memory it
			// owns, from the Go heap.
			p.Payload = append([]byte(nil), wp.Payload...)
		}
	}
	var view []byte
	if debugPoison && p.held.IsZero() {
		// A view of its own, never reused, poisoned after the callback.
		view = append([]byte(nil), p.Payload...)
		p.Payload = view
	}
	c.answered = false
	c.endpoint().onPacket(c, p)
	if p.Type() == wire.FrameRequest && !c.answered {
		c.answered = true
		c.appendError(p.Seq, wire.CodeApplication, "request not answered by the handler")
	}
	if !p.held.IsZero() {
		p.held.Release()
		p.held = pool.Buffer{}
	} else if debugPoison {
		for i := range view {
			view[i] = 0xDE
		}
	}
	p.Payload = nil
	if int(c.deferred) >= c.o.MaxPendingRequests {
		c.paused = true
	}
}

// protocolError sends ERROR with err's code when err is a *wire.Error, and
// starts closing: only this connection is affected.
func (c *Conn) protocolError(err error) {
	code := wire.CodeProtocolError
	msg := err.Error()
	if we, ok := err.(*wire.Error); ok {
		code, msg = we.Code, we.Msg
	}
	c.fail(code, msg, err)
}

func (c *Conn) fail(code wire.Code, msg string, cause error) {
	if c.st >= stClosing {
		return
	}
	if c.server && !c.helloOut {
		c.sendHello()
	}
	c.appendError(0, code, msg)
	c.l.srv.stats.countError(code)
	if c.err == nil {
		c.err = cause
	}
	c.o.Logger.Debug("zerowire: closing connection", "conn", c.id, "remote", c.RemoteAddr(), "code", code.String(), "msg", msg)
	c.beginClose()
}

// goAway starts a deliberate close: GOAWAY with the last seq received, then
// every REQUEST already received is answered before the close.
func (c *Conn) goAway(code wire.Code, msg string) {
	if c.goaway || c.st >= stClosing {
		return
	}
	c.goaway = true
	last := c.recvSeq.Last()
	if c.st == stHandshake {
		// Nothing was received yet, so nothing is owed: a server still owes
		// its HELLO before any other packet.
		if c.server {
			c.sendHello()
		}
	}
	var scratch [128]byte
	c.appendPacket(wire.FrameGoAway, 0, 0, wire.AppendGoAwayPayload(scratch[:0], last, code, msg))
	c.st = stDraining
	c.endpoint().onGoAwaySent(c)
	c.maybeFinish()
}

// maybeFinish closes a draining connection once nothing is owed either way.
func (c *Conn) maybeFinish() {
	// After the peer's EOF no awaited answer can arrive any more.
	if c.st == stDraining && c.deferred == 0 && !c.holding() && (c.eof || !c.endpoint().waiting()) {
		c.beginClose()
	}
}

func (c *Conn) appendError(seq uint64, code wire.Code, msg string) {
	var scratch [256]byte
	if len(msg) > 200 {
		// A cut may split a rune, and a message must stay valid UTF-8.
		msg = strings.ToValidUTF8(msg[:200], "")
	}
	c.appendPacket(wire.FrameError, 0, seq, wire.AppendErrorPayload(scratch[:0], code, msg))
}
