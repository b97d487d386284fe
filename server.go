package zerowire

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zerowire/zerowire/internal/conntable"
	"github.com/zerowire/zerowire/pool"
	"github.com/zerowire/zerowire/wire"
)

// Server serves the zerowire protocol: it runs the handshake, checks every
// packet against the contract, answers PING, and hands DATA and REQUEST
// frames to its Handler.
type Server struct {
	opts    Options
	handler Handler
	pool    *pool.Pool
	ownPool bool
	table   *conntable.Table[Conn]
	loops   []*loop
	stats   counters
	backend Backend
	sep     serverEndpoint
	hello   []byte // this side's HELLO payload
	// forClients marks the engine that hosts Dial's connections (client.go):
	// its loops sleep without yielding first (see loop.run).
	forClients bool

	mu      sync.Mutex
	state   atomic.Int32
	addr    net.Addr
	lns     []net.Listener // net backend, and listeners handed to Serve
	plat    platformServer
	done    chan struct{}
	wg      sync.WaitGroup
	rr      atomic.Uint32
	drained chan struct{} // closed when the last connection is gone while shutting down
}

const (
	stateNew int32 = iota
	stateRunning
	stateShutdown
	stateClosed
)

// NewServer returns a server that calls h for every connection.
func NewServer(h Handler, opts Options) (*Server, error) {
	if h == nil {
		return nil, errors.New("zerowire: nil Handler")
	}
	o := opts.withDefaults()
	s := &Server{opts: o, handler: h, table: conntable.New[Conn](), done: make(chan struct{}), drained: make(chan struct{})}
	s.sep = serverEndpoint{h}
	s.hello = wire.AppendHello(nil, (&Conn{o: &s.opts}).localHello())
	s.backend = o.Backend
	if s.backend == BackendAuto {
		s.backend = defaultBackend
	}
	if s.backend == BackendEpoll && !epollAvailable {
		return nil, errors.New("zerowire: the epoll backend needs Linux")
	}
	s.pool = o.Pool
	if s.pool == nil {
		// The largest buffer is a connection's outbound queue at twice its
		// limit, or a packet with room to spare, or a loop's buffers.
		size := max(int(o.MaxPacketSize)+4096, 2*o.MaxQueuedBytes, readBufSize+writeBufSize)
		p, err := pool.New(pool.Options{MaxSize: size})
		if err != nil {
			return nil, err
		}
		s.pool, s.ownPool = p, true
	}
	return s, nil
}

// splitAddr turns "unix:PATH" and "host:port" into a network and address.
func splitAddr(addr string) (network, address string) {
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		return "unix", p
	}
	return "tcp", addr
}

// Listen binds addr ("host:port", or "unix:PATH") and starts serving in the
// background; Addr then reports the bound address (useful with port 0).
func (s *Server) Listen(addr string) error {
	if !s.state.CompareAndSwap(stateNew, stateRunning) {
		return ErrClosed
	}
	network, address := splitAddr(addr)
	var err error
	if s.backend == BackendEpoll {
		err = s.listenEpoll(network, address)
	} else {
		var ln net.Listener
		ln, err = net.Listen(network, address)
		if err == nil {
			err = s.serveNet(ln)
		}
	}
	if err != nil {
		s.state.Store(stateClosed)
		s.closePool()
		return fmt.Errorf("zerowire: listen %s: %w", addr, err)
	}
	s.opts.Logger.Info("zerowire: listening", "addr", s.addr.String(), "backend", s.backend.String(), "loops", len(s.loops))
	return nil
}

// ListenAndServe is Listen followed by Wait.
func (s *Server) ListenAndServe(addr string) error {
	if err := s.Listen(addr); err != nil {
		return err
	}
	return s.Wait()
}

// Serve serves the connections accepted on ln, an already-open listener
// (for example one passed in by systemd socket activation), and returns
// when the server is closed. The server takes ownership of ln.
func (s *Server) Serve(ln net.Listener) error {
	if !s.state.CompareAndSwap(stateNew, stateRunning) {
		return ErrClosed
	}
	var err error
	if s.backend == BackendEpoll {
		err = s.adoptEpoll(ln)
	} else {
		err = s.serveNet(ln)
	}
	if err != nil {
		s.state.Store(stateClosed)
		s.closePool()
		return err
	}
	return s.Wait()
}

// Wait blocks until the server is closed, and returns nil.
func (s *Server) Wait() error {
	<-s.done
	return nil
}

// Addr is the address the server listens on, once Listen or Serve has run.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Shutdown stops accepting, sends GOAWAY on every connection, answers every
// REQUEST already received, and closes each connection once it owes
// nothing. It returns when every connection is closed, or with ctx's error
// after closing what remains when ctx is done first.
func (s *Server) Shutdown(ctx context.Context) error {
	if !s.state.CompareAndSwap(stateRunning, stateShutdown) {
		if s.state.Load() == stateNew {
			return s.Close()
		}
		<-s.done
		return nil
	}
	s.stopAccepting()
	s.eachLoopConn(func(c *Conn) { c.goAway(wire.CodeShuttingDown, "server shutting down") })
	var err error
	// Refused connections are waited for too: their ERROR OVERLOADED is on
	// its way, and Close would cut their lingering close short.
	open := func() bool { return s.stats.conns.Load()+s.stats.refusing.Load() > 0 }
	if open() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for open() && err == nil {
			select {
			case <-ctx.Done():
				err = ctx.Err()
			case <-tick.C:
			}
		}
	}
	s.Close()
	return err
}

