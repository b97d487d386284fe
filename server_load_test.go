package zerowire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/zerowire/zerowire/pool"
	"github.com/zerowire/zerowire/wire"
)

// copyKeepingHandler echoes, except that a REQUEST with COPY is answered
// later from another goroutine out of the payload the handler kept: the
// bytes must still be intact after OnPacket returned.
func copyKeepingHandler() *funcHandler {
	return &funcHandler{packet: func(c *Conn, p *Packet) {
		if p.Type() != wire.FrameRequest {
			return
		}
		if p.Flags&wire.FlagCopy == 0 {
			c.Reply(p, p.Payload)
			return
		}
		buf, err := p.Retain()
		if err != nil {
			c.ReplyError(p, wire.CodeApplication, err.Error())
			return
		}
		n := len(p.Payload)
		d, err := c.Defer(p)
		if err != nil {
			buf.Release()
			return
		}
		go func() {
			time.Sleep(time.Duration(rand.IntN(2)) * time.Millisecond)
			d.Reply(buf.Bytes()[:n])
			buf.Release()
		}()
	}}
}

// noise is random bytes that payloads are cut from: generating every
// payload byte by byte is slow under the race detector.
var noise = func() []byte {
	b := make([]byte, 256<<10)
	rand.NewChaCha8([32]byte{1}).Read(b)
	return b
}()

type sentReq struct {
	flags   wire.Flags
	payload []byte
}

// mixedStream builds HELLO and n REQUESTs of mixed sizes (the 64 KiB read
// buffer's edges, up to 200 KiB) and flags, returning the stream, each
// packet's end offset, and the requests by seq.
func mixedStream(rng *rand.Rand, n int) (stream []byte, ends []int, reqs map[uint64]sentReq) {
	edges := []int{0, 1, 5, 64, 4072, 16<<10 - 24, 64<<10 - 28, 64<<10 - 24, 64<<10 - 23, 64 << 10, 64<<10 + 1, 100000, 128 << 10, 200 << 10}
	flagSet := []wire.Flags{0, wire.FlagCopy, wire.FlagPayloadCRC, wire.FlagCopy | wire.FlagPayloadCRC}
	stream = helloPacket(wire.CapPayloadCRC)
	ends = append(ends, len(stream))
	reqs = make(map[uint64]sentReq, n)
	for seq := uint64(1); seq <= uint64(n); seq++ {
		var size int
		switch rng.IntN(3) {
		case 0:
			size = edges[rng.IntN(len(edges))]
		case 1:
			size = rng.IntN(2000)
		default:
			size = rng.IntN(200<<10 + 1)
		}
		off := rng.IntN(len(noise) - size + 1)
		payload := noise[off : off+size : off+size]
		flags := flagSet[rng.IntN(len(flagSet))]
		reqs[seq] = sentReq{flags, payload}
		stream = wire.AppendPacket(stream, wire.FrameRequest, flags, seq, payload)
		ends = append(ends, len(stream))
	}
	return stream, ends, reqs
}

