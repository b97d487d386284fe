package faults

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/zerowire/zerowire"
	"github.com/zerowire/zerowire/pool"
	"github.com/zerowire/zerowire/wire"
)

var (
	long = flag.Bool("faults.long", false, "run the long suite: larger counts, longer loads, both server backends")
)

// pick returns short, or long under -faults.long.
func pick[T any](short, long_ T) T {
	if *long {
		return long_
	}
	return short
}

func TestMain(m *testing.M) {
	flag.Parse()
	// toxiproxy logs through zerolog's global logger (the bandwidth toxic
	// does, whatever the proxy's own logger): silence it.
	zerolog.SetGlobalLevel(zerolog.Disabled)
	// The client engine of each backend is process-wide and lives for the
	// rest of the process once the first Client dials: start both now, so
	// that the goroutine and fd baselines of the tests already count them.
	if err := warmUp(); err != nil {
		fmt.Fprintln(os.Stderr, "warm-up:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func warmUp() error {
	srv, err := zerowire.NewServer(echoHandler{}, zerowire.Options{Logger: quiet()})
	if err != nil {
		return err
	}
	defer srv.Close()
	if err := srv.Listen("127.0.0.1:0"); err != nil {
		return err
	}
	for _, b := range []zerowire.Backend{zerowire.BackendAuto, zerowire.BackendNet} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cl, err := zerowire.Dial(ctx, "tcp", srv.Addr().String(), &zerowire.ClientOptions{Backend: b, Logger: quiet()})
		if err == nil {
			_, err = cl.CallBytes(ctx, []byte("warm"))
			cl.Close()
		}
		cancel()
		if err != nil {
			return fmt.Errorf("%v client: %w", b, err)
		}
	}
	return nil
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// echoHandler answers every REQUEST with its own payload.
type echoHandler struct{}

func (echoHandler) OnOpen(*zerowire.Conn)         {}
func (echoHandler) OnClose(*zerowire.Conn, error) {}
func (echoHandler) OnPacket(c *zerowire.Conn, p *zerowire.Packet) {
	if p.Type() == zerowire.FrameRequest {
		c.Reply(p, p.Payload)
	}
}

// serverBackends are the server backends a test runs on: the default one,
// and under -faults.long the portable one too.
func serverBackends() []zerowire.Backend {
	if *long {
		return []zerowire.Backend{zerowire.BackendEpoll, zerowire.BackendNet}
	}
	return []zerowire.Backend{zerowire.BackendAuto}
}

func backendName(b zerowire.Backend) string {
	if b == zerowire.BackendAuto {
		return "default"
	}
	return b.String()
}

// ---- outcomes ----

// class is what a call's outcome tells its caller.
type class int

const (
	classOK      class = iota // the RESPONSE, with the bytes sent
	classSafe                 // not processed: safe to retry
	classUnknown              // may or may not have been processed
	classBad                  // wrong bytes, or an error that says neither
)

// dialError is a call that never left: its Client could not be dialed.
type dialError struct{ err error }

func (e dialError) Error() string { return "dial: " + e.err.Error() }
func (e dialError) Unwrap() error { return e.err }

// classify sorts a call's error and names it for the tallies.
func classify(err error) (class, string) {
	var de dialError
	var we *wire.Error
	switch {
	case err == nil:
		return classOK, "ok"
	case errors.As(err, &de):
		return classSafe, "dial failed (not sent)"
	case errors.Is(err, zerowire.ErrNotProcessed):
		return classSafe, "ErrNotProcessed"
	case errors.Is(err, zerowire.ErrGoingAway):
		return classSafe, "ErrGoingAway"
	case errors.Is(err, zerowire.ErrNoConnection):
		return classSafe, "ErrNoConnection"
	case errors.Is(err, zerowire.ErrClosed):
		// Client.Call returns it before sending anything, for a client
		// whose connection has already ended.
		return classSafe, "ErrClosed (not sent)"
	case errors.Is(err, zerowire.ErrConnLost):
		return classUnknown, "ErrConnLost"
	case errors.Is(err, context.DeadlineExceeded):
		return classUnknown, "deadline"
	case errors.As(err, &we):
		return classBad, "ERROR " + we.Code.String()
	}
	return classBad, fmt.Sprintf("%T: %v", err, err)
}

// tally counts the outcomes of a load.
type tally struct {
	calls, ok, safe, unknown, bad, hangs atomic.Int64
	maxElapsed                           atomic.Int64 // ns past the deadline, worst call

	mu       sync.Mutex
	kinds    map[string]int
	examples []string
}

func (t *tally) record(err error, elapsed, deadline, margin time.Duration, wrong string) {
	t.calls.Add(1)
	c, kind := classify(err)
	if wrong != "" {
		c, kind = classBad, "wrong payload"
	}
	switch c {
	case classOK:
		t.ok.Add(1)
	case classSafe:
		t.safe.Add(1)
	case classUnknown:
		t.unknown.Add(1)
	default:
		t.bad.Add(1)
	}
	over := elapsed - deadline
	for {
		m := t.maxElapsed.Load()
		if int64(over) <= m || t.maxElapsed.CompareAndSwap(m, int64(over)) {
			break
		}
	}
	late := elapsed > deadline+margin
	if late {
		t.hangs.Add(1)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.kinds == nil {
		t.kinds = map[string]int{}
	}
	t.kinds[kind]++
	if (c == classBad || late) && len(t.examples) < 10 {
		ex := kind
		if wrong != "" {
			ex += ": " + wrong
		} else if err != nil {
			ex += ": " + err.Error()
		}
		if late {
			ex = fmt.Sprintf("returned after %v (deadline %v): %s", elapsed.Round(time.Millisecond), deadline, ex)
		}
		t.examples = append(t.examples, ex)
	}
}

func (t *tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var ks []string
	for k, n := range t.kinds {
		ks = append(ks, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(ks)
	return fmt.Sprintf("%d calls: %d ok / %d safe-retry / %d unknown / %d hangs / %d bad [%s]; worst return %v past the deadline",
		t.calls.Load(), t.ok.Load(), t.safe.Load(), t.unknown.Load(), t.hangs.Load(), t.bad.Load(),
		strings.Join(ks, " "), time.Duration(t.maxElapsed.Load()).Round(time.Millisecond))
}

// check fails t for hangs and bad outcomes, and for calls without exactly
// one outcome.
func (tl *tally) check(t *testing.T, want int64) {
	t.Helper()
	if got := tl.ok.Load() + tl.safe.Load() + tl.unknown.Load() + tl.bad.Load(); got != tl.calls.Load() || got != want {
		t.Errorf("%d outcomes for %d calls recorded, %d made", got, tl.calls.Load(), want)
	}
	if tl.hangs.Load() > 0 || tl.bad.Load() > 0 {
		tl.mu.Lock()
		ex := strings.Join(tl.examples, "\n\t")
		tl.mu.Unlock()
		t.Errorf("%d calls returned past their deadline + margin, %d with a bad outcome; for example:\n\t%s", tl.hangs.Load(), tl.bad.Load(), ex)
	}
}

// ---- payloads ----

// payloadSize draws a size in 0..max: mostly small, some large, the edges
// included.
func payloadSize(r *rand.Rand, max int) int {
	switch x := r.IntN(100); {
	case x < 5:
		return 0
	case x < 10:
		return max
	case x < 30:
		return r.IntN(65)
	case x < 65:
		return r.IntN(min(4097, max+1))
	case x < 90:
		return r.IntN(min(16<<10, max) + 1)
	default:
		return r.IntN(max + 1)
	}
}

// newRand is a generator seeded with seed and the clock.
func newRand(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, uint64(time.Now().UnixNano())))
}

// fillPayload makes a payload of n bytes that names its call.
func fillPayload(b []byte, r *rand.Rand) {
	for i := 0; i < len(b); i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < len(b); j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
}

// caller makes one call; the Pool and a Client redialed on loss are the
// two kinds.
type caller interface {
	call(ctx context.Context, payload []byte) (*zerowire.Response, error)
	close()
}

type poolCaller struct{ p *zerowire.Pool }

func (c poolCaller) call(ctx context.Context, payload []byte) (*zerowire.Response, error) {
	return c.p.Call(ctx, payload)
}
func (poolCaller) close() {}

// clientCaller holds one Client, dialed again (within the call's deadline)
// once its connection has ended. A call that reaches its deadline retires
// the Client, as an application that does not trust a silent connection
// would: a black-holed connection never ends by itself.
type clientCaller struct {
	addr    string
	opts    zerowire.ClientOptions
	cl      *zerowire.Client
	closing sync.WaitGroup
}

func (c *clientCaller) call(ctx context.Context, payload []byte) (*zerowire.Response, error) {
	if c.cl != nil {
		select {
		case <-c.cl.Done():
			c.cl = nil
		default:
		}
	}
	if c.cl == nil {
		cl, err := zerowire.Dial(ctx, "tcp", c.addr, &c.opts)
		if err != nil {
			return nil, dialError{err}
		}
		c.cl = cl
	}
	r, err := c.cl.Call(ctx, payload)
	if errors.Is(err, context.DeadlineExceeded) {
		c.retire()
	}
	return r, err
}

// retire closes the Client in the background: Close lingers for the
// answers still owed.
func (c *clientCaller) retire() {
	cl := c.cl
	c.cl = nil
	c.closing.Add(1)
	go func() {
		defer c.closing.Done()
		cl.Close()
	}()
}

func (c *clientCaller) close() {
	if c.cl != nil {
		c.retire()
	}
	c.closing.Wait()
}

// load is a set of goroutines making calls.
type load struct {
	goroutines int
	calls      int // per goroutine; 0 means until stop
	deadline   time.Duration
	margin     time.Duration // a call returning later than deadline+margin hangs
	maxPayload int
	pause      time.Duration // between two calls of a goroutine
}

// run makes the calls, each with its own deadline, and records every
// outcome in tl, and again in by[g%len(by)] for goroutine g when by is
// given. done counts completed calls as they come. It returns when
// every goroutine has finished (stop closed, or its calls made), or fails
// the test when they do not finish in time.
func (l load) run(t *testing.T, tl *tally, by []*tally, callers []caller, stop <-chan struct{}, done *atomic.Int64) {
	t.Helper()
	var wg sync.WaitGroup
	for g := 0; g < l.goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := newRand(uint64(g))
			buf := make([]byte, l.maxPayload)
			c := callers[g%len(callers)]
			for i := 0; l.calls == 0 || i < l.calls; i++ {
				select {
				case <-stop:
					return
				default:
				}
				payload := buf[:payloadSize(r, l.maxPayload)]
				fillPayload(payload, r)
				ctx, cancel := context.WithTimeout(context.Background(), l.deadline)
				start := time.Now()
				resp, err := c.call(ctx, payload)
				elapsed := time.Since(start)
				cancel()
				wrong := ""
				if err == nil {
					if got := resp.Payload(); !bytes.Equal(got, payload) {
						wrong = fmt.Sprintf("sent %d bytes, got %d back (first difference at %d)", len(payload), len(got), firstDiff(got, payload))
					}
					resp.Release()
				}
				tl.record(err, elapsed, l.deadline, l.margin, wrong)
				if len(by) > 0 {
					by[g%len(by)].record(err, elapsed, l.deadline, l.margin, wrong)
				}
				if done != nil {
					done.Add(1)
				}
				if l.pause > 0 {
					time.Sleep(l.pause)
				}
			}
		}()
	}
	limit := 30 * time.Second
	if l.calls > 0 {
		limit += time.Duration(l.calls) * (l.deadline + l.margin)
	}
	if !waitGroup(&wg, limit) {
		t.Fatalf("the load did not finish within %v: some call hangs\n%s", limit, ourStacks())
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// waitGroup waits for wg for up to d.
func waitGroup(wg *sync.WaitGroup, d time.Duration) bool {
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

// ---- a client that bypasses the faults ----

// directEcho calls the server straight (not through the proxy) in a loop
// until the returned stop is called, which reports how many echoes
// succeeded and fails t for any that did not: the server keeps serving
// other clients whatever happens on the faulty path.
func directEcho(t *testing.T, addr string) (stop func() int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	cl, err := zerowire.Dial(ctx, "tcp", addr, &zerowire.ClientOptions{Logger: quiet()})
	cancel()
	if err != nil {
		t.Fatalf("direct client: %v", err)
	}
	var n atomic.Int64
	var errs []string
	quit := make(chan struct{})
	finished := make(chan struct{})
	echo := func(r *rand.Rand, buf []byte) error {
		payload := buf[:payloadSize(r, len(buf))]
		fillPayload(payload, r)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		got, err := cl.CallBytes(ctx, payload)
		if err == nil && !bytes.Equal(got, payload) {
			err = fmt.Errorf("sent %d bytes, got %d back", len(payload), len(got))
		}
		if err == nil {
			n.Add(1)
		}
		return err
	}
	go func() {
		defer close(finished)
		r := rand.New(rand.NewPCG(1, 2))
		buf := make([]byte, 64<<10)
		for {
			select {
			case <-quit:
				return
			default:
			}
			if err := echo(r, buf); err != nil && len(errs) < 5 {
				errs = append(errs, err.Error())
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return func() int {
		t.Helper()
		close(quit)
		<-finished
		during := int(n.Load())
		// And after the faults, one more.
		if err := echo(rand.New(rand.NewPCG(3, 4)), make([]byte, 64<<10)); err != nil {
			errs = append(errs, "after: "+err.Error())
		}
		cl.Close()
		if len(errs) > 0 {
			t.Errorf("the direct client failed: %s", strings.Join(errs, "; "))
		}
		if during == 0 {
			t.Errorf("the direct client echoed nothing during the load")
		}
		return during
	}
}

// ---- leaks ----

// goroutineStacks returns the stacks of every goroutine.
func goroutineStacks() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Split(string(buf[:n]), "\n\n")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// isToxiproxy tells the goroutines of toxiproxy itself, which leaks some:
// a link whose toxic closed its stub (limit_data, timeout, reset_peer)
// leaves the stubs before it blocked on an unbuffered channel send that
// nothing will ever receive. They are toxiproxy's, not zerowire's.
func isToxiproxy(stack string) bool {
	return strings.Contains(stack, "github.com/Shopify/toxiproxy/")
}

// ourGoroutines counts the goroutines that are not toxiproxy's.
func ourGoroutines() (ours, toxi int) {
	for _, s := range goroutineStacks() {
		if isToxiproxy(s) {
			toxi++
		} else {
			ours++
		}
	}
	return ours, toxi
}

func ourStacks() string {
	var b strings.Builder
	for _, s := range goroutineStacks() {
		if !isToxiproxy(s) {
			b.WriteString(s)
			b.WriteString("\n\n")
		}
	}
	return b.String()
}

// openFDs counts this process's open file descriptors, or -1 where
// /proc/self/fd does not exist.
func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// leakCheck takes the goroutine and fd counts now; the func it returns
// waits (up to 10s) for them to come back, and fails t if they do not.
func leakCheck(t *testing.T) func() {
	t.Helper()
	g0, toxi0 := ourGoroutines()
	fd0 := openFDs()
	return func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			g, toxi := ourGoroutines()
			fd := openFDs()
			if g <= g0 && fd <= fd0 {
				t.Logf("leak check: %d goroutines (baseline %d), %d fds (baseline %d); toxiproxy's own goroutines %d (were %d)", g, g0, fd, fd0, toxi, toxi0)
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("leak: %d goroutines (baseline %d, toxiproxy's excluded), %d fds (baseline %d)\n%s", g, g0, fd, fd0, ourStacks())
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// newPool is a buffer pool of the test's own for a server, so that what
// it holds can be counted after the server closes.
func newPool(t *testing.T) *pool.Pool {
	t.Helper()
	p, err := pool.New(pool.Options{MaxBytes: 512 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// poolBack checks that every class of p has no buffer in use: p belonged
// to a server that has closed.
func poolBack(t *testing.T, p *pool.Pool) {
	t.Helper()
	st := p.Stats()
	var over []string
	total := 0
	for _, c := range st.Classes {
		total += c.Slots
		if c.InUse != 0 {
			over = append(over, fmt.Sprintf("%d-byte class: %d in use", c.Size, c.InUse))
		}
	}
	if len(over) > 0 {
		t.Errorf("pool buffers still in use after the server closed: %s", strings.Join(over, ", "))
	} else {
		t.Logf("pool: every class back to 0 in use (%d buffers mapped)", total)
	}
}
