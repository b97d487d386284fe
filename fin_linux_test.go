package zerowire

import (
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/zerowire/zerowire/wire"
)

// TestFINWithLastBytes: the peer's last bytes and its FIN in one segment
// (TCP_CORK holds the bytes until the close) raise a single edge; the
// server must still see the end of file and close at once, not sit in
// CLOSE-WAIT until a timer.
func TestFINWithLastBytes(t *testing.T) {
	forBackends(t, Options{CloseLinger: 10 * time.Second}, func(t *testing.T, s *Server, h *echoHandler) {
		r := dialRaw(t, s.Addr().String())
		r.handshake(0)
		rc, err := r.c.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var serr error
		rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK, 1)
		})
		if serr != nil {
			t.Fatal(serr)
		}
		r.write(r.next(wire.FrameData, 0, []byte("last words")))
		r.c.Close()
		start := time.Now()
		waitFor(t, "the server to close after the peer's FIN", func() bool { return s.Stats().Conns == 0 })
		if h.data.Load() != 1 {
			t.Fatalf("%d DATA frames handled, want the last one", h.data.Load())
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("closed after %v: the FIN was missed and a timer closed it", d)
		}
	})
}
