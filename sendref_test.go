package zerowire

import (
	"bytes"
	"testing"

	"github.com/zerowire/zerowire/internal/conntable"
	"github.com/zerowire/zerowire/wire"
)

// TestBroadcastLarge: a large pooled payload broadcast by reference
// reaches every connection intact, with its trailer where PAYLOAD_CRC was
// negotiated, including on a connection that reads it slowly.
func TestBroadcastLarge(t *testing.T) {
	forBackends(t, Options{}, func(t *testing.T, s *Server, h *echoHandler) {
		var raws []*rawConn
		for i := 0; i < 6; i++ {
			r := dialRaw(t, s.Addr().String())
			caps := uint32(0)
			if i%2 == 0 {
				caps = wire.CapPayloadCRC
			}
			r.handshake(caps)
			raws = append(raws, r)
		}
		var list []ConnID
		waitFor(t, "6 connections", func() bool { return s.Stats().Conns == 6 })
		s.table.Range(func(_ conntable.ID, c *Conn) bool { list = append(list, c.ID()); return true })
		buf, err := s.pool.Get(300 << 10)
		if err != nil {
			t.Fatal(err)
		}
		for i := range buf.Bytes() {
			buf.Bytes()[i] = byte(i * 7)
		}
		want := append([]byte(nil), buf.Bytes()...)
		if n := s.Broadcast(list, buf); n != 6 {
			t.Fatalf("Broadcast reached %d connections", n)
		}
		buf.Release()
		for i, r := range raws {
			p := r.read()
			if p.Type() != wire.FrameData || p.Seq != 1 || !bytes.Equal(p.Payload, want) {
				t.Fatalf("conn %d: %v seq %d, %d bytes", i, p.Type(), p.Seq, len(p.Payload))
			}
			if (p.Flags&wire.FlagPayloadCRC != 0) != (i%2 == 0) {
				t.Fatalf("conn %d: flags %#x", i, p.Flags)
			}
		}
	})
}