// TestMixedSizesOneWrite sends many packets of mixed sizes, up to 200 KiB,
// with COPY and PAYLOAD_CRC, in one write, in random pieces, and in pieces
// cut inside each header, and checks every RESPONSE byte for byte.
func TestMixedSizesOneWrite(t *testing.T) {
	n := 150
	if testing.Short() {
		n = 40
	}
	splits := map[string]func(rng *rand.Rand, stream []byte, ends []int) [][]byte{
		"one write": func(_ *rand.Rand, stream []byte, _ []int) [][]byte { return [][]byte{stream} },
		"random pieces": func(rng *rand.Rand, stream []byte, _ []int) [][]byte {
			var out [][]byte
			for len(stream) > 0 {
				k := min(len(stream), 1+rng.IntN(150000))
				if rng.IntN(4) == 0 {
					k = min(len(stream), 1+rng.IntN(30))
				}
				out = append(out, stream[:k])
				stream = stream[k:]
			}
			return out
		},
		"cut in headers": func(rng *rand.Rand, stream []byte, ends []int) [][]byte {
			var out [][]byte
			prev := 0
			for _, e := range ends[:len(ends)-1] {
				cut := e + 1 + rng.IntN(wire.HeaderSize-1)
				out = append(out, stream[prev:cut])
				prev = cut
			}
			return append(out, stream[prev:])
		},
	}
	eachBackend(t, func(t *testing.T, b Backend) {
		h := copyKeepingHandler()
		s := startOn(t, b, h, Options{})
		base := settledPool(s)
		for name, split := range splits {
			t.Run(name, func(t *testing.T) {
				rng := rand.New(rand.NewPCG(1, uint64(len(name))))
				stream, ends, reqs := mixedStream(rng, n)
				pieces := split(rng, stream, ends)
				r := dialRaw(t, s.Addr().String())
				werr := make(chan error, 1)
				go func() {
					for _, p := range pieces {
						if _, err := r.c.Write(p); err != nil {
							werr <- err
							return
						}
					}
					werr <- nil
				}()
				r.expectHello()
				for got := 0; got < n; got++ {
					p, err := r.tryRead(20 * time.Second)
					if err != nil {
						t.Fatalf("after %d responses: %v", got, err)
					}
					want, ok := reqs[p.Seq]
					if p.Type() != wire.FrameResponse || !ok {
						t.Fatalf("got %v seq %d, want a RESPONSE to an outstanding REQUEST", p.Type(), p.Seq)
					}
					delete(reqs, p.Seq)
					if !bytes.Equal(p.Payload, want.payload) {
						t.Fatalf("RESPONSE seq %d: %d bytes differ from the REQUEST's %d", p.Seq, len(p.Payload), len(want.payload))
					}
					if p.Flags&wire.FlagCopy != 0 || p.Flags&wire.FlagPayloadCRC != want.flags&wire.FlagPayloadCRC {
						t.Fatalf("RESPONSE seq %d flags %#x for REQUEST flags %#x", p.Seq, p.Flags, want.flags)
					}
				}
				if err := <-werr; err != nil {
					t.Fatal(err)
				}
				r.c.Close()
			})
		}
		waitFor(t, "connections to close", func() bool { return s.Stats().Conns == 0 })
		waitPoolBack(t, func() pool.Stats { return settledPool(s) }, base)
	})
}

// TestCopyDataRetained: DATA frames with COPY are delivered in memory the
// handler may keep; kept past the callback, they still hold the bytes sent.
func TestCopyDataRetained(t *testing.T) {
	eachBackend(t, func(t *testing.T, b Backend) {
		var mu sync.Mutex
		var kept [][]byte
		var bufs []func()
		h := &funcHandler{packet: func(c *Conn, p *Packet) {
			if p.Type() == wire.FrameRequest {
				c.Reply(p, p.Payload)
				return
			}
			buf, err := p.Retain()
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			kept = append(kept, buf.Bytes()[:len(p.Payload)])
			bufs = append(bufs, buf.Release)
			mu.Unlock()
		}}
		s := startOn(t, b, h, Options{})
		base := settledPool(s)
		r := dialRaw(t, s.Addr().String())
		r.handshake(wire.CapPayloadCRC)
		var want [][]byte
		var stream []byte
		for i := 0; i < 200; i++ {
			payload := bytes.Repeat([]byte{byte(i)}, 1+i*331)
			want = append(want, payload)
			flags := wire.FlagCopy
			if i%3 == 0 {
				flags = 0 // Retain copies a view
			}
			stream = append(stream, r.next(wire.FrameData, flags, payload)...)
		}
		r.write(stream)
		r.echo([]byte("sync")) // every DATA before it was dispatched
		mu.Lock()
		defer mu.Unlock()
		if len(kept) != len(want) {
			t.Fatalf("kept %d DATA payloads, want %d", len(kept), len(want))
		}
		for i := range want {
			if !bytes.Equal(kept[i], want[i]) {
				t.Fatalf("kept payload %d changed after the callback", i)
			}
		}
		for _, release := range bufs {
			release()
		}
		r.c.Close()
		waitFor(t, "the connection to close", func() bool { return s.Stats().Conns == 0 })
		waitPoolBack(t, func() pool.Stats { return settledPool(s) }, base)
	})
}

