//go:build zwdebug

package zerowire

import (
	"context"
	"testing"
)

// keepViewHandler keeps the view of the first REQUEST past its callback,
// which the ownership rule forbids, and answers the second with what the
// kept view then holds (read on the loop, so the test itself is race-free).
type keepViewHandler struct{ kept []byte }

func (h *keepViewHandler) OnOpen(c *Conn)             {}
func (h *keepViewHandler) OnClose(c *Conn, err error) {}
func (h *keepViewHandler) OnPacket(c *Conn, p *Packet) {
	if h.kept == nil {
		h.kept = p.Payload
		c.Reply(p, nil)
		return
	}
	c.Reply(p, h.kept)
}

// TestViewPoisonedAfterCallback: under the zwdebug tag a view kept past
// OnPacket reads 0xDE instead of whatever bytes came next.
func TestViewPoisonedAfterCallback(t *testing.T) {
	for _, b := range backends {
		if b == BackendEpoll && !epollAvailable {
			continue
		}
		h := &keepViewHandler{}
		s := startServer(t, h, Options{Backend: b})
		cl := dialTest(t, s, b, nil)
		if _, err := cl.CallBytes(context.Background(), []byte("secret")); err != nil {
			t.Fatal(err)
		}
		got, err := cl.CallBytes(context.Background(), []byte("second"))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != "\xde\xde\xde\xde\xde\xde" {
			t.Fatalf("%v: kept view reads %q after the callback, want poison", b, got)
		}
	}
}
