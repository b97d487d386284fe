package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/term"

	"github.com/zerowire/zerowire"
	"github.com/zerowire/zerowire/wire"
)

func benchCommand() *command {
	return &command{
		name: "bench",
		summary: `Bench generates load against an echo server with the zerowire client and
reports latency percentiles, throughput and errors.

Closed loop (the default): each connection keeps --depth REQUESTs
outstanding; a new one is sent as each answer arrives, and its latency is
measured from its send. Open loop (--rate > 0): REQUESTs are scheduled at
fixed intervals, the rate spread evenly over the connections, and latency is
measured from the time each was meant to be sent, so that a stalled server
is not hidden by the generator waiting for it (no coordinated omission, as
wrk2 does); --depth then caps the REQUESTs outstanding per connection.

Every answer's payload is compared with its request's; a difference, a
failed call or a lost connection counts as an error. Only answers that
arrive after the warmup and before the end count in the percentiles and
throughput. Throughput in MB/s counts payload bytes in both directions
(request and response, headers excluded) at 10^6 bytes per MB.

A live progress line is written on stderr each second (with --progress
auto, only when stderr is a terminal). The exit code is 1 when any error
occurred.`,
		setup: func(fs *flag.FlagSet) runFunc {
			cfg := benchConfig{Addr: "127.0.0.1:7878", Conns: 1, Depth: 1, Size: 64,
				Duration: 10 * time.Second, Warmup: time.Second}
			var backend backendFlag
			var jsonOut bool
			var plotFile string
			progress := "auto"
			fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "server `address`: host:port or unix:PATH")
			fs.IntVar(&cfg.Conns, "conns", cfg.Conns, "connections")
			fs.IntVar(&cfg.Depth, "depth", cfg.Depth, "outstanding REQUESTs per connection")
			fs.Func("size", "payload `bytes` per REQUEST (e.g. 64, 4K, 1M) (default 64)", func(s string) error {
				n, err := parseSize(s)
				cfg.Size = int(n)
				return err
			})
			fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long to measure, after the warmup")
			fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "how long to run before measuring")
			fs.Float64Var(&cfg.Rate, "rate", 0, "REQUESTs per second over all connections: open loop (0: closed loop)")
			fs.Var(&backend, "backend", backendUsage)
			fs.DurationVar(&cfg.BusyPoll, "busy-poll", 0, "spin this long for answers before the load's loop sleeps (epoll backend): the generator's own wake-ups then stay out of the round trips")
			fs.BoolVar(&cfg.PayloadCRC, "crc", false, "send every REQUEST with a PAYLOAD_CRC trailer")
			fs.BoolVar(&jsonOut, "json", false, "print one JSON object on stdout instead of the table")
			fs.StringVar(&plotFile, "plot", "", "write a latency-by-percentile chart to `file` (.svg or .png)")
			fs.StringVar(&progress, "progress", progress, "live progress line on stderr, `mode`: auto (when stderr is a terminal), always or never (default auto)")
			return func(ctx context.Context, e *env, _ []string) error {
				cfg.Backend = backend.b
				cfg.Logger = quietLogger(e.stderr)
				if err := setProgress(&cfg, e.stderr, progress); err != nil {
					return err
				}
				if err := checkPlotFile(plotFile); err != nil {
					return err
				}
				ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
				defer stop()
				res, err := runBench(ctx, cfg)
				if err != nil {
					return err
				}
				if jsonOut {
					err = res.writeJSON(e.stdout)
				} else {
					res.writeTable(e.stdout)
				}
				if err == nil && plotFile != "" {
					err = writePlot(plotFile, res)
				}
				if err != nil {
					return err
				}
				return res.err()
			}
		},
	}
}

// setProgress applies the --progress mode.
func setProgress(cfg *benchConfig, w io.Writer, mode string) error {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	switch mode {
	case "auto":
		if tty {
			cfg.Progress, cfg.ProgressTTY = w, true
		}
	case "always":
		cfg.Progress, cfg.ProgressTTY = w, tty
	case "never":
	default:
		return usageErrorf("invalid --progress %q: want auto, always or never", mode)
	}
	return nil
}

func checkPlotFile(name string) error {
	if name == "" {
		return nil
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".svg", ".png":
		return nil
	}
	return usageErrorf("--plot %s: the file name must end in .svg or .png", name)
}