// TestManyConnections opens thousands of concurrent connections (both ends
// in this process), each doing HELLO and a REQUEST, and keeps them all open
// until the last has its RESPONSE.
func TestManyConnections(t *testing.T) {
	eachBackend(t, func(t *testing.T, b Backend) {
		want := 9000
		if b == BackendNet {
			want = 2000 // a goroutine per connection on each side
		}
		if testing.Short() {
			want /= 4
		}
		// Both ends of each connection are in this process; leave room for
		// the rest of the test binary.
		n := min(want, (fdLimit(t)-openFDs(t)-200)/2)
		if n < want {
			t.Logf("RLIMIT_NOFILE allows %d connections, not %d", n, want)
		}
		if n < 100 {
			t.Fatalf("RLIMIT_NOFILE %d is too low for this test", fdLimit(t))
		}
		s := startOn(t, b, &funcHandler{}, Options{Logger: quietLogger()})
		addr := s.Addr().String()
		conns := make([]net.Conn, n)
		defer func() {
			for _, c := range conns {
				if c != nil {
					c.Close()
				}
			}
		}()
		const batch = 250
		for start := 0; start < n; start += batch {
			end := min(n, start+batch)
			var wg sync.WaitGroup
			errs := make(chan error, end-start)
			for i := start; i < end; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := manyConnsDialEcho(addr, i)
					conns[i] = c
					if err != nil {
						errs <- fmt.Errorf("connection %d: %w", i, err)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
		}
		if got := s.Stats().Conns; got != int64(n) {
			t.Fatalf("server has %d connections open, want %d", got, n)
		}
		// Every connection still works with all the others open.
		for i := 0; i < n; i += n / 50 {
			if err := manyConnsEcho(conns[i], 2, fmt.Sprint("again ", i)); err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
		}
		for i, c := range conns {
			c.Close()
			conns[i] = nil
		}
		waitLong(t, 30*time.Second, "every connection to close", func() bool { return s.Stats().Conns == 0 })
	})
}

// manyConnsDialEcho dials, sends HELLO and REQUEST 1 in one write, and
// checks the server's HELLO and RESPONSE, with no per-connection buffers
// beyond a small one.
func manyConnsDialEcho(addr string, i int) (net.Conn, error) {
	var c net.Conn
	var err error
	for try := 0; ; try++ {
		c, err = net.DialTimeout("tcp", addr, 10*time.Second)
		if err == nil || try == 3 {
			break
		}
		time.Sleep(50 * time.Millisecond) // a full accept queue
	}
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	msg := fmt.Sprint("conn ", i)
	out := append(helloPacket(0), wire.AppendPacket(nil, wire.FrameRequest, 0, 1, []byte(msg))...)
	if _, err := c.Write(out); err != nil {
		return c, err
	}
	var hdr [wire.HeaderSize + 64]byte
	if _, err := io.ReadFull(c, hdr[:wire.HeaderSize]); err != nil {
		return c, err
	}
	size := binary.LittleEndian.Uint32(hdr[8:12])
	if size > uint32(len(hdr)) {
		return c, fmt.Errorf("first packet of %d bytes", size)
	}
	if _, err := io.ReadFull(c, hdr[wire.HeaderSize:size]); err != nil {
		return c, err
	}
	p, _, err := wire.Parse(hdr[:size], wire.Limits{})
	if err != nil || p.Type() != wire.FrameHello {
		return c, fmt.Errorf("first packet %v, %v; want HELLO", p.Type(), err)
	}
	return c, readResponse(c, 1, msg)
}

func manyConnsEcho(c net.Conn, seq uint64, msg string) error {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(wire.AppendPacket(nil, wire.FrameRequest, 0, seq, []byte(msg))); err != nil {
		return err
	}
	return readResponse(c, seq, msg)
}

func readResponse(c net.Conn, seq uint64, msg string) error {
	buf := make([]byte, wire.HeaderSize+len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	p, _, err := wire.Parse(buf, wire.Limits{})
	if err != nil {
		return err
	}
	if p.Type() != wire.FrameResponse || p.Seq != seq || string(p.Payload) != msg {
		return errors.New("wrong RESPONSE: " + p.Type().String() + " " + string(p.Payload))
	}
	return nil
}
