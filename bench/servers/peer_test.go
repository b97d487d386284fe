package servers_test

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zerowire/zerowire/wire"
)

// peers are the servers under test, each a command in this directory.
var peers = []string{"gnet", "netpoll", "stdnet"}

// binDir holds the peers, built once by TestMain: the test runs the same
// binaries, flags and readiness line the comparison runner will.
var binDir string

// raceEnabled is set (by race_test.go) when the test runs under the race
// detector, so that the peers it starts are built with it as well.
var raceEnabled bool

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "zw-bench-peers-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	args := []string{"build", "-o", dir + string(os.PathSeparator)}
	if raceEnabled {
		args = append(args, "-race") // go test -race checks the peers too
	}
	for _, p := range peers {
		args = append(args, "./"+p)
	}
	build := exec.Command("go", args...) // the go command on PATH, as in ci.sh
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the peers:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestPeers checks every peer against the echo service of wire-v1.md.
func TestPeers(t *testing.T) {
	for _, name := range peers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			addr := startPeer(t, name)
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) { c.run(t, addr) })
			}
		})
	}
}

var cases = []struct {
	name string
	run  func(t *testing.T, addr string)
}{
	{"hello", testHello},
	{"request-response", testRequestResponse},
	{"ping-pong", testPingPong},
	{"data-then-request", testDataThenRequest},
	{"pipelined-100", testPipelined},
	{"split-writes", testSplitWrites},
	{"malformed-header", testMalformedHeader},
	{"first-packet-not-hello", testFirstNotHello},
	{"unsupported-version", testUnsupportedVersion},
	{"seq-gap", testSeqGap},
	{"crc-not-negotiated", testCRCNotNegotiated},
	{"packet-too-large", testPacketTooLarge},
	{"response-too-large-for-client", testResponseTooLarge},
	{"goaway", testGoAway},
}

func testHello(t *testing.T, addr string) {
	c := dial(t, addr)
	h := c.handshake(wire.CapPayloadCRC, wire.DefaultMaxPacketSize)
	want := wire.Hello{MinVersion: 1, MaxVersion: 1, MaxPacketSize: 1 << 20, IdleTimeoutMS: 0, Capabilities: wire.CapPayloadCRC}
	if h.MinVersion != want.MinVersion || h.MaxVersion != want.MaxVersion || h.MaxPacketSize != want.MaxPacketSize ||
		h.IdleTimeoutMS != want.IdleTimeoutMS || h.Capabilities != want.Capabilities || len(h.Extensions) != 0 {
		t.Fatalf("server HELLO = %+v, want %+v", h, want)
	}
}

func testRequestResponse(t *testing.T, addr string) {
	c := dial(t, addr)
	c.handshake(wire.CapPayloadCRC, wire.DefaultMaxPacketSize)
	seq := uint64(0)
	// Sizes around each server's buffer edges: netpoll's 4 KiB copy
	// threshold, gnet's 16 KiB writev threshold and 64 KiB read buffer,
	// stdnet's 64 KiB bufio, and the largest packet the server accepts.
	sizes := []int{0, 1, 5, 100, 4095, 4096, 4097, 16 << 10, 65536, 70000}
	for _, crc := range []bool{false, true} {
		var flags wire.Flags
		if crc {
			flags = wire.FlagPayloadCRC
		}
		for _, n := range append(sizes, wire.DefaultMaxPacketSize-wire.PacketSize(0, flags)) {
			seq++
			f := flags
			if seq%3 == 0 {
				f |= wire.FlagCopy // a wish about delivery; never echoed
			}
			payload := randomBytes(n)
			c.send(wire.AppendPacket(nil, wire.FrameRequest, f, seq, payload))
			c.expectEcho(wire.FrameResponse, seq, crc, payload)
		}
	}
}

func testPingPong(t *testing.T, addr string) {
	c := dial(t, addr)
	c.handshake(wire.CapPayloadCRC, wire.DefaultMaxPacketSize)
	seq := uint64(0)
	for _, crc := range []bool{false, true} {
		var flags wire.Flags
		most := wire.MaxPingPayload
		if crc {
			flags, most = wire.FlagPayloadCRC, wire.MaxPingPayload-wire.TrailerSize
		}
		for _, n := range []int{0, 8, most} {
			seq++
			payload := randomBytes(n)
			c.send(wire.AppendPacket(nil, wire.FramePing, flags, seq, payload))
			c.expectEcho(wire.FramePong, seq, crc, payload)
		}
	}
}