// benchConfig describes one run of the load generator.
type benchConfig struct {
	Addr       string // host:port or unix:PATH
	Conns      int
	Depth      int // outstanding REQUESTs per connection (open loop: the cap)
	Size       int // payload bytes
	Duration   time.Duration
	Warmup     time.Duration
	Rate       float64 // REQUESTs per second over all connections; 0: closed loop
	Backend    zerowire.Backend
	BusyPoll   time.Duration // the client engine's; see ClientOptions.BusyPoll
	PayloadCRC bool

	// Progress receives a line each second while the run lasts; nil: none.
	// With ProgressTTY the line is rewritten in place.
	Progress    io.Writer
	ProgressTTY bool
	// Logger is the clients' logger; nil: warnings and errors on stderr.
	Logger *slog.Logger
}

func (cfg *benchConfig) validate() error {
	switch {
	case cfg.Conns < 1:
		return usageErrorf("--conns must be at least 1")
	case cfg.Depth < 1:
		return usageErrorf("--depth must be at least 1")
	case cfg.Size < 0 || cfg.Size > 1<<31:
		return usageErrorf("--size must be between 0 and %d", 1<<31)
	case cfg.Duration <= 0:
		return usageErrorf("--duration must be positive")
	case cfg.Warmup < 0:
		return usageErrorf("--warmup must not be negative")
	case cfg.Rate < 0:
		return usageErrorf("--rate must not be negative")
	case cfg.BusyPoll < 0:
		return usageErrorf("--busy-poll must not be negative")
	}
	return nil
}

// Latencies are recorded in nanoseconds, from 1 ns to a minute, with 3
// significant digits; a longer one is recorded as a minute.
const (
	histMin    = 1
	histMax    = int64(time.Minute)
	histDigits = 3
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histDigits) }

// benchResult is the outcome of a run.
type benchResult struct {
	Config   benchConfig
	Requests int64         // answered during the measurement window
	Errors   uint64        // failed calls and mismatched payloads, warmup included
	FirstErr error         // the first of them
	Elapsed  time.Duration // the measurement window
	Hist     *hdrhistogram.Histogram
}

// RPS is the REQUESTs answered per second of the measurement window.
func (r *benchResult) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// MBps is the payload throughput: request and response payload bytes
// (headers and trailers excluded), in 10^6 bytes per second.
func (r *benchResult) MBps() float64 {
	return r.RPS() * float64(2*r.Config.Size) / 1e6
}

// err is the run's failure as an exit status sees it.
func (r *benchResult) err() error {
	if r.Errors == 0 {
		return nil
	}
	return fmt.Errorf("bench: %d errors (first: %s)", r.Errors, oneLine(r.FirstErr))
}

var errMismatch = errors.New("response payload differs from the request")

const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseStop
)

// bench is the state of one run.
type bench struct {
	cfg      benchConfig
	epoch    time.Time
	phase    atomic.Int32
	open     bool
	conns    []*benchConn
	firstErr atomic.Pointer[error]

	// Closed loop: slots not yet retired; drained closes when none is left.
	outstanding atomic.Int64
	drained     chan struct{}
}

func (b *bench) now() int64 { return int64(time.Since(b.epoch)) }

// benchConn is one connection and what it measured.
type benchConn struct {
	b     *bench
	cl    *zerowire.Client
	slots []*slot
	free  chan *slot // open loop: slots not in flight
	errs  atomic.Uint64

	// mu guards what the done callbacks record on the client's loop and
	// the progress line reads from another goroutine; it is uncontended
	// but for that once-a-second read.
	mu   sync.Mutex
	hist *hdrhistogram.Histogram // latencies in the measurement window, ns
	n    uint64                  // answers, warmup included
}

// slot is one outstanding REQUEST's worth of state: its payload, when it
// was (or was meant to be) sent, and the done func Client.Go calls, made
// once so that a request allocates nothing.
type slot struct {
	c     *benchConn
	buf   []byte
	ctr   uint64
	start int64 // ns since the bench's epoch
	done  func(*zerowire.Response, error)
}

func (c *benchConn) fail(err error) {
	c.errs.Add(1)
	c.b.firstErr.CompareAndSwap(nil, &err)
}

func (c *benchConn) alive() bool {
	select {
	case <-c.cl.Done():
		return false
	default:
		return true
	}
}

// issue sends the slot's next REQUEST, stamped with start. Its payload is
// the slot's pattern with a per-request counter in the first 8 bytes, so a
// stale or misrouted answer does not compare equal.
func (s *slot) issue(start int64) bool {
	s.ctr++
	if len(s.buf) >= 8 {
		binary.LittleEndian.PutUint64(s.buf, s.ctr)
	}
	s.start = start
	if err := s.c.cl.Go(s.buf, s.done); err != nil {
		s.c.fail(err)
		return false
	}
	return true
}

