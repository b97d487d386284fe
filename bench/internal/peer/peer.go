// Package peer is the command-line shell shared by the peer servers: the
// --addr flag, the readiness line on stdout, and shutdown on SIGINT or
// SIGTERM. Keeping it in one place lets the comparison runner start and stop
// every peer the same way.
package peer

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/zerowire/zerowire/bench/internal/echoproto"
)

// DefaultAddr is the address a peer listens on when --addr is not given.
const DefaultAddr = "127.0.0.1:7878"

// ServeFunc runs one peer's echo server: it listens on addr, calls ready
// with the bound address once connections are being accepted (the address
// differs from addr when addr's port is 0), and serves until ctx is done.
// It returns nil after a shutdown asked for by ctx.
type ServeFunc func(ctx context.Context, addr string, ready func(net.Addr)) error

// Main parses the flags (a peer defines its own before calling Main), runs
// serve until SIGINT or SIGTERM, and exits. Once the server accepts
// connections it prints "listening on ADDR" on stdout, alone on its line;
// scripts and tests wait for that line and read the address from it, so
// nothing else may be written to stdout.
func Main(name string, serve ServeFunc) {
	addr := flag.String("addr", DefaultAddr, "`host:port` to listen on; port 0 picks a free one")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := serve(ctx, *addr, func(a net.Addr) {
		fmt.Printf("listening on %s\n", a)
	})
	fmt.Fprintf(os.Stderr, "%s: %d DATA frames consumed\n", name, echoproto.DataFrames())
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		stop()
		os.Exit(1)
	}
}
