package zerowire

import (
	"errors"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/zerowire/zerowire/pool"
	"github.com/zerowire/zerowire/wire"
)

// ConnID names a connection for as long as it lives and never again: a slot
// index plus a generation, so an ID kept past the connection's close resolves
// to nothing rather than to a newer connection.
type ConnID uint64

// Handler receives a server's connection events. Every method runs on the
// connection's loop and must not block: hand slow work to another goroutine
// with Conn.Defer and answer from there.
type Handler interface {
	// OnOpen is called once the HELLO exchange has completed.
	OnOpen(c *Conn)
	// OnPacket is called for every DATA and REQUEST frame. p is valid until
	// OnPacket returns; call p.Retain to keep it. A REQUEST must be answered
	// with c.Reply or c.ReplyError, or handed off with c.Defer, before
	// OnPacket returns; one that is not gets ERROR APPLICATION.
	OnPacket(c *Conn, p *Packet)
	// OnClose is called once after OnOpen, when the connection has closed;
	// err says why (nil for a clean close by either side).
	OnClose(c *Conn, err error)
}

// Packet is a received DATA, REQUEST or (on a client) RESPONSE frame.
//
// p is valid until OnPacket returns; call p.Retain to keep it. A packet whose
// sender set the COPY flag is delivered in a pooled buffer, so Retain keeps it
// without a copy.
type Packet struct {
	wire.Header
	// Payload is the application bytes (a PAYLOAD_CRC trailer excluded).
	// p is valid until OnPacket returns; call p.Retain to keep it.
	Payload []byte

	held pool.Buffer // the pooled copy of a COPY packet's payload
	l    *loop
}

// Retain returns the payload in a pooled buffer that stays valid after the
// callback. The bytes are valid until the last reference is released; each
// Retain needs one Release. It copies only when the payload is a view into
// the loop's read buffer. It fails with pool.ErrExhausted when the pool is at
// its cap.
func (p *Packet) Retain() (pool.Buffer, error) {
	if !p.held.IsZero() {
		p.held.Retain()
		return p.held, nil
	}
	b, err := p.l.get(len(p.Payload))
	if err != nil {
		return pool.Buffer{}, err
	}
	copy(b.Bytes(), p.Payload)
	return b, nil
}

// Errors returned by Conn, Server and Client methods.
var (
	// ErrClosed is returned for an operation on a closed connection, server
	// or client; errors.Is(ErrClosed, net.ErrClosed) holds.
	ErrClosed = &closedError{}
	// ErrTooLarge is returned when a packet would exceed the peer's
	// advertised max_packet_size; nothing was sent.
	ErrTooLarge = errors.New("zerowire: packet larger than the peer's max_packet_size")
	// ErrNotRequest is returned by Reply and Defer for a packet that is not
	// a REQUEST, or that was already answered or handed off.
	ErrNotRequest = errors.New("zerowire: not an unanswered REQUEST")
	// ErrGoingAway is returned for a new DATA or REQUEST on a connection
	// that sent or received GOAWAY.
	ErrGoingAway = errors.New("zerowire: connection is going away")
)

type closedError struct{}

func (*closedError) Error() string        { return "zerowire: use of closed connection" }
func (*closedError) Is(target error) bool { return target == net.ErrClosed }