func testDataThenRequest(t *testing.T, addr string) {
	c := dial(t, addr)
	c.handshake(wire.CapPayloadCRC, wire.DefaultMaxPacketSize)
	var b []byte
	b = wire.AppendPacket(b, wire.FrameData, 0, 1, []byte("one-way"))
	b = wire.AppendPacket(b, wire.FrameData, wire.FlagPayloadCRC|wire.FlagCopy, 2, randomBytes(3000))
	b = wire.AppendPacket(b, wire.FrameRequest, 0, 3, []byte("after data"))
	c.send(b)
	// The DATA frames are consumed silently: the next packet answers seq 3.
	c.expectEcho(wire.FrameResponse, 3, false, []byte("after data"))
	c.send(wire.AppendPacket(nil, wire.FrameData, 0, 4, nil))
	c.send(wire.AppendPacket(nil, wire.FramePing, 0, 5, []byte("still here")))
	c.expectEcho(wire.FramePong, 5, false, []byte("still here"))
}

func testPipelined(t *testing.T, addr string) {
	c := dial(t, addr)
	c.handshake(wire.CapPayloadCRC, wire.DefaultMaxPacketSize)
	const n = 100
	payloads := make([][]byte, n)
	var b []byte
	for i := range n {
		payloads[i] = randomBytes(rand.IntN(2000))
		var f wire.Flags
		if i%2 == 1 {
			f = wire.FlagPayloadCRC
		}
		b = wire.AppendPacket(b, wire.FrameRequest, f, uint64(i+1), payloads[i])
	}
	// Written from another goroutine, in one write, while the answers are
	// read here: a peer that answers before it has read everything must
	// not find the client deaf.
	werr := make(chan error, 1)
	go func() {
		_, err := c.conn.Write(b)
		werr <- err
	}()
	for i := range n {
		c.expectEcho(wire.FrameResponse, uint64(i+1), i%2 == 1, payloads[i])
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
}

// testSplitWrites sends packets in small pieces, so that each server meets
// packets cut at every kind of point: inside the header, inside the
// payload, inside the trailer.
func testSplitWrites(t *testing.T, addr string) {
	c := dial(t, addr)
	hello := helloPacket(1, 1, wire.DefaultMaxPacketSize, wire.CapPayloadCRC)
	small := randomBytes(100)
	large := randomBytes(200 << 10)
	var b []byte
	b = append(b, hello...)
	b = wire.AppendPacket(b, wire.FrameRequest, wire.FlagPayloadCRC, 1, small)
	b = wire.AppendPacket(b, wire.FramePing, 0, 2, []byte("ping"))
	b = wire.AppendPacket(b, wire.FrameRequest, wire.FlagPayloadCRC, 3, large)
	done := make(chan error, 1)
	go func() {
		pieces := []int{1, 3, 7, 13, 24, 29, 1000, 7000}
		for off, i := 0, 0; off < len(b); i++ {
			end := min(off+pieces[i%len(pieces)], len(b))
			if _, err := c.conn.Write(b[off:end]); err != nil {
				done <- err
				return
			}
			off = end
			if off < 400 {
				time.Sleep(200 * time.Microsecond) // let the first pieces arrive alone
			}
		}
		done <- nil
	}()
	c.lim.PayloadCRC = true
	if p := c.recv(); p.Type() != wire.FrameHello {
		t.Fatalf("first packet from server is %v, want HELLO", p.Type())
	}
	c.expectEcho(wire.FrameResponse, 1, true, small)
	c.expectEcho(wire.FramePong, 2, false, []byte("ping"))
	c.expectEcho(wire.FrameResponse, 3, true, large)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func testMalformedHeader(t *testing.T, addr string) {
	c := dial(t, addr)
	c.handshake(wire.CapPayloadCRC, wire.DefaultMaxPacketSize)
	c.send(wire.AppendPacket(nil, wire.FrameRequest, 0, 1, []byte("fine")))
	c.expectEcho(wire.FrameResponse, 1, false, []byte("fine"))
	bad := wire.AppendPacketHeader(nil, wire.FrameRequest, 0, 2, 0)
	bad[21] ^= 0xff // header checksum
	c.send(bad)
	c.expectError(wire.CodeProtocolError, 0)
	c.expectClosed()
}

func testFirstNotHello(t *testing.T, addr string) {
	c := dial(t, addr)
	c.send(wire.AppendPacket(nil, wire.FrameRequest, 0, 1, []byte("too early")))
	if p := c.recv(); p.Type() != wire.FrameHello {
		t.Fatalf("got %v, want the server's HELLO before its ERROR", p.Type())
	}
	c.expectError(wire.CodeProtocolError, 0)
	c.expectClosed()
}

func testUnsupportedVersion(t *testing.T, addr string) {
	c := dial(t, addr)
	c.send(helloPacket(2, 3, wire.DefaultMaxPacketSize, 0))
	if p := c.recv(); p.Type() != wire.FrameHello {
		t.Fatalf("got %v, want the server's HELLO before its ERROR", p.Type())
	}
	c.expectError(wire.CodeUnsupportedVersion, 0)
	c.expectClosed()
}

func testSeqGap(t *testing.T, addr string) {
	c := dial(t, addr)
	c.handshake(wire.CapPayloadCRC, wire.DefaultMaxPacketSize)
	c.send(wire.AppendPacket(nil, wire.FrameRequest, 0, 1, []byte("one")))
	c.expectEcho(wire.FrameResponse, 1, false, []byte("one"))
	c.send(wire.AppendPacket(nil, wire.FrameRequest, 0, 3, []byte("three")))
	c.expectError(wire.CodeProtocolError, 0)
	c.expectClosed()
}

func testCRCNotNegotiated(t *testing.T, addr string) {
	c := dial(t, addr)
	c.handshake(0, wire.DefaultMaxPacketSize)
	c.send(wire.AppendPacket(nil, wire.FrameRequest, wire.FlagPayloadCRC, 1, []byte("crc")))
	c.expectError(wire.CodeProtocolError, 0)
	c.expectClosed()
}

func testPacketTooLarge(t *testing.T, addr string) {
	c := dial(t, addr)
	c.handshake(wire.CapPayloadCRC, wire.DefaultMaxPacketSize)
	// The header alone is enough for the server to refuse.
	c.send(wire.AppendPacketHeader(nil, wire.FrameRequest, 0, 1, wire.DefaultMaxPacketSize))
	c.expectError(wire.CodeFrameTooLarge, 0)
	c.expectClosed()
}

func testResponseTooLarge(t *testing.T, addr string) {
	c := dial(t, addr)
	c.handshake(wire.CapPayloadCRC, wire.MinMaxPacketSize)
	c.send(wire.AppendPacket(nil, wire.FrameRequest, 0, 1, randomBytes(wire.MinMaxPacketSize)))
	c.expectError(wire.CodeFrameTooLarge, 1)
	// The contract keeps the connection open.
	c.send(wire.AppendPacket(nil, wire.FrameRequest, 0, 2, []byte("fits")))
	c.expectEcho(wire.FrameResponse, 2, false, []byte("fits"))
}

func testGoAway(t *testing.T, addr string) {
	c := dial(t, addr)
	c.handshake(wire.CapPayloadCRC, wire.DefaultMaxPacketSize)
	var b []byte
	b = wire.AppendPacket(b, wire.FrameRequest, 0, 1, []byte("last one"))
	b = wire.AppendPacket(b, wire.FrameGoAway, 0, 0, wire.AppendGoAwayPayload(nil, 0, wire.CodeNone, "bye"))
	c.send(b)
	c.expectEcho(wire.FrameResponse, 1, false, []byte("last one"))
	c.expectClosed()
}

// startPeer runs the named peer on an OS-assigned port and returns its
// address. The peer is stopped with SIGTERM when the test ends and must
// exit cleanly.
func startPeer(t *testing.T, name string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, name), "--addr", "127.0.0.1:0")
	ready := &readyWriter{addr: make(chan string, 1)}
	var stderr bytes.Buffer // read only after Wait, which ends exec's copying
	cmd.Stdout, cmd.Stderr = ready, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case addr := <-ready.addr:
		t.Cleanup(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case err := <-exited:
				if err != nil {
					t.Errorf("%s did not exit cleanly on SIGTERM: %v", name, err)
				}
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-exited
				t.Errorf("%s still running 10s after SIGTERM", name)
			}
			if t.Failed() {
				t.Logf("%s stderr:\n%s", name, stderr.String())
			}
		})
		return addr
	case err := <-exited:
		t.Fatalf("%s exited before listening: %v\n%s", name, err, stderr.String())
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-exited
		t.Fatalf("%s printed no listening line within 20s\n%s", name, stderr.String())
	}
	return ""
}

