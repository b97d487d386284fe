package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/zerowire/zerowire"
)

func pingCommand() *command {
	return &command{
		name:    "ping",
		args:    "[ADDR]",
		maxArgs: 1,
		summary: `Ping connects to ADDR (host:port or unix:PATH, or --addr) with the HELLO
exchange, sends --count PINGs --interval apart, prints each round trip and
then min/avg/max/stddev. The exit code is 1 when the server is unreachable
or any PING went unanswered.`,
		setup: func(fs *flag.FlagSet) runFunc {
			cfg := pingConfig{addr: "127.0.0.1:7878", count: 5, interval: time.Second, timeout: 5 * time.Second}
			var backend backendFlag
			fs.StringVar(&cfg.addr, "addr", cfg.addr, "server `address`: host:port or unix:PATH")
			fs.IntVar(&cfg.count, "count", cfg.count, "PINGs to send")
			fs.DurationVar(&cfg.interval, "interval", cfg.interval, "time between PINGs")
			fs.DurationVar(&cfg.timeout, "timeout", cfg.timeout, "how long to wait for the connection, and for each PONG")
			fs.Var(&backend, "backend", backendUsage)
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) == 1 {
					cfg.addr = args[0]
				}
				cfg.backend = backend.b
				return runPing(ctx, e, cfg)
			}
		},
	}
}

type pingConfig struct {
	addr     string
	count    int
	interval time.Duration
	timeout  time.Duration
	backend  zerowire.Backend
}

func runPing(ctx context.Context, e *env, cfg pingConfig) error {
	if cfg.count < 1 {
		return usageErrorf("--count must be at least 1")
	}
	if cfg.interval < 0 || cfg.timeout <= 0 {
		return usageErrorf("--interval must not be negative and --timeout must be positive")
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	network, addr := splitAddr(cfg.addr)
	dctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	start := time.Now()
	cl, err := zerowire.Dial(dctx, network, addr, &zerowire.ClientOptions{Backend: cfg.backend, Logger: quietLogger(e.stderr)})
	cancel()
	if err != nil {
		return fmt.Errorf("ping: dial %s: %w", cfg.addr, err)
	}
	defer cl.Close()
	fmt.Fprintf(e.stdout, "PING %s: connected in %s, server max_packet_size %d\n",
		cfg.addr, fmtDuration(time.Since(start)), cl.MaxPacketSize())

	var rtts []time.Duration
	sent := 0
	var firstErr error
	for i := 1; i <= cfg.count; i++ {
		if i > 1 && !sleepCtx(ctx, cfg.interval) {
			break
		}
		pctx, cancel := context.WithTimeout(ctx, cfg.timeout)
		rtt, err := cl.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			break // interrupted: not a lost PING
		}
		sent++
		if err != nil {
			fmt.Fprintf(e.stdout, "ping %d: %s\n", i, oneLine(err))
			if firstErr == nil {
				firstErr = err
			}
			select {
			case <-cl.Done():
				i = cfg.count // the connection is gone; stop
			default:
			}
			continue
		}
		rtts = append(rtts, rtt)
		fmt.Fprintf(e.stdout, "pong %d: rtt %s\n", i, fmtDuration(rtt))
	}

	fmt.Fprintf(e.stdout, "--- %s ping statistics ---\n", cfg.addr)
	fmt.Fprintf(e.stdout, "%d sent, %d received, %.0f%% lost\n", sent, len(rtts), lostPercent(sent, len(rtts)))
	if len(rtts) > 0 {
		mn, avg, mx, sd := rttStats(rtts)
		fmt.Fprintf(e.stdout, "rtt min/avg/max/stddev = %s/%s/%s/%s\n",
			fmtDuration(mn), fmtDuration(avg), fmtDuration(mx), fmtDuration(sd))
	}
	if firstErr != nil {
		return fmt.Errorf("ping %s: %d of %d PINGs failed (first: %s)", cfg.addr, sent-len(rtts), sent, oneLine(firstErr))
	}
	return nil
}

func lostPercent(sent, received int) float64 {
	if sent == 0 {
		return 0
	}
	return 100 * float64(sent-received) / float64(sent)
}

// rttStats returns the minimum, mean, maximum and population standard
// deviation of rtts, which must not be empty.
func rttStats(rtts []time.Duration) (mn, avg, mx, sd time.Duration) {
	mn, mx = rtts[0], rtts[0]
	var sum float64
	for _, r := range rtts {
		mn, mx = min(mn, r), max(mx, r)
		sum += float64(r)
	}
	mean := sum / float64(len(rtts))
	var sq float64
	for _, r := range rtts {
		d := float64(r) - mean
		sq += d * d
	}
	return mn, time.Duration(mean), mx, time.Duration(math.Sqrt(sq / float64(len(rtts))))
}

// fmtDuration prints a round trip in µs below a millisecond, else in ms.
func fmtDuration(d time.Duration) string {
	if d < time.Millisecond {
		return fmt.Sprintf("%.1fµs", float64(d)/1e3)
	}
	return fmt.Sprintf("%.3fms", float64(d)/1e6)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	return wait(ctx, d, nil)
}
