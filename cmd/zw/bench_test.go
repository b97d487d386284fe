package main

import (
	"context"
	"errors"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/zerowire/zerowire"
)

// A request of the closed loop allocates nothing, nor does one of the open
// loop: two runs that differ only in length differ in requests, not in
// allocations.
func TestBenchAllocsPerRequest(t *testing.T) {
	if testing.Short() || raceEnabled || zwdebugEnabled {
		t.Skip("runs for ~3s; counts allocations, which -race and zwdebug add; the plain run asserts 0")
	}
	s := startServe(t, "--addr", "127.0.0.1:0", "--log-level", "warn")
	for _, rate := range []float64{0, 4000} {
		measure := func(d time.Duration) (mallocs uint64, requests int64) {
			cfg := benchConfig{Addr: s.addr, Conns: 2, Depth: 4, Size: 64, Duration: d, Rate: rate}
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			res, err := runBench(context.Background(), cfg)
			runtime.ReadMemStats(&m1)
			if err != nil || res.Errors != 0 {
				t.Fatalf("rate %v: %v, %d errors", rate, err, res.Errors)
			}
			return m1.Mallocs - m0.Mallocs, res.Requests
		}
		measure(100 * time.Millisecond) // fill the pools
		m1, r1 := measure(200 * time.Millisecond)
		m2, r2 := measure(1200 * time.Millisecond)
		if r2 <= r1 {
			t.Fatalf("rate %v: %d requests in the long run, %d in the short one", rate, r2, r1)
		}
		per := (float64(m2) - float64(m1)) / float64(r2-r1)
		t.Logf("rate %v: %d and %d requests, %d and %d mallocs: %.4f per request", rate, r1, r2, m1, m2, per)
		// An allocation per request shows as 1 or more. The runtime's own
		// allocations grow with the run's wall time (threads started for
		// Ps handed off by loops blocked in epoll_wait, timers), and the
		// open loop's long run lasts 4 s more for 4000 more requests:
		// 0.01 to 0.03 per request, which is not the bench's doing.
		if per > 0.1 {
			t.Errorf("rate %v: %.4f allocations per request, want 0", rate, per)
		}
	}
}

// handlerFunc adapts a function to zerowire.Handler.
type handlerFunc func(c *zerowire.Conn, p *zerowire.Packet)

func (f handlerFunc) OnOpen(*zerowire.Conn)                         {}
func (f handlerFunc) OnClose(*zerowire.Conn, error)                 {}
func (f handlerFunc) OnPacket(c *zerowire.Conn, p *zerowire.Packet) { f(c, p) }

func startServer(t *testing.T, h zerowire.Handler) string {
	t.Helper()
	srv, err := zerowire.NewServer(h, zerowire.Options{Loops: 1, Logger: quietLogger(io.Discard)})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv.Addr().String()
}

// A server that answers with other bytes is caught.
func TestBenchMismatch(t *testing.T) {
	addr := startServer(t, handlerFunc(func(c *zerowire.Conn, p *zerowire.Packet) {
		b := append([]byte(nil), p.Payload...)
		if p.Seq%10 == 0 {
			b[len(b)-1] ^= 1
		}
		c.Reply(p, b)
	}))
	res, err := runBench(context.Background(), benchConfig{Addr: addr, Conns: 2, Depth: 2, Size: 16,
		Duration: 200 * time.Millisecond, Logger: quietLogger(io.Discard)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors == 0 || !errors.Is(res.FirstErr, errMismatch) || res.Requests == 0 {
		t.Fatalf("%d requests, %d errors, first %v", res.Requests, res.Errors, res.FirstErr)
	}
	if res.err() == nil {
		t.Error("a run with errors has no error")
	}
}

// The open loop measures from the intended send time: against a server
// that takes 2 ms per REQUEST (500/s at depth 1), a 2000/s schedule piles
// up, and the latencies show the queue, not just the 2 ms of service.
func TestBenchOpenLoopCountsTheQueue(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for ~1s")
	}
	addr := startServer(t, handlerFunc(func(c *zerowire.Conn, p *zerowire.Packet) {
		d, err := c.Defer(p)
		if err != nil {
			t.Error(err)
			return
		}
		b := append([]byte(nil), p.Payload...)
		time.AfterFunc(2*time.Millisecond, func() { d.Reply(b) })
	}))
	cfg := benchConfig{Addr: addr, Conns: 1, Depth: 1, Size: 8, Duration: time.Second, Logger: quietLogger(io.Discard)}
	closed, err := runBench(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Rate = 2000
	open, err := runBench(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cp50, op50 := closed.Hist.ValueAtQuantile(50), open.Hist.ValueAtQuantile(50)
	t.Logf("closed loop p50 %s, open loop at 2000/s p50 %s (%.0f req/s)", fmtLatency(cp50), fmtLatency(op50), open.RPS())
	if cp50 < int64(2*time.Millisecond) || cp50 > int64(50*time.Millisecond) {
		t.Errorf("closed loop p50 %s, want about 2ms", fmtLatency(cp50))
	}
	if op50 < int64(100*time.Millisecond) {
		t.Errorf("open loop p50 %s: the queue behind a slow server is omitted", fmtLatency(op50))
	}
	if open.RPS() > 700 {
		t.Errorf("open loop answered %.0f req/s from a server that does 500", open.RPS())
	}
}