// readyWriter is a peer's stdout: it delivers the address of the first
// "listening on ADDR" line.
type readyWriter struct {
	mu   sync.Mutex
	buf  []byte
	addr chan string
	sent bool
}

func (w *readyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for !w.sent {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		line := string(w.buf[:i])
		w.buf = w.buf[i+1:]
		if a, ok := strings.CutPrefix(line, "listening on "); ok {
			w.addr <- a
			w.sent = true
		}
	}
	return len(p), nil
}

// client is a raw client: packets built with the wire package, and every
// packet from the server parsed with the contract's rules.
type client struct {
	t    *testing.T
	conn net.Conn
	r    io.Reader
	lim  wire.Limits // this client's side: what it advertised and negotiated
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second)) // a stuck exchange fails instead of hanging
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn, r: conn, lim: wire.Limits{MaxPacketSize: wire.DefaultMaxPacketSize}}
}

func (c *client) send(b []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// recv reads one packet and checks it against the contract.
func (c *client) recv() wire.Packet {
	c.t.Helper()
	hdr := make([]byte, wire.HeaderSize)
	if _, err := io.ReadFull(c.r, hdr); err != nil {
		c.t.Fatalf("reading a header: %v", err)
	}
	h, err := wire.DecodeHeader(hdr)
	if err != nil || h.Size < wire.HeaderSize || h.Size > c.lim.MaxPacketSize {
		c.t.Fatalf("bad header from server: %+v, %v", h, err)
	}
	b := make([]byte, h.Size)
	copy(b, hdr)
	if _, err := io.ReadFull(c.r, b[wire.HeaderSize:]); err != nil {
		c.t.Fatalf("reading a %d-byte packet: %v", h.Size, err)
	}
	p, _, err := wire.Parse(b, c.lim)
	if err != nil {
		c.t.Fatalf("server sent a packet breaking the contract: %v (%+v)", err, h)
	}
	return p
}

// handshake sends this client's HELLO and returns the server's.
func (c *client) handshake(caps, maxPacket uint32) wire.Hello {
	c.t.Helper()
	c.lim.MaxPacketSize = maxPacket
	c.send(helloPacket(1, 1, maxPacket, caps))
	p := c.recv()
	if p.Type() != wire.FrameHello || p.Seq != 0 || p.Flags != wire.MakeFlags(wire.FrameHello, 0) {
		c.t.Fatalf("server's first packet: %+v, want a plain HELLO with seq 0", p.Header)
	}
	h, err := wire.ParseHello(p.Payload)
	if err != nil {
		c.t.Fatal(err)
	}
	c.lim.PayloadCRC = caps&wire.CapPayloadCRC != 0 && h.Capabilities&wire.CapPayloadCRC != 0
	return h
}

// expectEcho reads the answer to a REQUEST or PING: the given type and seq,
// the same payload, PAYLOAD_CRC as the question had it, COPY clear.
func (c *client) expectEcho(t wire.FrameType, seq uint64, crc bool, payload []byte) {
	c.t.Helper()
	p := c.recv()
	var want wire.Flags
	if crc {
		want = wire.FlagPayloadCRC
	}
	if p.Type() != t || p.Seq != seq || p.Flags != wire.MakeFlags(t, want) {
		c.t.Fatalf("got %v seq %d flags %#x, want %v seq %d flags %#x",
			p.Type(), p.Seq, uint16(p.Flags), t, seq, uint16(wire.MakeFlags(t, want)))
	}
	if !bytes.Equal(p.Payload, payload) {
		c.t.Fatalf("%v seq %d: payload of %d bytes differs from the %d sent", t, seq, len(p.Payload), len(payload))
	}
}

func (c *client) expectError(code wire.Code, seq uint64) {
	c.t.Helper()
	p := c.recv()
	if p.Type() != wire.FrameError {
		c.t.Fatalf("got %v seq %d, want ERROR %v", p.Type(), p.Seq, code)
	}
	got, msg, err := wire.ParseErrorPayload(p.Payload)
	if err != nil {
		c.t.Fatal(err)
	}
	if got != code || p.Seq != seq {
		c.t.Fatalf("got ERROR %v seq %d (%q), want %v seq %d", got, p.Seq, msg, code, seq)
	}
}

// expectClosed checks that the server closed the connection after what it
// sent, without resetting it.
func (c *client) expectClosed() {
	c.t.Helper()
	var b [1]byte
	if n, err := c.r.Read(b[:]); n != 0 || err != io.EOF {
		c.t.Fatalf("want the server to close the connection; read %d bytes, %v", n, err)
	}
}

func helloPacket(minV, maxV uint16, maxPacket, caps uint32) []byte {
	h := wire.Hello{MinVersion: minV, MaxVersion: maxV, MaxPacketSize: maxPacket, Capabilities: caps}
	return wire.AppendPacket(nil, wire.FrameHello, 0, 0, wire.AppendHello(nil, h))
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return b
}