// Conn is one connection. Its methods other than ID, RemoteAddr and
// UserData/SetUserData must be called from the Handler callbacks of this
// connection (they run on its loop); from any other goroutine use the
// Server's methods that take a ConnID, or a Deferred.
type Conn struct {
	id     ConnID
	l      *loop
	o      *Options // the server's, or the client's
	cl     *Client  // nil on a server connection
	fd     int      // epoll backend; the net backend's conn is the loop's
	rport  uint16
	raddr  [16]byte // the peer's address, compact: idle connections are many
	user   atomic.Pointer[any]
	err    error
	x      *connBufs           // made on first need
	defers map[uint64]struct{} // seqs handed off with Defer

	// Owned by the loop.
	recvSeq    wire.SeqChecker
	sendSeq    uint64
	lastRecv   int64 // the last complete packet, or the open: handshake and idle deadlines count from it
	overAt     int64 // when the queue went over MaxQueuedBytes; 0 if under
	closeAt    int64 // linger deadline of a closing connection
	wheelAt    int64 // tick the timer wheel holds the connection in; 0 if none
	peerMax    uint32
	deferred   int32
	st         connState
	crc        bool // PAYLOAD_CRC negotiated
	goaway     bool // this side sent GOAWAY: no new frames are processed
	peerGone   bool // the peer sent GOAWAY or closed its side
	paused     bool // reads stopped for backpressure
	rdMore     bool // the socket may hold unread bytes (edge-triggered)
	wantOut    bool // write readiness armed
	answered   bool // the REQUEST being dispatched was answered or deferred
	server     bool // this side accepted the connection
	helloOut   bool // this side's HELLO is queued
	eof        bool // the peer shut its write side
	isTCP      bool // raddr holds an address
	hup        bool // the poller reported the peer's hang-up: read to EOF
	openCalled bool // OnOpen was called
	overBudget bool // paused: the server's partial-packet budget is spent
	refused    bool // past MaxConns: counted in Stats.Refusing, not Conns
}

// endpoint is the role above the protocol: a server connection's Handler,
// or a client's call table.
func (c *Conn) endpoint() endpoint {
	if c.cl != nil {
		return c.cl
	}
	return &c.l.srv.sep
}

// connBufs are what a busy connection holds of its own: bytes the socket
// did not take, and a packet split across reads.
type connBufs struct {
	out      []byte
	outBuf   pool.Buffer // backs out, unless the pool was at its cap
	outOff   int
	pend     []byte      // a partial packet carried to the next read
	pendBuf  pool.Buffer // backs pend, unless the pool was at its cap
	pendNeed int         // the size pend's packet needs in all
	pendCost int         // charged to the server's partial budget
	pendAt   int64       // when the partial packet's first bytes came
}

type connState uint8

const (
	stHandshake connState = iota // waiting for the peer's HELLO
	stOpen
	stDraining // GOAWAY sent or received: answering what was received
	stClosing  // final bytes flushed, write side shut, reading to EOF
	stClosed
)

// ID returns the connection's ID, valid from any goroutine.
func (c *Conn) ID() ConnID { return c.id }

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr {
	if c.l.net {
		return c.l.nc.RemoteAddr()
	}
	if c.isTCP {
		return net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom16(c.raddr).Unmap(), c.rport))
	}
	return &net.UnixAddr{Net: "unix"}
}

func (c *Conn) setRemote(ap netip.AddrPort) {
	if ap.IsValid() {
		c.raddr, c.rport, c.isTCP = ap.Addr().As16(), ap.Port(), true
	}
}

// UserData returns what SetUserData stored; safe from any goroutine.
func (c *Conn) UserData() any {
	if p := c.user.Load(); p != nil {
		return *p
	}
	return nil
}

// SetUserData attaches a value to the connection; safe from any goroutine.
func (c *Conn) SetUserData(v any) { c.user.Store(&v) }

// Send queues a DATA frame with a copy of payload; the caller keeps
// ownership of payload. It returns ErrTooLarge, ErrGoingAway or ErrClosed.
func (c *Conn) Send(payload []byte) error {
	return c.sendData(0, payload, false)
}

// SendCopy is Send with the COPY flag: the peer's application receives the
// payload in memory it may keep.
func (c *Conn) SendCopy(payload []byte) error {
	return c.sendData(wire.FlagCopy, payload, false)
}

// sendData queues a DATA frame. byRef sends a large payload from where it
// is by vectored write (a pooled buffer a task owns) instead of copying it
// into the write buffer.
func (c *Conn) sendData(flags wire.Flags, payload []byte, byRef bool) error {
	if err := c.canSendNew(); err != nil {
		return err
	}
	if c.crc {
		flags |= wire.FlagPayloadCRC
	}
	if wire.PacketSize(len(payload), flags) > int(c.peerMax) {
		return ErrTooLarge
	}
	c.sendSeq++
	if byRef {
		c.appendPacketRef(wire.FrameData, flags, c.sendSeq, payload)
	} else {
		c.appendPacket(wire.FrameData, flags, c.sendSeq, payload)
	}
	return nil
}

