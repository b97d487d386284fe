// Command soak runs mixed zerowire traffic for a while and fails when the
// server's memory, goroutines, descriptors, pooled bytes or connections
// trend upward.
//
//	go run ./soak --duration 10m            # an in-process server
//	go run ./soak --duration 1m --addr HOST:PORT
//
// The traffic: workers each open a client, make from 1 to 200 operations
// (REQUEST with Client.Call and pipelined with Client.Go, DATA with Send,
// PING), with payloads from 0 to 64 KiB checked byte for byte, and close
// it, over and over. One connection in a hundred (--hostile) is hostile
// instead: garbage bytes, a packet announced and never finished, big
// requests whose answers are never read, or silence; each must be dropped
// by the server with the contract's ERROR.
//
// Every --sample interval it records this process's RSS (/proc/self/status
// VmRSS), goroutines, open descriptors, the Go heap, and, for the
// in-process server, Stats().Pool bytes in use and Stats().Conns. With
// --addr the server is another process: its pool and connections are not
// visible, and RSS, goroutines and descriptors are the load generator's.
// After a warm-up (the first 20% of the run) a least-squares line is fitted
// through each metric; the rule is explained at judge in trend.go. The exit
// status is 1 when a metric trends upward, a well-behaved operation fails,
// a hostile connection is not dropped as the contract says, or, once the
// traffic stops, this process holds more descriptors or goroutines than it
// did before it began.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"time"
)

func main() {
	var cfg config
	flag.DurationVar(&cfg.Duration, "duration", time.Minute, "how long to run")
	flag.StringVar(&cfg.Addr, "addr", "", "`host:port` of the server to load; empty starts one in this process")
	flag.DurationVar(&cfg.Sample, "sample", time.Second, "interval between samples")
	flag.IntVar(&cfg.Workers, "workers", 8, "connections open at once (well-behaved)")
	flag.Float64Var(&cfg.Hostile, "hostile", 1, "percent of connections that are hostile")
	flag.Uint64Var(&cfg.Seed, "seed", uint64(time.Now().UnixNano()), "random seed")
	flag.BoolVar(&cfg.Verbose, "v", false, "print every sample")
	memprofile := flag.String("memprofile", "", "write a heap profile to `file` at the end")
	flag.Parse()
	cfg.Out = os.Stdout

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	start := time.Now()
	res, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
	printResult(os.Stdout, cfg, res, time.Since(start))
	if *memprofile != "" {
		if f, err := os.Create(*memprofile); err == nil {
			pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	if failed := append(res.failed, res.trendsFailed...); len(failed) > 0 {
		for _, f := range failed {
			fmt.Fprintln(os.Stderr, "soak: FAIL:", f)
		}
		os.Exit(1)
	}
	fmt.Println("soak: PASS")
}
