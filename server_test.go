package zerowire

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/zerowire/zerowire/wire"
)

func TestEchoEveryFrameType(t *testing.T) {
	forBackends(t, Options{}, func(t *testing.T, s *Server, h *echoHandler) {
		r := dialRaw(t, s.Addr().String())
		sh := r.handshake(wire.CapPayloadCRC)
		if sh.MaxPacketSize != wire.DefaultMaxPacketSize || sh.Capabilities&wire.CapPayloadCRC == 0 {
			t.Fatalf("server HELLO %+v", sh)
		}
		for _, flags := range []wire.Flags{0, wire.FlagCopy, wire.FlagPayloadCRC, wire.FlagCopy | wire.FlagPayloadCRC} {
			payload := []byte(fmt.Sprintf("payload with flags %#x", flags))
			r.write(r.next(wire.FrameRequest, flags, payload))
			p := r.read()
			if p.Type() != wire.FrameResponse || p.Seq != r.seq || !bytes.Equal(p.Payload, payload) {
				t.Fatalf("got %v seq %d %q, want RESPONSE seq %d %q", p.Type(), p.Seq, p.Payload, r.seq, payload)
			}
			if p.Flags&wire.FlagCopy != 0 || p.Flags&wire.FlagPayloadCRC != flags&wire.FlagPayloadCRC {
				t.Fatalf("response flags %#x for request flags %#x", p.Flags, flags)
			}
			r.write(r.next(wire.FramePing, flags&wire.FlagPayloadCRC, []byte("ping")))
			p = r.read()
			if p.Type() != wire.FramePong || p.Seq != r.seq || string(p.Payload) != "ping" || p.Flags&wire.FlagPayloadCRC != flags&wire.FlagPayloadCRC {
				t.Fatalf("got %v seq %d %q flags %#x, want PONG", p.Type(), p.Seq, p.Payload, p.Flags)
			}
			r.write(r.next(wire.FrameData, flags, payload))
		}
		waitFor(t, "4 DATA frames", func() bool { return h.data.Load() == 4 })
	})
}

func TestPipelinedAndSplit(t *testing.T) {
	forBackends(t, Options{}, func(t *testing.T, s *Server, h *echoHandler) {
		r := dialRaw(t, s.Addr().String())
		var stream []byte
		stream = append(stream, helloPacket(0)...)
		for i := 0; i < 1000; i++ {
			stream = append(stream, r.next(wire.FrameRequest, 0, []byte(fmt.Sprint("req ", i)))...)
		}
		// The first 200 packets one byte per write, the rest in one write.
		cut := 0
		for i := 0; i < 200; i++ {
			cut += int(stream[cut+8]) | int(stream[cut+9])<<8
		}
		for i := 0; i < cut; i++ {
			r.write(stream[i : i+1])
		}
		r.write(stream[cut:])
		if p := r.read(); p.Type() != wire.FrameHello {
			t.Fatalf("got %v, want HELLO", p.Type())
		}
		for i := 0; i < 1000; i++ {
			p := r.read()
			if p.Type() != wire.FrameResponse || p.Seq != uint64(i+1) || string(p.Payload) != fmt.Sprint("req ", i) {
				t.Fatalf("response %d: %v seq %d %q", i, p.Type(), p.Seq, p.Payload)
			}
		}
	})
}

// TestListenPortInUse: a second server on a served port fails as
// net.Listen does, rather than quietly sharing it through SO_REUSEPORT.
func TestListenPortInUse(t *testing.T) {
	forBackends(t, Options{}, func(t *testing.T, s *Server, h *echoHandler) {
		for _, b := range backends {
			if b == BackendEpoll && !epollAvailable {
				continue
			}
			s2, err := NewServer(h, Options{Backend: b})
			if err != nil {
				t.Fatal(err)
			}
			if err := s2.Listen(s.Addr().String()); err == nil {
				s2.Close()
				t.Fatalf("%v: a second server listened on %v", b, s.Addr())
			}
		}
	})
}
