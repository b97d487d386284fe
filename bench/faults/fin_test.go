package faults

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/zerowire/zerowire"
	"github.com/zerowire/zerowire/wire"
)

// These tests pin a bug the fault suite found: on the epoll backend a
// connection missed its peer's FIN when it came in one segment with the
// last bytes (a short read was taken to mean the socket was drained).

// sendWithFIN writes b and closes c so that the bytes and the FIN leave in
// one segment: TCP_CORK holds the bytes until the close flushes them with
// the FIN. The peer's kernel then raises one edge-triggered readiness event
// for both.
func sendWithFIN(t *testing.T, c net.Conn) func(b []byte) {
	return func(b []byte) {
		t.Helper()
		rc, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK, 1)
		}); err != nil || serr != nil {
			t.Fatalf("TCP_CORK: %v %v", err, serr)
		}
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
}

func clientHello() []byte {
	return wire.AppendPacket(nil, wire.FrameHello, 0, 0,
		wire.AppendHello(nil, wire.Hello{MinVersion: 1, MaxVersion: 1, MaxPacketSize: wire.DefaultMaxPacketSize}))
}

// readPacket reads one whole packet from r.
func readPacket(r io.Reader) (wire.Packet, error) {
	hdr := make([]byte, wire.HeaderSize)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return wire.Packet{}, err
	}
	h, err := wire.DecodeHeader(hdr)
	if err != nil {
		return wire.Packet{}, err
	}
	b := make([]byte, h.Size)
	copy(b, hdr)
	if _, err := io.ReadFull(r, b[wire.HeaderSize:]); err != nil {
		return wire.Packet{}, err
	}
	p, _, err := wire.Parse(b, wire.Limits{MaxPacketSize: wire.DefaultMaxPacketSize, PayloadCRC: true})
	return p, err
}

// TestFINWithLastBytesServer: on the epoll backend a
// server connection whose peer's last bytes and FIN arrive together never
// sees the EOF, and stays open (CLOSE-WAIT) until a timer closes it: never
// when those bytes were a DATA frame and IdleTimeout is 0, after
// PartialTimeout (30s) when they ended mid-packet.
//
// Cause: readSome (loop_linux.go) clears rdMore after a short read ("a
// short read drained the socket"), so readAll stops before the read that
// would return 0; the FIN raised no edge of its own, and onEvent ignores
// the Hangup flag the poller reported with the data.
//
// Found by TestToxics/limit_data: toxiproxy cuts the upstream mid-packet
// and closes, and the server's connections stay in CLOSE-WAIT after the
// proxy has closed every connection. The net backend closes them at once.
// The same miss makes Server.Shutdown under load (TestShutdownUnderLoad*)
// take CloseLinger (2s) on the epoll backend instead of a few hundred ms:
// a client's FIN that comes with its last REQUESTs goes unseen, and the
// server lingers for it.
func TestFINWithLastBytesServer(t *testing.T) {
	for _, b := range []zerowire.Backend{zerowire.BackendEpoll, zerowire.BackendNet} { // net: the control
		t.Run(b.String(), func(t *testing.T) { serverMissesFIN(t, b) })
	}
}

func serverMissesFIN(t *testing.T, b zerowire.Backend) {
	for _, last := range []struct {
		name  string
		bytes []byte
	}{
		{"DATA frame", wire.AppendPacket(nil, wire.FrameData, 0, 1, []byte("bye"))},
		{"half a REQUEST", wire.AppendPacket(nil, wire.FrameRequest, 0, 1, make([]byte, 100))[:50]},
	} {
		t.Run(last.name, func(t *testing.T) {
			srv, err := zerowire.NewServer(echoHandler{}, zerowire.Options{Backend: b, Logger: quiet()})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			if err := srv.Listen("127.0.0.1:0"); err != nil {
				t.Fatal(err)
			}
			c, err := net.Dial("tcp", srv.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(clientHello()); err != nil {
				t.Fatal(err)
			}
			if p, err := readPacket(c); err != nil || p.Type() != wire.FrameHello {
				t.Fatalf("server HELLO: %v %v", p.Type(), err)
			}
			sendWithFIN(t, c)(last.bytes)
			if !pollUntil(3*time.Second, func() bool { return srv.Stats().Conns == 0 }) {
				t.Errorf("the server's connection is still open 3s after its peer's %s and FIN arrived together (CLOSE-WAIT); CloseLinger is 2s", last.name)
			}
		})
	}
}

// TestFINWithLastBytesClient: the same bug on the
// client side: a server that dies after writing the start of a RESPONSE
// (its last bytes and FIN arrive together) leaves the Client open. The
// pending call ends only with its context, as a deadline rather than
// ErrConnLost; Done is never closed, so a Pool never dials that slot again
// while the dead Client stays eligible for calls.
func TestFINWithLastBytesClient(t *testing.T) {
	for _, b := range []zerowire.Backend{zerowire.BackendEpoll, zerowire.BackendNet} { // net: the control
		t.Run(b.String(), func(t *testing.T) { clientMissesFIN(t, b) })
	}
}

func clientMissesFIN(t *testing.T, b zerowire.Backend) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if p, err := readPacket(c); err != nil || p.Type() != wire.FrameHello {
			return
		}
		c.Write(wire.AppendPacket(nil, wire.FrameHello, 0, 0,
			wire.AppendHello(nil, wire.Hello{MinVersion: 1, MaxVersion: 1, MaxPacketSize: wire.DefaultMaxPacketSize})))
		p, err := readPacket(c)
		if err != nil {
			return
		}
		resp := wire.AppendPacket(nil, wire.FrameResponse, 0, p.Seq, make([]byte, 100))
		sendWithFIN(t, c)(resp[:50])
	}()
	cl, err := zerowire.Dial(context.Background(), "tcp", ln.Addr().String(), &zerowire.ClientOptions{Backend: b, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	_, err = cl.Call(ctx, []byte("x"))
	if !errors.Is(err, zerowire.ErrConnLost) {
		t.Errorf("the call ended after %v with %v, want ErrConnLost as soon as the server's FIN arrived", time.Since(start).Round(time.Millisecond), err)
	}
	select {
	case <-cl.Done():
	case <-time.After(time.Second):
		t.Errorf("Client.Done not closed: the client never saw the server's FIN")
	}
}
