package zerowire

import (
	"testing"
	"time"

	"github.com/zerowire/zerowire/wire"
)

// TestPartialBudget: packets that start and never finish are held against
// a server-wide budget; over it, readers pause instead of allocating, and
// each such connection is closed with IDLE_TIMEOUT once the partial
// deadline passes. Memory held returns to zero.
func TestPartialBudget(t *testing.T) {
	// A PartialTimeout of 1 s: the packets must still be held when the
	// test looks, however long it stalls after the last write.
	forBackends(t, Options{MaxPartialBytes: 200 << 10, PartialTimeout: time.Second}, func(t *testing.T, s *Server, h *echoHandler) {
		var conns []*rawConn
		for i := 0; i < 8; i++ {
			r := dialRaw(t, s.Addr().String())
			r.handshake(0)
			// A header announcing 100 KiB, and only the first 40 KiB of it.
			pkt := r.next(wire.FrameRequest, 0, make([]byte, 100<<10))
			r.write(pkt[:40<<10])
			conns = append(conns, r)
		}
		waitFor(t, "partial packets to be held", func() bool { return s.Stats().PartialBytes > 0 })
		// Over budget a connection keeps only the bytes it had already
		// read (here at most 40 KiB each) and reads no more.
		time.Sleep(50 * time.Millisecond)
		if got := s.Stats().PartialBytes; got > 200<<10+8*40<<10 {
			t.Fatalf("%d bytes held in partial packets, budget 200 KiB + 8 reads of 40 KiB", got)
		}
		// A well-behaved neighbour is served meanwhile.
		ok := dialRaw(t, s.Addr().String())
		ok.handshake(0)
		ok.write(ok.next(wire.FrameRequest, 0, []byte("fine")))
		if p := ok.read(); p.Type() != wire.FrameResponse {
			t.Fatalf("neighbour got %v", p.Type())
		}
		for _, r := range conns {
			r.expectError(wire.CodeIdleTimeout)
		}
		waitFor(t, "the budget to be returned", func() bool { return s.Stats().PartialBytes == 0 })
	})
}