// Close closes every connection at once, without GOAWAY, and releases the
// server's loops and buffers. Handlers get OnClose with ErrClosed.
func (s *Server) Close() error {
	prev := s.state.Swap(stateClosed)
	if prev == stateClosed {
		return nil
	}
	if prev == stateNew {
		close(s.done)
		s.closePool()
		return nil
	}
	s.stopAccepting()
	s.eachLoopConn(func(c *Conn) {
		if c.err == nil {
			c.err = ErrClosed
		}
		c.finalClose()
	})
	s.stopLoops()
	s.wg.Wait()
	for _, l := range s.getLoops() {
		l.release()
	}
	s.closePool()
	close(s.done)
	return nil
}

func (s *Server) getLoops() []*loop {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loops
}

func (s *Server) closePool() {
	if s.ownPool {
		s.pool.Close()
	}
}

// Conn returns the live connection with this ID. Only its ID, RemoteAddr
// and UserData methods may be called from outside its loop.
func (s *Server) Conn(id ConnID) (*Conn, bool) {
	return s.table.Get(conntable.ID(id))
}

// Send queues a DATA frame with a copy of payload on connection id, from
// any goroutine; the caller keeps ownership of payload. It returns ErrClosed
// for an ID that is no longer live; failures found later on the loop (the
// connection closing meanwhile) are counted in Stats as dropped sends.
func (s *Server) Send(id ConnID, payload []byte) error {
	return s.submit(id, taskSend, 0, 0, 0, payload)
}

// CloseConn sends GOAWAY on connection id and closes it once it owes nothing.
func (s *Server) CloseConn(id ConnID) error {
	return s.submit(id, taskClose, 0, 0, 0, nil)
}

// Broadcast queues buf's bytes as a DATA frame on every connection in ids
// without copying it per connection: each queued send holds a reference,
// and a payload of 2 KiB or more leaves from buf itself by vectored write
// (copied only for a connection whose socket does not take it all).
// The caller keeps its own reference and releases it as usual. It returns
// how many connections were live.
func (s *Server) Broadcast(ids []ConnID, buf pool.Buffer) int {
	n := 0
	for _, id := range ids {
		c, ok := s.table.Get(conntable.ID(id))
		if !ok {
			continue
		}
		buf.Retain()
		t := taskPool.Get().(*task)
		t.kind, t.id, t.buf, t.n = taskSend, id, buf, len(buf.Bytes())
		c.l.post(t)
		n++
	}
	return n
}

// submit carries an operation to connection id's loop with a pooled copy
// of payload.
func (s *Server) submit(id ConnID, kind taskKind, seq uint64, flags wire.Flags, code wire.Code, payload []byte) error {
	c, ok := s.table.Get(conntable.ID(id))
	if !ok {
		return ErrClosed
	}
	t := taskPool.Get().(*task)
	t.kind, t.id, t.seq, t.flags, t.code = kind, id, seq, flags, code
	if len(payload) > 0 {
		b, err := s.pool.Get(len(payload))
		if err != nil {
			taskPool.Put(t)
			return err
		}
		copy(b.Bytes(), payload)
		t.buf, t.n = b, len(payload)
	}
	c.l.post(t)
	return nil
}

// finishTask releases what a task held and recycles it.
func (l *loop) finishTask(t *task, err error) {
	if err != nil {
		l.srv.stats.droppedSends.Add(1)
	}
	if !t.buf.IsZero() {
		t.buf.Release()
	}
	*t = task{errc: t.errc}
	taskPool.Put(t)
}

// forget removes a closed connection from the table.
func (s *Server) forget(c *Conn) {
	if s.table.Remove(conntable.ID(c.id)) {
		if c.refused {
			s.stats.refusing.Add(-1)
		} else if s.stats.conns.Add(-1) == 0 && s.state.Load() == stateShutdown {
			select {
			case <-s.drained:
			default:
				close(s.drained)
			}
		}
	}
}

// register adds a newly accepted connection to the table, counted as open
// or, past MaxConns, as refused (c.refused: it must be sent ERROR
// OVERLOADED and closed); false when the table is full.
func (s *Server) register(c *Conn) bool {
	id, err := s.table.Add(c)
	if err != nil {
		return false
	}
	c.id = ConnID(id)
	s.stats.accepted.Add(1)
	if !s.admit() {
		c.refused = true
		s.stats.refusing.Add(1)
	}
	return true
}

// admit counts one more open connection unless MaxConns are open. The check
// and the count are one step: loops accepting at the same time cannot both
// take the last place.
func (s *Server) admit() bool {
	limit := int64(s.opts.MaxConns)
	for {
		n := s.stats.conns.Load()
		if limit > 0 && n >= limit {
			return false
		}
		if s.stats.conns.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

type serverEndpoint struct{ h Handler }

func (e serverEndpoint) onOpen(c *Conn)                        { e.h.OnOpen(c) }
func (e serverEndpoint) onPacket(c *Conn, p *Packet)           { e.h.OnPacket(c, p) }
func (e serverEndpoint) onAnswer(c *Conn, p *wire.Packet) bool { return false }
func (e serverEndpoint) onClose(c *Conn, err error)            { e.h.OnClose(c, err) }
func (e serverEndpoint) waiting() bool                         { return false }
func (e serverEndpoint) onGoAway(c *Conn, last uint64)         {}
func (e serverEndpoint) onGoAwaySent(c *Conn)                  {}
