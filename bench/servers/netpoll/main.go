// Command netpoll is the echo server of wire-v1.md on github.com/cloudwego/netpoll,
// written the way netpoll's guide and its own benchmark do it: an OnRequest
// handler on the zero-copy Reader and Writer (Peek the header, Next the
// packet, Malloc the answer's header, WriteBinary the echoed payload, Flush,
// Release), handlers run on plain goroutines rather than the gopool, and
// the answers to everything already read leave in one Flush.
//
// Usage:
//
//	netpoll [--addr 127.0.0.1:7878] [--pollers N]
//
// It prints "listening on ADDR" once it accepts connections and exits on
// SIGINT or SIGTERM.
package main

import (
	"context"
	"flag"
	"net"
	"time"

	"github.com/cloudwego/netpoll"

	"github.com/zerowire/zerowire/bench/internal/echoproto"
	"github.com/zerowire/zerowire/bench/internal/peer"
	"github.com/zerowire/zerowire/wire"
)

var pollers = flag.Int("pollers", 0, "netpoll pollers (epoll instances); 0 keeps netpoll's default, GOMAXPROCS/20+1")

func main() { peer.Main("netpoll", serve) }

// conn is one connection's state, owned by the goroutine running OnRequest
// (netpoll runs at most one per connection at a time).
type conn struct {
	s       echoproto.Session
	scratch []byte // where an answer's header is built before it is copied into a Malloc
}

type connKey struct{}

func serve(ctx context.Context, addr string, ready func(net.Addr)) error {
	// netpoll's guide recommends dropping the gopool when handlers do not
	// grow their stacks, as here; its benchmark does the same.
	cfg := netpoll.Config{Runner: func(_ context.Context, f func()) { go f() }}
	if *pollers > 0 {
		cfg.PollerNum = *pollers
	}
	if err := netpoll.Configure(cfg); err != nil {
		return err
	}
	ln, err := netpoll.CreateListener("tcp", addr)
	if err != nil {
		return err
	}
	evl, err := netpoll.NewEventLoop(onRequest, netpoll.WithOnPrepare(prepare))
	if err != nil {
		ln.Close()
		return err
	}
	served := make(chan struct{})
	go func() {
		select {
		case <-served:
			return
		case <-ctx.Done():
		}
		// Shutdown does nothing until Serve has started its server, which
		// a signal can beat: ask until Serve returns.
		for {
			stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			evl.Shutdown(stopCtx)
			cancel()
			select {
			case <-served:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	// The listener is bound and listening: connections made now wait in its
	// backlog until Serve accepts them.
	ready(ln.Addr())
	err = evl.Serve(ln)
	close(served)
	return err
}

func prepare(c netpoll.Connection) context.Context {
	st := &conn{}
	c.AddCloseCallback(func(netpoll.Connection) error {
		st.s.End()
		return nil
	})
	return context.WithValue(context.Background(), connKey{}, st)
}

// onRequest answers every packet netpoll has read for c, then returns; it is
// called again when more arrives. It must consume everything that is
// buffered (netpoll calls it again at once otherwise), so when only part of
// a packet is there it blocks in Peek or Next for the rest, as netpoll's
// Reader is designed to, after flushing what is ready.
//
// A payload larger than 4 KiB given to WriteBinary is sent from the reader's
// memory without a copy, so the reader is released only after a Flush.
func onRequest(ctx context.Context, c netpoll.Connection) error {
	st := ctx.Value(connKey{}).(*conn)
	r, w := c.Reader(), c.Writer()
	for r.Len() > 0 {
		if r.Len() < wire.HeaderSize {
			if err := flush(r, w); err != nil {
				return err
			}
		}
		hdr, err := r.Peek(wire.HeaderSize)
		if err != nil {
			return err // closed by the client; netpoll closes the connection
		}
		n, answer, body, err := st.s.Handle(hdr, st.scratch[:0])
		switch err {
		case wire.ErrIncomplete:
			// Peek may have copied a header that straddles two buffer
			// nodes; Next returns a slice that stays valid until Release.
			if r.Len() < n {
				if err := flush(r, w); err != nil {
					return err
				}
			}
			pkt, rerr := r.Next(n)
			if rerr != nil {
				return rerr
			}
			_, answer, body, err = st.s.Handle(pkt, st.scratch[:0])
		case nil:
			r.Skip(n) // a header-only packet
		}
		if err := send(w, answer, body); err != nil {
			return err
		}
		st.scratch = answer[:0]
		if err != nil { // a protocol error or the client's goodbye
			w.Flush()
			return c.Close()
		}
	}
	return flush(r, w)
}

// send queues an answer: its header copied into writer memory, its payload
// by reference when large (netpoll copies below 4 KiB itself).
func send(w netpoll.Writer, answer, body []byte) error {
	if len(answer) > 0 {
		buf, err := w.Malloc(len(answer))
		if err != nil {
			return err
		}
		copy(buf, answer)
	}
	if len(body) > 0 {
		if _, err := w.WriteBinary(body); err != nil {
			return err
		}
	}
	return nil
}

// flush sends the queued answers and then releases the bytes read so far,
// which the answers may still have referenced.
func flush(r netpoll.Reader, w netpoll.Writer) error {
	if w.MallocLen() > 0 {
		if err := w.Flush(); err != nil {
			return err
		}
	}
	return r.Release()
}
