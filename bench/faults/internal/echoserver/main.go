// Command echoserver is the smallest zerowire echo server, for the crash
// and restart tests of package faults: each REQUEST is answered with its
// own payload. The tests run it as a subprocess and kill it with SIGKILL
// under load.
//
// Usage:
//
//	echoserver [--addr 127.0.0.1:0] [--backend auto|epoll|net]
//
// It prints "listening on ADDR" on stdout once it accepts connections, logs
// only to stderr, and drains gracefully on SIGINT or SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/zerowire/zerowire"
)

type echo struct{}

func (echo) OnOpen(*zerowire.Conn)         {}
func (echo) OnClose(*zerowire.Conn, error) {}

func (echo) OnPacket(c *zerowire.Conn, p *zerowire.Packet) {
	if p.Type() == zerowire.FrameRequest {
		c.Reply(p, p.Payload) // Reply copies the payload before OnPacket returns
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address, host:port")
	backend := flag.String("backend", "auto", "auto, epoll or net")
	flag.Parse()

	var b zerowire.Backend
	switch *backend {
	case "auto":
	case "epoll":
		b = zerowire.BackendEpoll
	case "net":
		b = zerowire.BackendNet
	default:
		fmt.Fprintln(os.Stderr, "echoserver: unknown backend", *backend)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := zerowire.NewServer(echo{}, zerowire.Options{Backend: b, Logger: log})
	if err == nil {
		err = srv.Listen(*addr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "echoserver:", err)
		os.Exit(1)
	}
	fmt.Println("listening on", srv.Addr())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "echoserver: shutdown:", err)
	}
}
