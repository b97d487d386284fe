package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/zerowire/zerowire"
)

func demoCommand() *command {
	return &command{
		name: "demo",
		summary: `Demo starts an echo server in this process on 127.0.0.1 (an OS-assigned
port), runs a short closed-loop bench against it (16 connections × depth 8,
64-byte payloads, 2s after a 0.5s warmup), prints the table and exits.`,
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, e *env, _ []string) error {
				cfg := benchConfig{Conns: 16, Depth: 8, Size: 64, Duration: 2 * time.Second, Warmup: 500 * time.Millisecond}
				if err := setProgress(&cfg, e.stderr, "auto"); err != nil {
					return err
				}
				return runDemo(ctx, e, cfg)
			}
		},
	}
}

func runDemo(ctx context.Context, e *env, cfg benchConfig) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	quiet := quietLogger(e.stderr)
	srv, h, err := startEcho("127.0.0.1:0", zerowire.Options{Logger: quiet})
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	cfg.Addr = formatAddr(srv.Addr())
	cfg.Logger = quiet
	fmt.Fprintf(e.stdout, "zw demo: echo server on %s; %d conns × depth %d, %d-byte payloads, %s after a %s warmup\n",
		cfg.Addr, cfg.Conns, cfg.Depth, cfg.Size, cfg.Duration, cfg.Warmup)
	res, err := runBench(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout)
	res.writeTable(e.stdout)
	fmt.Fprintf(e.stdout, "\nThe server answered %d REQUESTs. Next: zw serve, then zw bench --addr %s in another shell.\n",
		h.requests.Load(), "127.0.0.1:7878")
	return res.err()
}
