package zerowire

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zerowire/zerowire/wire"
)

// Tests of the outbound queue's limit (MaxQueuedBytes) and of how a slow
// consumer is closed. Linux only: they shrink socket buffers, so that the
// server's queue, not megabytes of loopback buffering, takes the backlog.

// dialSmall dials addr with a receive buffer of 4 KiB, set before the
// connect so that the window the peer sees is small from the start.
func dialSmall(t *testing.T, addr string) *rawConn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096) })
	}}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, r: bufio.NewReaderSize(c, 1<<20)}
}

// shrinkSendBuffers sets the send buffer of every server connection to
// 4 KiB, on its loop.
func shrinkSendBuffers(t *testing.T, s *Server) {
	t.Helper()
	n := 0
	s.eachLoopConn(func(c *Conn) {
		var err error
		if c.l.net {
			err = c.l.nc.(*net.TCPConn).SetWriteBuffer(4096)
		} else {
			err = unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4096)
		}
		if err != nil {
			t.Errorf("SO_SNDBUF: %v", err)
		}
		n++
	})
	if n == 0 {
		t.Fatal("no server connection to shrink")
	}
}

// queuePayload is the payload of REQUEST seq: its seq, repeated, so that an
// answer carrying another REQUEST's bytes is caught.
func queuePayload(seq uint64, size int) []byte {
	b := make([]byte, size)
	for i := 0; i+8 <= size; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], seq)
	}
	return b
}

// TestQueueLimitHolds: a peer that pipelines many REQUESTs and does not
// read its answers makes the server's queue to it grow to MaxQueuedBytes
// plus at most one packet, not by the answers to a whole read; once the
// peer reads, every REQUEST is answered, in order, with its own payload.
//
// The handler stalls on the first REQUEST so that the rest pile up in the
// socket and the server's next reads are whole read buffers: 64 KiB of
// REQUESTs at once, eight times what the limit lets queue.
func TestQueueLimitHolds(t *testing.T) {
	const (
		limit   = 16 << 10
		size    = 8 << 10
		count   = 96
		packet  = wire.HeaderSize + size
		bound   = limit + packet
		stallMS = 100
	)
	eachBackend(t, func(t *testing.T, b Backend) {
		h := &funcHandler{packet: func(c *Conn, p *Packet) {
			if p.Seq == 1 {
				time.Sleep(stallMS * time.Millisecond) // the rest piles up in the socket
			}
			c.Reply(p, p.Payload)
		}}
		s := startOn(t, b, h, Options{MaxQueuedBytes: limit, SlowConsumerTimeout: time.Minute})
		r := dialSmall(t, s.Addr().String())
		r.handshake(0)
		shrinkSendBuffers(t, s)

		var reqs []byte
		for seq := uint64(1); seq <= count; seq++ {
			reqs = wire.AppendPacket(reqs, wire.FrameRequest, 0, seq, queuePayload(seq, size))
		}
		wrote := make(chan error, 1)
		go func() {
			r.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
			_, err := r.c.Write(reqs) // blocks while the server does not read
			wrote <- err
		}()

		// The epoll backend's queue, sampled on its loop (the net backend
		// has none: its writes block, and the kernel's buffers queue).
		var mu sync.Mutex
		most, paused := 0, false
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			if b != BackendEpoll {
				return
			}
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
				s.eachLoopConn(func(c *Conn) {
					mu.Lock()
					most = max(most, c.queued())
					paused = paused || c.overAt != 0
					mu.Unlock()
				})
			}
		}()
		if b == BackendEpoll {
			waitLong(t, 20*time.Second, "the queue to pass its limit", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return paused
			})
			// The peer still reads nothing: whatever one read's answers add
			// to the queue is there by now.
			time.Sleep(3 * stallMS * time.Millisecond)
		}
		for seq := uint64(1); seq <= count; seq++ {
			r.expectResponse(seq, queuePayload(seq, size))
		}
		if err := <-wrote; err != nil {
			t.Fatalf("writing the REQUESTs: %v", err)
		}
		r.seq = count
		r.echo([]byte("still open"))
		close(stop)
		<-sampled
		if b == BackendEpoll {
			if most <= limit {
				t.Fatalf("the queue peaked at %d bytes, never over its limit %d: the test did not reach the limit", most, limit)
			}
			if most > bound {
				t.Errorf("the queue reached %d bytes: over MaxQueuedBytes %d + one packet (%d)", most, limit, packet)
			}
			t.Logf("queue peak %d bytes (limit %d, bound %d)", most, limit, bound)
		}
		if n := s.Stats().SlowConsumers; n != 0 {
			t.Errorf("SlowConsumers = %d, want 0", n)
		}
	})
}

// TestSlowConsumerClosedAtOnce: a peer that keeps writing and never reads is
// closed as soon as its SLOW_CONSUMER deadline passes, not after a
// lingering close: its ERROR is stuck behind the queue it did not read, so
// lingering would only read and discard what it goes on sending. CloseLinger
// is a minute here; the close must come long before.
func TestSlowConsumerClosedAtOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, b Backend) {
		h := &funcHandler{}
		s := startOn(t, b, h, Options{MaxQueuedBytes: 16 << 10, SlowConsumerTimeout: 100 * time.Millisecond, CloseLinger: time.Minute})
		r := dialSmall(t, s.Addr().String())
		r.handshake(0)
		shrinkSendBuffers(t, s)
		done := make(chan error, 1)
		go func() {
			var seq uint64
			payload := make([]byte, 8<<10)
			for {
				seq++
				r.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
				if _, err := r.c.Write(wire.AppendPacket(nil, wire.FrameRequest, 0, seq, payload)); err != nil {
					done <- err
					return
				}
			}
		}()
		waitLong(t, 20*time.Second, "the slow consumer to be closed", func() bool {
			return s.Stats().SlowConsumers == 1 && s.Stats().Conns == 0
		})
		// The peer learns of the close by a reset (it reads nothing, and
		// the server did not read on to the end of what it sent).
		if err := <-done; !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
			t.Fatalf("the peer's write ended with %v, want a reset", err)
		}
		if b == BackendEpoll && errorsSent(s, wire.CodeSlowConsumer) != 1 {
			t.Errorf("ErrorsSent[SLOW_CONSUMER] = %d, want 1", errorsSent(s, wire.CodeSlowConsumer))
		}
		if errs := h.closedErrs(); len(errs) != 1 || !errors.Is(errs[0], errSlow) {
			t.Errorf("OnClose errors %v, want one: %v", errs, errSlow)
		}
	})
}
