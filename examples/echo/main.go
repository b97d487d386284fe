// Command echo serves the echo service of the zerowire contract: a REQUEST
// is answered with its own payload, DATA is counted, PING is answered by the
// library. It drains gracefully on SIGINT or SIGTERM.
//
//	go run ./examples/echo --addr 127.0.0.1:7878
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/zerowire/zerowire"
)

// echo answers every REQUEST with its own payload and counts DATA frames.
type echo struct{ data atomic.Uint64 }

func (e *echo) OnOpen(c *zerowire.Conn)             {}
func (e *echo) OnClose(c *zerowire.Conn, err error) {}

func (e *echo) OnPacket(c *zerowire.Conn, p *zerowire.Packet) {
	if p.Type() == zerowire.FrameRequest {
		c.Reply(p, p.Payload) // Reply copies the payload before OnPacket returns
		return
	}
	e.data.Add(1)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:7878", "listen address: host:port or unix:PATH")
	flag.Parse()

	h := &echo{}
	srv, err := zerowire.NewServer(h, zerowire.Options{Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err == nil {
		err = srv.Listen(*addr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
	fmt.Println("listening on", srv.Addr())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "echo: shutdown:", err)
	}
	fmt.Println("served", h.data.Load(), "DATA frames")
}
