package zerowire

import (
	"log/slog"
	"runtime"
	"time"

	"github.com/zerowire/zerowire/pool"
	"github.com/zerowire/zerowire/wire"
)

// Backend selects how connections are driven.
type Backend uint8

const (
	// BackendAuto is epoll reactors on Linux and Go's net package elsewhere.
	BackendAuto Backend = iota
	// BackendEpoll is one epoll reactor per loop, each a goroutine with its
	// own epoll instance. It is available on Linux only.
	BackendEpoll
	// BackendNet runs each connection on Go's net package with a goroutine of
	// its own: portable, and the baseline the reactor is measured against.
	BackendNet
)

// String returns the name zw serve --backend takes: epoll, net or auto.
func (b Backend) String() string {
	switch b {
	case BackendEpoll:
		return "epoll"
	case BackendNet:
		return "net"
	}
	return "auto"
}

// Options configures a Server. The zero value is usable: every zero field
// takes the default its comment gives.
type Options struct {
	// Loops is the number of reactor loops; default runtime.GOMAXPROCS(0).
	Loops int
	// Backend selects epoll reactors or Go's net package; default BackendAuto.
	Backend Backend
	// SingleAcceptor makes loop 0 accept every connection and hand them out
	// round-robin, instead of one SO_REUSEPORT listener per loop.
	SingleAcceptor bool

	// MaxPacketSize is the largest packet this side accepts, advertised in
	// HELLO; default wire.DefaultMaxPacketSize (1 MiB), at least 4096.
	MaxPacketSize uint32
	// IdleTimeout is advertised in HELLO: a connection that delivers no
	// complete packet for this long gets ERROR IDLE_TIMEOUT; 0 means never.
	IdleTimeout time.Duration
	// HandshakeTimeout bounds the wait for the client's HELLO; default 10s.
	HandshakeTimeout time.Duration
	// DisablePayloadCRC stops advertising the PAYLOAD_CRC capability.
	DisablePayloadCRC bool

	// MaxQueuedBytes caps one connection's queued outbound bytes: the
	// bytes its socket has not taken. The moment the queue passes it, the
	// loop stops dispatching that connection's packets, keeps the rest of
	// the read as received (charged to MaxPartialBytes), and reads no more
	// until the queue has drained to half. Answers to what the peer sends
	// therefore queue at most MaxQueuedBytes plus one packet; answers to
	// REQUESTs already deferred (at most MaxPendingRequests) and what the
	// application sends itself (Server.Send, Broadcast) join the queue
	// regardless. Default 4 MiB.
	MaxQueuedBytes int
	// SlowConsumerTimeout is how long a connection may stay over
	// MaxQueuedBytes before it gets ERROR SLOW_CONSUMER; default 5s. The
	// ERROR joins the end of the queue. When the socket does not take all
	// of it at once the connection is closed there and then, without
	// lingering (the peer, which did not read the queue down to half in
	// the whole deadline, would not read it all in a linger, and reading on
	// would only discard what it sends); the close is then a reset. The
	// net backend queues nothing: a write blocks until the socket takes it,
	// reading waits meanwhile, and a write blocked for this long closes the
	// connection at once, without an ERROR.
	SlowConsumerTimeout time.Duration
	// MaxPendingRequests caps the REQUESTs of one connection handed to a
	// worker with Conn.Defer and not yet answered; over it the loop stops
	// reading from that connection until the handler catches up. Default 4096.
	MaxPendingRequests int
	// MaxPartialBytes is the server-wide budget for packets that have
	// started to arrive but are not complete; over it, a connection keeps
	// only the bytes its last read brought and pauses reading until the
	// budget frees. Complete packets held back by MaxPendingRequests or
	// MaxQueuedBytes (the rest of one read at most per connection) are
	// charged to it as well, even past it. Default 256 MiB.
	MaxPartialBytes int64
	// PartialTimeout bounds how long one packet may take to arrive once
	// its first bytes have: past it the connection gets ERROR
	// IDLE_TIMEOUT (no complete packet) and closes. Default 30s.
	PartialTimeout time.Duration
	// MaxConns caps open connections; past it a new connection gets HELLO,
	// ERROR OVERLOADED and is closed. 0 means no cap.
	MaxConns int
	// CloseLinger bounds how long a closing connection keeps reading (and
	// discarding) so that its last packets are not destroyed by a reset;
	// default 2s. A slow consumer whose ERROR cannot leave gets no linger
	// (see SlowConsumerTimeout).
	CloseLinger time.Duration

	// BusyPoll makes an idle loop spin on a zero-timeout epoll_wait for this
	// long before it blocks: lower latency for a core's worth of CPU.
	BusyPoll time.Duration

	// Pool supplies read, write and retained buffers; default a pool of its
	// own, closed with the server.
	Pool *pool.Pool
	// Logger receives connection errors at debug level and server events at
	// info level; default slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Loops <= 0 {
		o.Loops = runtime.GOMAXPROCS(0)
	}
	if o.MaxPacketSize == 0 {
		o.MaxPacketSize = wire.DefaultMaxPacketSize
	}
	if o.MaxPacketSize < wire.MinMaxPacketSize {
		o.MaxPacketSize = wire.MinMaxPacketSize
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 10 * time.Second
	}
	if o.MaxQueuedBytes <= 0 {
		o.MaxQueuedBytes = 4 << 20
	}
	if o.SlowConsumerTimeout <= 0 {
		o.SlowConsumerTimeout = 5 * time.Second
	}
	if o.MaxPendingRequests <= 0 {
		o.MaxPendingRequests = 4096
	}
	if o.MaxPartialBytes <= 0 {
		o.MaxPartialBytes = 256 << 20
	}
	if o.PartialTimeout <= 0 {
		o.PartialTimeout = 30 * time.Second
	}
	if o.CloseLinger <= 0 {
		o.CloseLinger = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}
