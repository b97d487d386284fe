package zerowire

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zerowire/zerowire/pool"
	"github.com/zerowire/zerowire/wire"
)

// ClientOptions configures Dial. The zero value is usable.
type ClientOptions struct {
	// Backend selects the engine the connection runs on. BackendAuto (the
	// default) is BackendNet for clients: a goroutine calling Call and
	// waiting for its answer is handed it within the Go scheduler (a round
	// trip in one process measured 37-55 us against 280-300 us through an
	// epoll loop, whose thread must be woken for each call). BackendEpoll
	// suits callback-driven load (Go) and tens of thousands of connections
	// in one process.
	Backend Backend
	// MaxPacketSize is the largest packet this side accepts, advertised in
	// HELLO; default wire.DefaultMaxPacketSize.
	MaxPacketSize uint32
	// DisablePayloadCRC stops advertising the PAYLOAD_CRC capability.
	DisablePayloadCRC bool
	// PayloadCRC asks for a PAYLOAD_CRC trailer on every REQUEST, DATA and
	// PING this client sends, when both sides advertised the capability.
	PayloadCRC bool
	// BusyPoll makes the epoll engine's loops spin on a zero-timeout
	// epoll_wait for this long after their last event before they block,
	// as Options.BusyPoll does for a server: the answer to a request is
	// picked up without waking a sleeping thread, for a core's worth of
	// CPU. Clients with different BusyPoll values run on different loops.
	// The net backend ignores it.
	BusyPoll time.Duration
	// OnData receives DATA frames from the server, on the connection's
	// loop; it must not block. payload is valid until OnData returns.
	OnData func(payload []byte)
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Client is one connection to a server, safe for concurrent use: calls
// from many goroutines are pipelined on it and matched to their answers by
// sequence number.
type Client struct {
	eng    *Server
	l      *loop
	id     ConnID
	o      Options
	crcReq bool
	onData func([]byte)
	hello  []byte // this side's HELLO payload

	peerMax  atomic.Uint32
	state    atomic.Int32 // 0 handshaking, 1 open, 2 going away, 3 closed
	inflight atomic.Int64 // calls not yet completed, for a Pool's choice
	ready    chan struct{}
	away     chan struct{} // closed when the server sends GOAWAY
	doneCh   chan struct{}
	err      error // why the connection ended; set before doneCh closes

	// Owned by the loop.
	pending map[uint64]*call
}

// Errors of calls.
var (
	// ErrNotProcessed fails a call the server did not process: it had sent
	// GOAWAY with a lower last seq, or the call was never sent. It is safe
	// to retry elsewhere.
	ErrNotProcessed = errors.New("zerowire: request not processed by the server; safe to retry")
	// ErrConnLost fails a call whose connection was lost after it was sent:
	// the server may or may not have processed it.
	ErrConnLost = errors.New("zerowire: connection lost with the request outstanding")
)

// Response is the answer to a Call. Payload is valid until Release; after
// Release the Response must not be used.
type Response struct {
	c *call
}

// Payload returns the RESPONSE's application bytes; they are valid until
// Release.
func (r *Response) Payload() []byte { return r.c.buf.Bytes()[:r.c.n] }

// Seq is the sequence number of the REQUEST this answers.
func (r *Response) Seq() uint64 { return r.c.seq }

// Release returns the payload's buffer to the pool.
func (r *Response) Release() { r.c.recycle() }

// call is one outstanding REQUEST or PING; it travels to the loop inside
// a task and is recycled when the caller is done with it.
type call struct {
	resp  Response
	state atomic.Int32 // callWaiting, callDone, callAbandoned
	ping  bool
	seq   uint64
	sent  int64
	rtt   time.Duration
	req   pool.Buffer
	reqN  int
	buf   pool.Buffer // the response payload
	n     int
	err   error
	done  chan struct{}
	cb    func(*Response, error)
	owner *Client
}

const (
	callWaiting int32 = iota
	callDone
	callAbandoned
)

var callPool = sync.Pool{New: func() any {
	c := &call{done: make(chan struct{}, 1)}
	c.resp.c = c
	return c
}}

func (c *call) recycle() {
	if !c.buf.IsZero() {
		c.buf.Release()
	}
	if !c.req.IsZero() {
		c.req.Release()
	}
	c.buf, c.req, c.err, c.cb, c.n, c.reqN, c.ping = pool.Buffer{}, pool.Buffer{}, nil, nil, 0, 0, false
	c.state.Store(callWaiting)
	callPool.Put(c)
}

// complete hands the outcome to whoever waits; a call its caller gave up
// on is recycled here instead.
func (c *call) complete(err error) {
	c.err = err
	c.owner.inflight.Add(-1)
	if c.cb != nil {
		cb := c.cb
		if err != nil {
			cb(nil, err)
			c.recycle()
		} else {
			cb(&c.resp, nil)
		}
		return
	}
	if c.state.CompareAndSwap(callWaiting, callDone) {
		c.done <- struct{}{}
		return
	}
	c.recycle()
}

var engines struct {
	sync.Mutex
	byKey map[engineKey]*Server
}

type engineKey struct {
	b    Backend
	busy time.Duration
}

// engine returns the process-wide engine that hosts client connections of
// one backend and busy-poll setting: a Server without listeners.
func engine(b Backend, busy time.Duration) (*Server, error) {
	if b == BackendAuto {
		b = BackendNet
	}
	if b != BackendEpoll || busy < 0 {
		busy = 0
	}
	k := engineKey{b, busy}
	engines.Lock()
	defer engines.Unlock()
	if s := engines.byKey[k]; s != nil {
		return s, nil
	}
	s, err := NewServer(nopHandler{}, Options{Backend: b, BusyPoll: busy})
	if err != nil {
		return nil, err
	}
	s.forClients = true
	s.state.Store(stateRunning)
	if b == BackendEpoll {
		if err := s.startLoops(nil); err != nil {
			return nil, err
		}
	}
	if engines.byKey == nil {
		engines.byKey = map[engineKey]*Server{}
	}
	engines.byKey[k] = s
	return s, nil
}

type nopHandler struct{}

func (nopHandler) OnOpen(*Conn)            {}
func (nopHandler) OnPacket(*Conn, *Packet) {}
func (nopHandler) OnClose(*Conn, error)    {}

// Dial connects to addr ("host:port", or a path for network "unix"),
// performs the HELLO exchange and returns the client. It fails with a
// *wire.Error when the server refuses the connection (OVERLOADED,
// UNSUPPORTED_VERSION, ...).
func Dial(ctx context.Context, network, addr string, opts *ClientOptions) (*Client, error) {
	var co ClientOptions
	if opts != nil {
		co = *opts
	}
	eng, err := engine(co.Backend, co.BusyPoll)
	if err != nil {
		return nil, err
	}
	o := Options{MaxPacketSize: co.MaxPacketSize, DisablePayloadCRC: co.DisablePayloadCRC, Logger: co.Logger}.withDefaults()
	cl := &Client{eng: eng, o: o, crcReq: co.PayloadCRC, onData: co.OnData,
		ready: make(chan struct{}), away: make(chan struct{}), doneCh: make(chan struct{}), pending: map[uint64]*call{}}
	cl.hello = wire.AppendHello(nil, (&Conn{o: &cl.o}).localHello())
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if err := cl.attach(nc); err != nil {
		return nil, err
	}
	select {
	case <-cl.ready:
		select {
		case <-cl.doneCh: // refused right after the HELLO exchange
			return nil, cl.dialErr()
		default:
			return cl, nil
		}
	case <-cl.doneCh:
		return nil, cl.dialErr()
	case <-ctx.Done():
		cl.Close()
		return nil, ctx.Err()
	}
}

// errHandshakeClosed is Dial's error for a connection that ended without
// an error before it could be used: a peer that closed it during the HELLO
// exchange.
var errHandshakeClosed = errors.New("zerowire: connection closed during the HELLO exchange")

// dialErr is why a connection that ended during Dial cannot be used; a
// clean end still fails Dial, which must not return a nil Client.
func (cl *Client) dialErr() error {
	if cl.err != nil {
		return cl.err
	}
	return errHandshakeClosed
}

// newClientConn makes the connection's state; the caller registers it.
func (cl *Client) newConn(l *loop) *Conn {
	c := &Conn{l: l, o: &cl.o, peerMax: wire.MinMaxPacketSize, cl: cl}
	c.lastRecv = monotime()
	return c
}

// start runs on the loop once the connection is registered.
func (cl *Client) start(c *Conn) {
	cl.id = c.id
	c.sendHello()
	c.l.schedule(c, c.lastRecv+int64(c.o.HandshakeTimeout))
}

func (cl *Client) onOpen(c *Conn) {
	cl.peerMax.Store(c.peerMax)
	cl.state.Store(1)
	close(cl.ready)
}

func (cl *Client) onGoAwaySent(c *Conn) {
	// A client that says GOAWAY still waits for the answers it is owed,
	// but not for ever.
	c.closeAt = c.l.now + int64(c.o.CloseLinger)
	c.l.schedule(c, c.closeAt)
}

func (cl *Client) onPacket(c *Conn, p *Packet) {
	if p.Type() == wire.FrameData && cl.onData != nil {
		cl.onData(p.Payload)
	}
}

func (cl *Client) onAnswer(c *Conn, p *wire.Packet) bool {
	k, ok := cl.pending[p.Seq]
	if !ok {
		return false
	}
	t := p.Type()
	if k.ping != (t == wire.FramePong) && t != wire.FrameError {
		return false
	}
	delete(cl.pending, p.Seq)
	switch t {
	case wire.FrameError:
		code, msg, _ := wire.ParseErrorPayload(p.Payload)
		k.complete(&wire.Error{Code: code, Msg: string(msg)})
	case wire.FramePong:
		k.rtt = time.Duration(c.l.now - k.sent)
		k.complete(nil)
	default:
		if k.state.Load() == callAbandoned {
			k.recycle()
			break
		}
		b, err := c.l.get(len(p.Payload))
		if err != nil {
			k.complete(err)
			break
		}
		copy(b.Bytes(), p.Payload)
		k.buf, k.n = b, len(p.Payload)
		k.complete(nil)
	}
	c.maybeFinish()
	return true
}

func (cl *Client) waiting() bool { return len(cl.pending) > 0 }

// onGoAway fails at once the calls the server will not process.
func (cl *Client) onGoAway(c *Conn, last uint64) {
	if cl.state.Swap(2) != 2 {
		close(cl.away) // a second GOAWAY may lower the last seq again
	}
	for seq, k := range cl.pending {
		if seq > last {
			delete(cl.pending, seq)
			k.complete(ErrNotProcessed)
		}
	}
}

func (cl *Client) onClose(c *Conn, err error) {
	for seq, k := range cl.pending {
		delete(cl.pending, seq)
		k.complete(ErrConnLost)
	}
	if err == nil && cl.state.Load() == 0 {
		err = ErrConnLost
	}
	cl.err = err
	cl.state.Store(3)
	close(cl.doneCh)
}

// GoingAway is closed when the server has sent GOAWAY: new calls fail with
// ErrGoingAway while the calls it processes are still answered.
func (cl *Client) GoingAway() <-chan struct{} { return cl.away }

// Done is closed when the connection has ended; Err then says why.
func (cl *Client) Done() <-chan struct{} { return cl.doneCh }

// Err returns why the connection ended (nil after a clean close), once
// Done is closed.
func (cl *Client) Err() error {
	select {
	case <-cl.doneCh:
		return cl.err
	default:
		return nil
	}
}

// MaxPacketSize is the server's advertised max_packet_size.
func (cl *Client) MaxPacketSize() int { return int(cl.peerMax.Load()) }

func (cl *Client) check(payloadLen int) error {
	switch cl.state.Load() {
	case 2:
		return ErrGoingAway
	case 3:
		return ErrClosed
	}
	var flags wire.Flags
	if cl.crcReq {
		flags = wire.FlagPayloadCRC
	}
	if wire.PacketSize(payloadLen, flags) > int(cl.peerMax.Load()) {
		return ErrTooLarge
	}
	return nil
}

// newCall prepares a call carrying a pooled copy of payload.
func (cl *Client) newCall(payload []byte, ping bool) (*call, error) {
	if err := cl.check(len(payload)); err != nil {
		return nil, err
	}
	k := callPool.Get().(*call)
	k.ping = ping
	k.owner = cl
	cl.inflight.Add(1)
	if len(payload) > 0 {
		b, err := cl.eng.pool.Get(len(payload))
		if err != nil {
			cl.inflight.Add(-1)
			k.recycle()
			return nil, err
		}
		copy(b.Bytes(), payload)
		k.req, k.reqN = b, len(payload)
	}
	return k, nil
}

func (cl *Client) post(k *call) {
	t := taskPool.Get().(*task)
	t.kind, t.id, t.call = taskCall, cl.id, k
	cl.l.post(t)
}

// sendCall runs on the loop: it numbers the call and queues its frame.
func (cl *Client) sendCall(c *Conn, k *call) {
	if err := c.canSendNew(); err != nil {
		k.complete(ErrNotProcessed)
		return
	}
	t, flags := wire.FrameRequest, wire.Flags(0)
	if k.ping {
		t = wire.FramePing
	}
	if cl.crcReq && c.crc {
		flags = wire.FlagPayloadCRC
	}
	payload := k.req.Bytes()
	if !k.req.IsZero() {
		payload = payload[:k.reqN]
	}
	if wire.PacketSize(len(payload), flags) > int(c.peerMax) {
		k.complete(ErrTooLarge)
		return
	}
	c.sendSeq++
	k.seq, k.sent = c.sendSeq, c.l.now
	cl.pending[k.seq] = k
	if len(payload) >= refThreshold {
		c.appendPacketRef(t, flags, k.seq, payload)
		return
	}
	c.appendPacket(t, flags, k.seq, payload)
}

// Call sends payload as a REQUEST and waits for its answer. The caller
// keeps ownership of payload. The Response's payload is valid until
// Release. An ERROR answer is returned as a *wire.Error; a call the server
// did not process fails with ErrNotProcessed; one lost with its connection
// with ErrConnLost. A call made after the server's GOAWAY fails with
// ErrGoingAway, and one made once the connection has ended with ErrClosed;
// neither sends anything. When ctx ends first, Call returns ctx's error
// and the late answer is dropped.
func (cl *Client) Call(ctx context.Context, payload []byte) (*Response, error) {
	k, err := cl.newCall(payload, false)
	if err != nil {
		return nil, err
	}
	cl.post(k)
	select {
	case <-k.done:
	case <-ctx.Done():
		if k.state.CompareAndSwap(callWaiting, callAbandoned) {
			return nil, ctx.Err()
		}
		<-k.done
	}
	if k.err != nil {
		err := k.err
		k.recycle()
		return nil, err
	}
	return &k.resp, nil
}

// CallBytes is Call for callers who want the payload in memory of their
// own: it copies it and releases the Response.
func (cl *Client) CallBytes(ctx context.Context, payload []byte) ([]byte, error) {
	r, err := cl.Call(ctx, payload)
	if err != nil {
		return nil, err
	}
	b := append([]byte(nil), r.Payload()...)
	r.Release()
	return b, nil
}

// Go sends payload as a REQUEST and returns at once; done runs on the
// connection's loop with the answer and must not block. The Response is
// valid until done calls its Release, which it must do. The caller keeps
// ownership of payload. With a done func reused across calls, Go
// allocates nothing.
func (cl *Client) Go(payload []byte, done func(*Response, error)) error {
	k, err := cl.newCall(payload, false)
	if err != nil {
		return err
	}
	k.cb = done
	cl.post(k)
	return nil
}

// Send sends payload as a one-way DATA frame; the caller keeps ownership
// of payload. It returns once the frame is queued.
func (cl *Client) Send(ctx context.Context, payload []byte) error {
	if err := cl.check(len(payload)); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var flags wire.Flags
	if cl.crcReq {
		flags = wire.FlagPayloadCRC
	}
	return cl.eng.submit(cl.id, taskSend, 0, flags, 0, payload)
}

// Ping sends a PING and returns the round trip.
func (cl *Client) Ping(ctx context.Context) (time.Duration, error) {
	k, err := cl.newCall(nil, true)
	if err != nil {
		return 0, err
	}
	cl.post(k)
	select {
	case <-k.done:
	case <-ctx.Done():
		if k.state.CompareAndSwap(callWaiting, callAbandoned) {
			return 0, ctx.Err()
		}
		<-k.done
	}
	rtt, err := k.rtt, k.err
	k.recycle()
	return rtt, err
}

// Close sends GOAWAY, waits for the answers to calls already sent (up to
// the linger time), and closes the connection.
func (cl *Client) Close() error {
	if cl.state.Load() == 3 {
		return nil
	}
	cl.eng.submit(cl.id, taskClose, 0, 0, 0, nil)
	<-cl.doneCh
	return nil
}
