// Command idlehold opens N TCP connections to an echo server of the
// contract, does the HELLO exchange on each, prints "held N" on stdout once
// all of them are open and greeted, and then holds them, idle, until SIGINT
// or SIGTERM. The comparison (run.sh, scenario 6) runs it as a process of
// its own, so that the server's memory per idle connection can be read from
// the server's /proc/PID/status while the connections are held.
//
//	idlehold --addr 127.0.0.1:7878 --n 10000 [--batch 250] [--timeout 60s]
//
// Connections are opened in batches of --batch at a time, so that the
// server's accept queue is not overrun. Each sends the client's HELLO (built
// with wire.AppendHello and wire.AppendPacket) and reads until the server's
// HELLO has been parsed whole (wire.Parse). Any failure exits with status 1
// before "held" is printed. Nothing is read after the handshake: the
// connections are idle.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/zerowire/zerowire/wire"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:7878", "server `address` (host:port)")
	n := flag.Int("n", 10000, "connections to open and hold")
	batch := flag.Int("batch", 250, "connections opened at a time")
	timeout := flag.Duration("timeout", 60*time.Second, "give up when the N connections are not all open after this long")
	flag.Parse()
	if *n < 1 || *batch < 1 {
		fmt.Fprintln(os.Stderr, "idlehold: --n and --batch must be at least 1")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	start := time.Now()
	conns, err := open(ctx, *addr, *n, *batch, start.Add(*timeout))
	if err != nil {
		fmt.Fprintf(os.Stderr, "idlehold: %v (after %d connections)\n", err, len(conns))
		closeAll(conns)
		os.Exit(1)
	}
	fmt.Printf("held %d\n", len(conns))
	fmt.Fprintf(os.Stderr, "idlehold: %d connections open and greeted in %v\n", len(conns), time.Since(start).Round(time.Millisecond))

	<-ctx.Done()
	closeAll(conns)
}

// hello is the client's HELLO: version 1 only, the default max packet size.
var hello = wire.AppendPacket(nil, wire.FrameHello, 0, 0, wire.AppendHello(nil, wire.Hello{
	MinVersion:    wire.Version,
	MaxVersion:    wire.Version,
	MaxPacketSize: wire.DefaultMaxPacketSize,
}))

// open opens n greeted connections, batch at a time.
func open(ctx context.Context, addr string, n, batch int, deadline time.Time) ([]net.Conn, error) {
	conns := make([]net.Conn, 0, n)
	for len(conns) < n {
		if err := ctx.Err(); err != nil {
			return conns, errors.New("interrupted")
		}
		k := min(batch, n-len(conns))
		got := make([]net.Conn, k)
		errs := make([]error, k)
		var wg sync.WaitGroup
		for i := range k {
			wg.Go(func() { got[i], errs[i] = dialGreet(ctx, addr, deadline) })
		}
		wg.Wait()
		var first error
		for i := range k {
			if errs[i] != nil {
				if first == nil {
					first = errs[i]
				}
				continue
			}
			conns = append(conns, got[i])
		}
		if first != nil {
			return conns, first
		}
	}
	return conns, nil
}

// dialGreet opens one connection and does the HELLO exchange on it.
func dialGreet(ctx context.Context, addr string, deadline time.Time) (net.Conn, error) {
	d := net.Dialer{Deadline: deadline}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if err := greet(c, deadline); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func greet(c net.Conn, deadline time.Time) error {
	c.SetDeadline(deadline)
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(hello); err != nil {
		return fmt.Errorf("send HELLO: %w", err)
	}
	buf := make([]byte, 0, 256)
	for {
		p, n, err := wire.Parse(buf, wire.Limits{})
		switch {
		case err == nil:
			if p.Type() != wire.FrameHello {
				return fmt.Errorf("first packet from the server is %v, not HELLO", p.Type())
			}
			if _, err := wire.ParseHello(p.Payload); err != nil {
				return fmt.Errorf("server HELLO: %w", err)
			}
			if len(buf) > n {
				return errors.New("the server sent more than its HELLO")
			}
			return nil
		case !errors.Is(err, wire.ErrIncomplete):
			return fmt.Errorf("server HELLO: %w", err)
		}
		if cap(buf) < n {
			nb := make([]byte, len(buf), n)
			copy(nb, buf)
			buf = nb
		}
		m, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err != nil && m == 0 {
			return fmt.Errorf("read HELLO: %w", err)
		}
	}
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}