// onDone runs on the client's loop with an answer; it must not block.
func (s *slot) onDone(r *zerowire.Response, err error) {
	c := s.c
	b := c.b
	now := b.now()
	if err != nil {
		c.fail(err)
	} else {
		ok := bytes.Equal(r.Payload(), s.buf)
		r.Release()
		if !ok {
			c.fail(errMismatch)
		}
		d := now - s.start
		if d > histMax {
			d = histMax
		}
		measuring := b.phase.Load() == phaseMeasure
		c.mu.Lock()
		c.n++
		if measuring && ok {
			c.hist.RecordValue(d)
		}
		c.mu.Unlock()
	}
	if b.open {
		c.free <- s // never blocks: free holds every slot
		return
	}
	if b.phase.Load() != phaseStop && (err == nil || c.alive()) && s.issue(b.now()) {
		return
	}
	if b.outstanding.Add(-1) == 0 {
		close(b.drained)
	}
}

// runBench runs the load generator described by cfg. It returns early, with
// what was measured so far, when ctx ends during the measurement; an error
// means the run could not take place (bad config, no connection).
func runBench(ctx context.Context, cfg benchConfig) (*benchResult, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger(os.Stderr)
	}
	b := &bench{cfg: cfg, epoch: time.Now(), open: cfg.Rate > 0, drained: make(chan struct{})}
	if err := b.dial(ctx); err != nil {
		return nil, err
	}
	defer b.closeAll()

	stop := make(chan struct{})
	var pacers sync.WaitGroup
	if b.open {
		b.startPacers(stop, &pacers)
	} else {
		b.outstanding.Store(int64(cfg.Conns * cfg.Depth))
		for _, c := range b.conns {
			for _, s := range c.slots {
				if !s.issue(b.now()) && b.outstanding.Add(-1) == 0 {
					close(b.drained)
				}
			}
		}
	}

	var prog sync.WaitGroup
	progStop := make(chan struct{})
	if cfg.Progress != nil {
		prog.Add(1)
		go func() { defer prog.Done(); b.progress(progStop) }()
	}

	res := &benchResult{Config: cfg, Hist: newHist()}
	var runErr error
	var start time.Time
	if wait(ctx, cfg.Warmup, b.drained) {
		b.phase.Store(phaseMeasure)
		start = time.Now()
		wait(ctx, cfg.Duration, b.drained)
		res.Elapsed = time.Since(start)
	} else {
		runErr = fmt.Errorf("bench: interrupted during the warmup")
	}
	b.phase.Store(phaseStop)
	close(progStop)
	prog.Wait()
	close(stop)
	pacers.Wait()
	b.drain(5 * time.Second)

	for _, c := range b.conns {
		c.mu.Lock()
		res.Hist.Merge(c.hist)
		c.mu.Unlock()
		res.Errors += c.errs.Load()
	}
	res.Requests = res.Hist.TotalCount()
	if p := b.firstErr.Load(); p != nil {
		res.FirstErr = *p
	}
	if runErr != nil {
		return nil, runErr
	}
	return res, nil
}

// dial opens the connections, a few at a time, and prepares their slots.
func (b *bench) dial(ctx context.Context) error {
	cfg := &b.cfg
	network, addr := splitAddr(cfg.Addr)
	var flags wire.Flags
	if cfg.PayloadCRC {
		flags = wire.FlagPayloadCRC
	}
	backend := cfg.Backend
	if backend == zerowire.BackendAuto && runtime.GOOS == "linux" {
		// The load generator drives its connections from Go callbacks on
		// the client's loops, which the epoll engine serves best.
		backend = zerowire.BackendEpoll
	}
	opts := &zerowire.ClientOptions{Backend: backend, BusyPoll: cfg.BusyPoll, PayloadCRC: cfg.PayloadCRC, Logger: cfg.Logger,
		MaxPacketSize: uint32(max(wire.DefaultMaxPacketSize, wire.PacketSize(cfg.Size, flags)))}
	b.conns = make([]*benchConn, cfg.Conns)
	errs := make([]error, cfg.Conns)
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i := range b.conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			cl, err := zerowire.Dial(dctx, network, addr, opts)
			if err != nil {
				errs[i] = fmt.Errorf("dial %s: %w", cfg.Addr, err)
				return
			}
			b.conns[i] = b.newConn(i, cl)
		}()
	}
	wg.Wait()
	if err := firstError(errs); err != nil {
		b.closeAll()
		return err
	}
	if max := b.conns[0].cl.MaxPacketSize(); wire.PacketSize(cfg.Size, flags) > max {
		b.closeAll()
		return fmt.Errorf("bench: a %d-byte payload exceeds the server's max_packet_size of %d bytes", cfg.Size, max)
	}
	return nil
}

