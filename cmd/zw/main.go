// Command zw is the zerowire command: an echo server, a load generator,
// a demonstration of both, a ping and a decoder of captured byte streams.
//
//	zw serve --addr 127.0.0.1:7878
//	zw bench --addr 127.0.0.1:7878 --conns 16 --depth 8
//	zw demo
//	zw ping 127.0.0.1:7878
//	zw decode --hex capture.txt
//
// Run zw help for the exit codes, and zw COMMAND -h for each command's flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/zerowire/zerowire"
)

// Exit codes.
const (
	exitOK      = 0 // success
	exitFailure = 1 // a runtime failure
	exitUsage   = 2 // a bad flag, argument or command
)

const usageText = `zw is the zerowire command: a thin main over the library.

Usage:

	zw COMMAND [flags] [args]

Commands:

	serve    run the echo service of the contract
	bench    generate load against a server and report latency percentiles
	demo     start an in-process server, bench it for a few seconds, print the table
	ping     send PINGs to a server and print the round trips
	decode   print the packets of a captured byte stream
	help     print this text, or a command's flags (zw help COMMAND)

Run 'zw COMMAND -h' for a command's flags. Flags take one or two dashes.

Exit codes:

	0  success
	1  runtime failure: unreachable address, port in use, malformed input
	   for decode, bench with errors
	2  usage error: bad flag, argument or command
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// command is one subcommand. setup registers its flags on fs, bound to a
// fresh set of values, and returns the function that runs it with the
// positional arguments once the flags are parsed.
type command struct {
	name    string
	summary string
	args    string // the positional arguments' synopsis
	maxArgs int
	setup   func(fs *flag.FlagSet) runFunc
}

type runFunc func(ctx context.Context, e *env, args []string) error

// env is where a command writes.
type env struct {
	stdout, stderr io.Writer
}

func commands() []*command {
	return []*command{serveCommand(), benchCommand(), demoCommand(), pingCommand(), decodeCommand()}
}

func findCommand(name string) *command {
	for _, c := range commands() {
		if c.name == name {
			return c
		}
	}
	return nil
}

// run runs zw with args (the program name excluded) and returns the exit
// code. Commands that run until interrupted stop on SIGINT or SIGTERM.
func run(args []string, stdout, stderr io.Writer) int {
	return runContext(context.Background(), args, stdout, stderr)
}

// runContext is run with a context whose end stops the command as a signal
// would: tests use it to stop an in-process serve.
func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) > 1 && name == "help" {
			c := findCommand(args[1])
			if c == nil {
				fmt.Fprintf(stderr, "zw: unknown command %q\nRun 'zw help' for usage.\n", args[1])
				return exitUsage
			}
			printCommandUsage(stdout, c)
			return exitOK
		}
		fmt.Fprint(stdout, usageText)
		return exitOK
	}
	c := findCommand(name)
	if c == nil {
		fmt.Fprintf(stderr, "zw: unknown command %q\nRun 'zw help' for usage.\n", name)
		return exitUsage
	}
	e := &env{stdout: stdout, stderr: stderr}
	fs, runner := newFlagSet(c)
	pos, err := parseInterspersed(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		printCommandUsage(stdout, c)
		return exitOK
	}
	if err == nil && len(pos) > c.maxArgs {
		err = fmt.Errorf("unexpected argument %q", pos[c.maxArgs])
	}
	if err != nil {
		fmt.Fprintf(stderr, "zw %s: %v\nRun 'zw %s -h' for usage.\n", c.name, err, c.name)
		return exitUsage
	}
	if err := runner(ctx, e, pos); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "zw %s: %v\nRun 'zw %s -h' for usage.\n", c.name, ue.error, c.name)
			return exitUsage
		}
		fmt.Fprintf(stderr, "zw: %s\n", oneLine(err))
		return exitFailure
	}
	return exitOK
}

// usageError marks an error in a command's arguments found after parsing
// (a bad value): exit code 2.
type usageError struct{ error }

func usageErrorf(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

func newFlagSet(c *command) (*flag.FlagSet, runFunc) {
	fs := flag.NewFlagSet("zw "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are printed by runContext, in one line
	fs.Usage = func() {}
	return fs, c.setup(fs)
}

// parseInterspersed parses flags wherever they stand among the positional
// arguments ("zw ping ADDR --count 3"), which the flag package alone does
// not; "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// The flag package stops at the first non-flag, or after "--".
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func printCommandUsage(w io.Writer, c *command) {
	fmt.Fprintf(w, "Usage: zw %s [flags]", c.name)
	if c.args != "" {
		fmt.Fprintf(w, " %s", c.args)
	}
	fmt.Fprintf(w, "\n\n%s\n", c.summary)
	fs, _ := newFlagSet(c)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintf(w, "\nFlags:\n")
		printFlags(w, fs)
	}
	fmt.Fprintf(w, "\nExit codes: 0 success, 1 runtime failure, 2 usage error.\n")
}

// printFlags is flag.PrintDefaults with the two dashes scripts use.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		fmt.Fprintf(w, "%s\n    \t%s", line, strings.ReplaceAll(usage, "\n", "\n    \t"))
		switch f.DefValue {
		case "", "0", "false", "0s", "auto":
		default:
			if g, ok := f.Value.(flag.Getter); ok {
				if _, isString := g.Get().(string); isString {
					fmt.Fprintf(w, " (default %q)", f.DefValue)
					break
				}
			}
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

// oneLine strips the library's "zerowire: " prefixes and joins lines, so
// that an error reads as one line after "zw: ".
func oneLine(err error) string {
	s := strings.ReplaceAll(err.Error(), "zerowire: ", "")
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// backendFlag is the --backend flag: auto, epoll or net.
type backendFlag struct{ b zerowire.Backend }

func (f *backendFlag) String() string {
	if f == nil || f.b == zerowire.BackendAuto {
		return "auto"
	}
	return f.b.String()
}

func (f *backendFlag) Set(s string) error {
	switch s {
	case "auto":
		f.b = zerowire.BackendAuto
	case "epoll":
		f.b = zerowire.BackendEpoll
	case "net":
		f.b = zerowire.BackendNet
	default:
		return fmt.Errorf("unknown backend %q: want epoll, net or auto", s)
	}
	return nil
}

const backendUsage = "`engine`: epoll (Linux reactors), net (Go's net package) or auto (epoll on Linux) (default auto)"

// splitAddr turns a --addr value into Dial's network and address:
// "unix:PATH" is a Unix socket, anything else host:port over TCP.
func splitAddr(addr string) (network, address string) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		return "unix", path
	}
	return "tcp", addr
}

// formatAddr is the inverse of splitAddr for a bound address.
func formatAddr(a net.Addr) string {
	if a.Network() == "unix" {
		return "unix:" + a.String()
	}
	return a.String()
}

// parseSize parses a byte count: digits with an optional K, M or G suffix
// (powers of 1024; KiB, MiB and GiB are accepted too).
func parseSize(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "IB"), "B")
	mult := int64(1)
	if t != "" {
		switch t[len(t)-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		}
		if mult > 1 {
			t = t[:len(t)-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("invalid size %q: want bytes, e.g. 64, 4K or 1M", s)
	}
	return n * mult, nil
}

// quietLogger logs the library's warnings and errors to w, not its
// per-connection debug and info lines.
func quietLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// wait sleeps for d, or until ctx ends or idle is closed (in a closed
// loop, every connection has stopped). It reports whether ctx is still
// live.
func wait(ctx context.Context, d time.Duration, idle <-chan struct{}) bool {
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		case <-idle:
		}
	}
	return ctx.Err() == nil
}