func (c *Conn) canSendNew() error {
	switch {
	case c.st >= stClosing:
		return ErrClosed
	case c.goaway || c.peerGone || c.st == stDraining:
		return ErrGoingAway
	}
	return nil
}

// Reply answers REQUEST p with a RESPONSE carrying payload (copied; the
// caller keeps ownership) and p's PAYLOAD_CRC setting. A response that would
// exceed the peer's max_packet_size is answered with ERROR FRAME_TOO_LARGE
// instead, and Reply returns ErrTooLarge; the request counts as answered.
func (c *Conn) Reply(p *Packet, payload []byte) error {
	if err := c.claim(p); err != nil {
		return err
	}
	return c.respond(p.Seq, p.Flags&wire.FlagPayloadCRC, payload)
}

// ReplyError answers REQUEST p with ERROR code and msg.
func (c *Conn) ReplyError(p *Packet, code wire.Code, msg string) error {
	if err := c.claim(p); err != nil {
		return err
	}
	c.appendError(p.Seq, code, msg)
	return nil
}

// Defer hands REQUEST p to another goroutine: the returned Deferred answers
// it later, from any goroutine. p itself is still valid only until OnPacket
// returns; Retain it or copy what the worker needs. A connection with
// deferred REQUESTs stays open until each is answered (or it is lost).
func (c *Conn) Defer(p *Packet) (Deferred, error) {
	if err := c.claim(p); err != nil {
		return Deferred{}, err
	}
	if c.defers == nil {
		c.defers = make(map[uint64]struct{})
	}
	c.defers[p.Seq] = struct{}{}
	c.deferred++
	return Deferred{srv: c.l.srv, id: c.id, seq: p.Seq, flags: p.Flags & wire.FlagPayloadCRC}, nil
}

// claim marks the REQUEST being dispatched as answered; a REQUEST is
// answered exactly once.
func (c *Conn) claim(p *Packet) error {
	if p.Type() != wire.FrameRequest || c.answered || p != &c.l.pkt {
		return ErrNotRequest
	}
	c.answered = true
	return nil
}

func (c *Conn) respond(seq uint64, flags wire.Flags, payload []byte) error {
	if c.st >= stClosing {
		return ErrClosed
	}
	if wire.PacketSize(len(payload), flags) > int(c.peerMax) {
		c.appendError(seq, wire.CodeFrameTooLarge, "response larger than the requester's max_packet_size")
		return ErrTooLarge
	}
	c.appendPacket(wire.FrameResponse, flags, seq, payload)
	return nil
}

// Close sends GOAWAY, answers the REQUESTs already received, and closes.
func (c *Conn) Close() error {
	if c.st >= stClosing {
		return ErrClosed
	}
	c.goAway(wire.CodeNone, "closed by the application")
	return nil
}

// Deferred is a REQUEST handed off with Conn.Defer. Its methods are safe
// from any goroutine; exactly one of them must be called, once.
type Deferred struct {
	srv   *Server
	id    ConnID
	seq   uint64
	flags wire.Flags
}

// Seq is the REQUEST's sequence number.
func (d Deferred) Seq() uint64 { return d.seq }

// Reply answers the REQUEST with a RESPONSE carrying a copy of payload; the
// caller keeps ownership of payload. It returns ErrClosed when the
// connection is gone and ErrNotRequest when the REQUEST was already answered.
func (d Deferred) Reply(payload []byte) error {
	return d.srv.submit(d.id, taskReply, d.seq, d.flags, 0, payload)
}

// ReplyError answers the REQUEST with ERROR code and msg.
func (d Deferred) ReplyError(code wire.Code, msg string) error {
	return d.srv.submit(d.id, taskReplyError, d.seq, 0, code, []byte(msg))
}

// Frame types a Handler sees, re-exported so that simple handlers need not
// import the wire package.
const (
	FrameData     = wire.FrameData
	FrameRequest  = wire.FrameRequest
	FrameResponse = wire.FrameResponse
)
