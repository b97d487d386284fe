package zerowire

import (
	"bufio"
	"context"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/zerowire/zerowire/wire"
)

// netEchoServer is the baseline: goroutine per connection on Go's net
// package, bufio, flushing when the reader is drained.
func netEchoServer(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveNetEcho(c)
		}
	}()
	return ln.Addr().String()
}

func serveNetEcho(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 64<<10)
	w := bufio.NewWriterSize(c, 64<<10)
	buf := make([]byte, 0, 64<<10)
	lim := wire.Limits{MaxPacketSize: wire.DefaultMaxPacketSize, PayloadCRC: true}
	hello := wire.Hello{MinVersion: 1, MaxVersion: 1, MaxPacketSize: wire.DefaultMaxPacketSize, Capabilities: wire.CapPayloadCRC}
	first := true
	for {
		hdr, err := r.Peek(wire.HeaderSize)
		if err != nil {
			return
		}
		h, err := wire.DecodeHeader(hdr)
		if err != nil {
			return
		}
		buf = buf[:h.Size]
		if _, err := io.ReadFull(r, buf); err != nil {
			return
		}
		p, _, err := wire.Parse(buf, lim)
		if err != nil {
			return
		}
		switch p.Type() {
		case wire.FrameHello:
			if first {
				w.Write(wire.AppendPacket(nil, wire.FrameHello, 0, 0, wire.AppendHello(nil, hello)))
			}
		case wire.FrameRequest:
			out := w.AvailableBuffer()
			w.Write(wire.AppendPacket(out, wire.FrameResponse, p.Flags&wire.FlagPayloadCRC, p.Seq, p.Payload))
		case wire.FramePing:
			out := w.AvailableBuffer()
			w.Write(wire.AppendPacket(out, wire.FramePong, p.Flags&wire.FlagPayloadCRC, p.Seq, p.Payload))
		}
		first = false
		if r.Buffered() == 0 {
			if w.Flush() != nil {
				return
			}
		}
	}
}

// netCaller is the baseline client: a plain net.Conn request/response loop.
type netCaller struct {
	c   net.Conn
	r   *bufio.Reader
	seq uint64
	out []byte
	in  []byte
}

func dialNetCaller(tb testing.TB, addr string) *netCaller {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	nc := &netCaller{c: c, r: bufio.NewReaderSize(c, 64<<10), out: make([]byte, 0, 64<<10), in: make([]byte, 64<<10)}
	c.Write(helloPacket(0))
	nc.readPacket(tb)
	return nc
}

func (n *netCaller) readPacket(tb testing.TB) []byte {
	hdr, err := n.r.Peek(wire.HeaderSize)
	if err != nil {
		tb.Fatal(err)
	}
	h, _ := wire.DecodeHeader(hdr)
	b := n.in[:h.Size]
	if _, err := io.ReadFull(n.r, b); err != nil {
		tb.Fatal(err)
	}
	return b
}

func (n *netCaller) call(tb testing.TB, payload []byte) {
	n.seq++
	n.out = wire.AppendPacket(n.out[:0], wire.FrameRequest, 0, n.seq, payload)
	if _, err := n.c.Write(n.out); err != nil {
		tb.Fatal(err)
	}
	n.readPacket(tb)
}

// BenchmarkCall compares a round trip on our client and server with the
// same on Go's net package, with 1 and 64 goroutines.
func BenchmarkCall(b *testing.B) {
	payload := make([]byte, 64)
	b.Run("zerowire/1", func(b *testing.B) {
		s := startServer(b, &echoHandler{}, Options{})
		cl := dialTest(b, s, BackendAuto, nil)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			r, err := cl.Call(context.Background(), payload)
			if err != nil {
				b.Fatal(err)
			}
			r.Release()
		}
	})
	b.Run("net/1", func(b *testing.B) {
		nc := dialNetCaller(b, netEchoServer(b))
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			nc.call(b, payload)
		}
	})
	b.Run("zerowire/64", func(b *testing.B) {
		s := startServer(b, &echoHandler{}, Options{})
		cl := dialTest(b, s, BackendAuto, nil)
		b.ReportAllocs()
		b.SetParallelism(32)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				r, err := cl.Call(context.Background(), payload)
				if err != nil {
					b.Error(err)
					return
				}
				r.Release()
			}
		})
	})
	b.Run("net/64", func(b *testing.B) {
		addr := netEchoServer(b)
		var mu sync.Mutex
		callers := []*netCaller{}
		for i := 0; i < 64; i++ {
			callers = append(callers, dialNetCaller(b, addr))
		}
		b.ReportAllocs()
		b.SetParallelism(32)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			mu.Lock()
			nc := callers[len(callers)-1]
			callers = callers[:len(callers)-1]
			mu.Unlock()
			for pb.Next() {
				nc.call(b, payload)
			}
		})
	})
}

// BenchmarkGo is the asynchronous form: depth calls kept in flight with
// one reused completion func; it reports allocations per call.
func BenchmarkGo(b *testing.B) {
	s := startServer(b, &echoHandler{}, Options{})
	cl := dialTest(b, s, BackendAuto, nil)
	payload := make([]byte, 64)
	const depth = 16
	var wg sync.WaitGroup
	var issued int
	var mu sync.Mutex
	var done func(*Response, error)
	done = func(r *Response, err error) {
		if err != nil {
			b.Error(err)
		} else {
			r.Release()
		}
		mu.Lock()
		more := issued < b.N
		if more {
			issued++
		}
		mu.Unlock()
		if more {
			cl.Go(payload, done)
		}
		wg.Done()
	}
	b.ReportAllocs()
	b.ResetTimer()
	wg.Add(b.N)
	mu.Lock()
	start := min(depth, b.N)
	issued = start
	mu.Unlock()
	for i := 0; i < start; i++ {
		cl.Go(payload, done)
	}
	wg.Wait()
}