func firstError(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) newConn(i int, cl *zerowire.Client) *benchConn {
	c := &benchConn{b: b, cl: cl, hist: newHist(), slots: make([]*slot, b.cfg.Depth)}
	if b.open {
		c.free = make(chan *slot, b.cfg.Depth)
	}
	for j := range c.slots {
		s := &slot{c: c, buf: make([]byte, b.cfg.Size)}
		for k := range s.buf {
			s.buf[k] = byte(k*7 + i*131 + j*17)
		}
		s.done = s.onDone
		c.slots[j] = s
		if b.open {
			c.free <- s
		}
	}
	return c
}

// startPacers starts one goroutine per connection that sends REQUESTs at
// the connection's share of the rate. Connections are offset from each
// other by a fraction of the interval, so the total stream is even.
func (b *bench) startPacers(stop <-chan struct{}, wg *sync.WaitGroup) {
	n := len(b.conns)
	interval := 1e9 * float64(n) / b.cfg.Rate // ns between two sends on one connection
	t0 := b.now()
	for i, c := range b.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.pace(t0+int64(interval*float64(i)/float64(n)), interval, stop)
		}()
	}
}

// pace sends the connection's REQUESTs at first, first+interval, ... Each
// is stamped with the time it was meant to be sent: when the generator is
// late (asleep too long, or every slot in flight), the delay counts in the
// latency instead of being omitted.
func (c *benchConn) pace(first int64, interval float64, stop <-chan struct{}) {
	b := c.b
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for i := int64(0); ; i++ {
		due := first + int64(float64(i)*interval)
		if d := due - b.now(); d > 0 {
			timer.Reset(time.Duration(d))
			select {
			case <-stop:
				return
			case <-timer.C:
			}
		}
		var s *slot
		select {
		case <-stop:
			return
		case s = <-c.free:
		}
		if !c.alive() || !s.issue(due) {
			c.free <- s
			return
		}
	}
}

// drain waits up to timeout for the REQUESTs in flight to be answered.
func (b *bench) drain(timeout time.Duration) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	if !b.open {
		select {
		case <-b.drained:
		case <-t.C:
		}
		return
	}
	for _, c := range b.conns {
		for range c.slots {
			select {
			case <-c.free:
			case <-t.C:
				return
			}
		}
	}
}

// closeAll closes the connections, in parallel: each Close waits for its
// GOAWAY exchange.
func (b *bench) closeAll() {
	var wg sync.WaitGroup
	for _, c := range b.conns {
		if c == nil {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); c.cl.Close() }()
	}
	wg.Wait()
}

// progress writes a line each second: elapsed time, answers per second in
// the last second, and the percentiles measured so far.
func (b *bench) progress(stop <-chan struct{}) {
	w := b.cfg.Progress
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	agg := newHist()
	var prevN uint64
	prevT := time.Now()
	for {
		select {
		case <-stop:
			if b.cfg.ProgressTTY {
				fmt.Fprint(w, "\r\x1b[K")
			}
			return
		case <-tick.C:
		}
		agg.Reset()
		var n, errs uint64
		for _, c := range b.conns {
			c.mu.Lock()
			n += c.n
			agg.Merge(c.hist)
			c.mu.Unlock()
			errs += c.errs.Load()
		}
		now := time.Now()
		rps := float64(n-prevN) / now.Sub(prevT).Seconds()
		prevN, prevT = n, now
		elapsed := time.Since(b.epoch).Round(time.Second)
		var line string
		if b.phase.Load() == phaseWarmup {
			line = fmt.Sprintf("%6s  warmup  %10.0f req/s  errors %d", elapsed, rps, errs)
		} else {
			line = fmt.Sprintf("%6s  %10.0f req/s  p50 %s  p99 %s  errors %d", elapsed, rps,
				fmtLatency(agg.ValueAtQuantile(50)), fmtLatency(agg.ValueAtQuantile(99)), errs)
		}
		if b.cfg.ProgressTTY {
			fmt.Fprintf(w, "\r\x1b[K%s", line)
		} else {
			fmt.Fprintln(w, line)
		}
	}
}

// fmtLatency formats nanoseconds as microseconds.
func fmtLatency(ns int64) string { return fmt.Sprintf("%.1fµs", float64(ns)/1e3) }
