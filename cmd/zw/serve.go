package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/zerowire/zerowire"
)

func serveCommand() *command {
	return &command{
		name: "serve",
		summary: `Serve runs the echo service of the contract: a REQUEST is answered with a
RESPONSE carrying the same seq and payload, DATA is counted, PING is
answered with PONG. It prints one line, "listening on ADDR", on stdout once
it accepts connections (ADDR is the bound address, so port 0 works), logs
to stderr, and on SIGINT or SIGTERM sends GOAWAY on every connection,
answers what it received, and exits 0.`,
		setup: func(fs *flag.FlagSet) runFunc {
			cfg := serveConfig{addr: "127.0.0.1:7878", shutdownTimeout: 10 * time.Second, logLevel: "info"}
			fs.StringVar(&cfg.addr, "addr", cfg.addr, "listen `address`: host:port or unix:PATH")
			fs.IntVar(&cfg.opts.Loops, "loops", 0, "reactor loops (0: GOMAXPROCS)")
			fs.Func("max-packet", "largest packet accepted, in `bytes`, advertised in HELLO (default 1048576, at least 4096)", func(s string) error {
				n, err := parseSize(s)
				if err == nil && (n < 4096 || n > 1<<32-1) {
					err = fmt.Errorf("must be between 4096 and %d", uint32(1<<32-1))
				}
				cfg.opts.MaxPacketSize = uint32(n)
				return err
			})
			fs.DurationVar(&cfg.opts.IdleTimeout, "idle-timeout", 0, "close connections idle this long, advertised in HELLO (0: never)")
			fs.DurationVar(&cfg.opts.BusyPoll, "busy-poll", 0, "spin this long on an idle loop before sleeping (lower latency for CPU)")
			fs.Var((*backendFlag)(&cfg.backend), "backend", backendUsage)
			fs.DurationVar(&cfg.shutdownTimeout, "shutdown-timeout", cfg.shutdownTimeout, "how long a graceful stop may drain before closing what remains")
			fs.StringVar(&cfg.logLevel, "log-level", cfg.logLevel, "log `level` on stderr: debug, info, warn or error")
			return func(ctx context.Context, e *env, _ []string) error { return runServe(ctx, e, cfg) }
		},
	}
}

type serveConfig struct {
	addr            string
	opts            zerowire.Options
	backend         backendFlag
	shutdownTimeout time.Duration
	logLevel        string
}

// echo is the echo service of the contract: it answers every REQUEST with
// its own payload and counts DATA frames.
type echo struct {
	requests atomic.Uint64
	data     atomic.Uint64
}

func (h *echo) OnOpen(c *zerowire.Conn)             {}
func (h *echo) OnClose(c *zerowire.Conn, err error) {}

func (h *echo) OnPacket(c *zerowire.Conn, p *zerowire.Packet) {
	if p.Type() == zerowire.FrameRequest {
		c.Reply(p, p.Payload) // Reply copies the payload before OnPacket returns
		h.requests.Add(1)
		return
	}
	h.data.Add(1)
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usageErrorf("invalid --log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// startEcho starts an echo server on addr.
func startEcho(addr string, opts zerowire.Options) (*zerowire.Server, *echo, error) {
	if err := probeAddr(addr); err != nil {
		return nil, nil, err
	}
	h := &echo{}
	srv, err := zerowire.NewServer(h, opts)
	if err != nil {
		return nil, nil, err
	}
	if err := srv.Listen(addr); err != nil {
		return nil, nil, err
	}
	return srv, h, nil
}

func runServe(ctx context.Context, e *env, cfg serveConfig) error {
	log, err := newLogger(e.stderr, cfg.logLevel)
	if err != nil {
		return err
	}
	if cfg.opts.Loops < 0 {
		return usageErrorf("--loops must be at least 0")
	}
	if cfg.opts.IdleTimeout < 0 || cfg.opts.BusyPoll < 0 || cfg.shutdownTimeout <= 0 {
		return usageErrorf("durations must not be negative, and --shutdown-timeout must be positive")
	}
	opts := cfg.opts
	opts.Backend = cfg.backend.b
	opts.Logger = log

	// Signals are caught before the server is up, so that one arriving
	// while it starts still stops it gracefully.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	srv, h, err := startEcho(cfg.addr, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "listening on %s\n", formatAddr(srv.Addr()))

	<-ctx.Done()
	start := time.Now()
	log.Info("zw: shutting down", "conns", srv.Stats().Conns, "timeout", cfg.shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("zw: shutdown did not drain in time; closed the remaining connections", "err", err)
	}
	st := srv.Stats()
	log.Info("zw: stopped", "took", time.Since(start).Round(time.Millisecond),
		"accepted", st.Accepted, "requests", h.requests.Load(), "data", h.data.Load(),
		"bytes_in", st.BytesIn, "bytes_out", st.BytesOut)
	return nil
}

// probeAddr fails when a TCP port is already in use. The epoll backend
// binds with SO_REUSEPORT, so a second server on a port that one already
// serves would join it, the kernel splitting the connections between the
// two, instead of failing; a plain listen, which does not set
// SO_REUSEPORT, fails on a port held by any listener.
func probeAddr(addr string) error {
	network, address := splitAddr(addr)
	if network != "tcp" {
		return nil
	}
	if _, port, err := net.SplitHostPort(address); err != nil || port == "0" {
		return nil // a bad address is Listen's to report; port 0 is always free
	}
	ln, err := net.Listen(network, address)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			err = op.Err
		}
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	return ln.Close()
}
