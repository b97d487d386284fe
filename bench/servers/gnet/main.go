// Command gnet is the echo server of wire-v1.md on github.com/panjf2000/gnet/v2,
// written the way gnet's own examples and benchmarks do it: multicore event
// loops locked to OS threads, packets decoded in OnTraffic with Peek and
// Discard straight from the loop's read buffer, and the answers of one
// OnTraffic gathered into a single write.
//
// Usage:
//
//	gnet [--addr 127.0.0.1:7878] [--loops N]
//
// It prints "listening on ADDR" once it accepts connections and exits on
// SIGINT or SIGTERM.
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"os"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/zerowire/zerowire/bench/internal/echoproto"
	"github.com/zerowire/zerowire/bench/internal/peer"
	"github.com/zerowire/zerowire/wire"
)

// vecThreshold is the payload size from which an echoed payload is sent from
// where it lies, with writev, instead of being copied into the connection's
// output buffer: below it a copy costs less than one more system call.
const vecThreshold = 16 << 10

// maxKeptOut bounds the output buffer a connection keeps between reads, so
// that one burst does not pin its high-water mark for the connection's life.
const maxKeptOut = 256 << 10

var loops = flag.Int("loops", 0, "event loops; 0 means one per CPU (gnet's multicore mode)")

func main() { peer.Main("gnet", serve) }

type server struct {
	gnet.BuiltinEventEngine
	ready  func(net.Addr)
	booted chan gnet.Engine
}

// conn is one connection's state, owned by its event loop.
type conn struct {
	s    echoproto.Session
	need int       // bytes the next packet needs before it is worth a Peek
	out  []byte    // answers of the current OnTraffic, written once at its end
	iov  [2][]byte // the writev of a large echo, kept to avoid an allocation
}

func serve(ctx context.Context, addr string, ready func(net.Addr)) error {
	s := &server{ready: ready, booted: make(chan gnet.Engine, 1)}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done: // Run failed before or after booting
			return
		case <-ctx.Done():
		}
		var eng gnet.Engine
		select {
		case <-done:
			return
		case eng = <-s.booted:
		}
		stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		eng.Stop(stopCtx)
	}()
	opts := []gnet.Option{
		gnet.WithMulticore(true),
		gnet.WithLockOSThread(true),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		// gnet logs to stdout by default; stdout carries the readiness line.
		gnet.WithLogger(stderrLogger{log.New(os.Stderr, "gnet: ", log.LstdFlags)}),
	}
	if *loops > 0 {
		opts = append(opts, gnet.WithNumEventLoop(*loops))
	}
	return gnet.Run(s, "tcp://"+addr, opts...)
}

// OnBoot reports the bound address: gnet exposes the listener only as a
// file descriptor, which is what a port-0 address needs to be learnt from.
func (s *server) OnBoot(eng gnet.Engine) gnet.Action {
	fd, err := eng.Dup()
	if err != nil {
		log.Printf("gnet: dup listener: %v", err)
		return gnet.Shutdown
	}
	f := os.NewFile(uintptr(fd), "listener")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		log.Printf("gnet: listener address: %v", err)
		return gnet.Shutdown
	}
	a := ln.Addr()
	ln.Close()
	s.booted <- eng
	s.ready(a)
	return gnet.None
}

func (s *server) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	c.SetContext(&conn{need: wire.HeaderSize})
	return nil, gnet.None
}

func (s *server) OnClose(c gnet.Conn, _ error) gnet.Action {
	if st, ok := c.Context().(*conn); ok {
		st.s.End()
	}
	return gnet.None
}

// OnTraffic answers every whole packet gnet has buffered for c.
//
// Two edges of gnet's Conn shape it. Peek(n) and Discard(n) treat n <= 0 as
// "everything buffered", so they are only called with a known positive
// length. And a peeked slice is valid only until the next Discard (it may
// be a pooled copy when the packet straddles gnet's ring buffer and the
// fresh read), so each answer is copied out or written before its packet
// is discarded.
func (s *server) OnTraffic(c gnet.Conn) gnet.Action {
	st := c.Context().(*conn)
	out := st.out[:0]
	action := gnet.None
	for c.InboundBuffered() >= st.need {
		b, err := c.Peek(st.need)
		if err != nil {
			break // cannot happen: the buffered length was checked
		}
		n, answer, body, err := st.s.Handle(b, out)
		out = answer
		if err == wire.ErrIncomplete {
			st.need = n // wait in gnet's buffer, not in repeated Peeks
			continue
		}
		if len(body) >= vecThreshold {
			st.iov = [2][]byte{out, body}
			_, werr := c.Writev(st.iov[:])
			st.iov = [2][]byte{}
			out = out[:0]
			if werr != nil {
				return gnet.Close
			}
		} else {
			out = append(out, body...)
		}
		if err != nil { // a protocol error or the client's goodbye
			action = gnet.Close
			break
		}
		c.Discard(n)
		st.need = wire.HeaderSize
	}
	if len(out) > 0 {
		if _, err := c.Write(out); err != nil {
			action = gnet.Close
		}
	}
	if cap(out) > maxKeptOut {
		out = nil
	}
	st.out = out[:0]
	return action
}

// stderrLogger sends gnet's logs to stderr, without the debug level.
type stderrLogger struct{ l *log.Logger }

func (g stderrLogger) Debugf(string, ...any)          {}
func (g stderrLogger) Infof(format string, a ...any)  { g.l.Printf("INFO "+format, a...) }
func (g stderrLogger) Warnf(format string, a ...any)  { g.l.Printf("WARN "+format, a...) }
func (g stderrLogger) Errorf(format string, a ...any) { g.l.Printf("ERROR "+format, a...) }
func (g stderrLogger) Fatalf(format string, a ...any) { g.l.Fatalf("FATAL "+format, a...) }
