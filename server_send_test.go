package zerowire

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zerowire/zerowire/pool"
	"github.com/zerowire/zerowire/wire"
)

// TestDeferredFromWorkers: REQUESTs handed off with Conn.Defer are
// answered by a pool of worker goroutines, in any order, with RESPONSE or
// ERROR; a Deferred answers once, and not after its connection is gone.
func TestDeferredFromWorkers(t *testing.T) {
	type job struct {
		d       Deferred
		payload []byte
	}
	eachBackend(t, func(t *testing.T, b Backend) {
		jobs := make(chan job, 64)
		var kept sync.Map // seq -> Deferred, of the requests that said "keep"
		h := &funcHandler{packet: func(c *Conn, p *Packet) {
			if p.Type() != wire.FrameRequest {
				return
			}
			d, err := c.Defer(p)
			if err != nil {
				t.Errorf("Defer: %v", err)
				return
			}
			if _, err := c.Defer(p); err != ErrNotRequest {
				t.Errorf("second Defer: %v, want ErrNotRequest", err)
			}
			if string(p.Payload) == "keep" {
				kept.Store(p.Seq, d)
				return
			}
			jobs <- job{d, append([]byte(nil), p.Payload...)}
		}}
		s := startOn(t, b, h, Options{})
		var workers sync.WaitGroup
		for i := 0; i < 4; i++ {
			workers.Add(1)
			go func() {
				defer workers.Done()
				for j := range jobs {
					var err error
					if bytes.HasPrefix(j.payload, []byte("fail")) {
						err = j.d.ReplyError(wire.CodeApplication, string(j.payload))
					} else {
						err = j.d.Reply(bytes.ToUpper(j.payload))
					}
					if err != nil {
						t.Errorf("worker reply to %d: %v", j.d.Seq(), err)
					}
					if j.d.Seq()%100 == 0 {
						// The loop refuses a second answer; the call itself
						// reports only what it can know at once.
						j.d.Reply(nil)
					}
				}
			}()
		}
		defer func() { close(jobs); workers.Wait() }()

		r := dialRaw(t, s.Addr().String())
		r.handshake(0)
		const n = 1000
		var stream []byte
		for i := 1; i <= n; i++ {
			msg := fmt.Sprint("req ", i)
			if i%7 == 0 {
				msg = fmt.Sprint("fail ", i)
			}
			stream = append(stream, r.next(wire.FrameRequest, 0, []byte(msg))...)
		}
		r.write(stream)
		seen := map[uint64]bool{}
		for len(seen) < n {
			p, err := r.tryRead(5 * time.Second)
			if err != nil {
				t.Fatalf("after %d answers: %v; stats %+v", len(seen), err, s.Stats().DroppedSends)
			}
			if seen[p.Seq] || p.Seq < 1 || p.Seq > n {
				t.Fatalf("%v seq %d: not an outstanding REQUEST", p.Type(), p.Seq)
			}
			seen[p.Seq] = true
			if p.Seq%7 == 0 {
				code, msg, _ := wire.ParseErrorPayload(p.Payload)
				if p.Type() != wire.FrameError || code != wire.CodeApplication || string(msg) != fmt.Sprint("fail ", p.Seq) {
					t.Fatalf("seq %d: got %v %v %q, want ERROR APPLICATION", p.Seq, p.Type(), code, msg)
				}
			} else if p.Type() != wire.FrameResponse || string(p.Payload) != fmt.Sprint("REQ ", p.Seq) {
				t.Fatalf("seq %d: got %v %q", p.Seq, p.Type(), p.Payload)
			}
		}
		// The second answers were refused on the loop, and counted.
		waitFor(t, "the second answers to be refused", func() bool { return s.Stats().DroppedSends == n/100 })
		r.write(r.next(wire.FramePing, 0, []byte("p")))
		if p := r.read(); p.Type() != wire.FramePong {
			t.Fatalf("got %v seq %d, want PONG", p.Type(), p.Seq)
		}
		// A REQUEST still owed when the connection is dropped for a
		// protocol error gets nothing, and its Deferred reports ErrClosed.
		r.write(r.next(wire.FrameRequest, 0, []byte("keep")))
		waitFor(t, "the kept request", func() bool { _, ok := kept.Load(r.seq); return ok })
		r.write(helloPacket(0))
		r.expectError(wire.CodeProtocolError)
		r.c.Close()
		waitFor(t, "the connection to close", func() bool { return s.Stats().Conns == 0 })
		dv, ok := kept.Load(r.seq)
		if !ok {
			t.Fatal("the kept request was not deferred")
		}
		if err := dv.(Deferred).Reply([]byte("too late")); !errors.Is(err, ErrClosed) || !errors.Is(err, net.ErrClosed) {
			t.Errorf("Reply after the close: %v, want ErrClosed", err)
		}
	})
}

// TestServerSendAndBroadcast: Server.Send and Server.Broadcast from other
// goroutines deliver DATA frames numbered 1, 2, 3, ... per connection, in
// each sender's order; a broadcast buffer is shared, not copied, and comes
// back to the pool.
func TestServerSendAndBroadcast(t *testing.T) {
	eachBackend(t, func(t *testing.T, b Backend) {
		p, err := pool.New(pool.Options{MaxSize: 4 << 20})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		h := &funcHandler{}
		s := startOn(t, b, h, Options{Pool: p})
		var clients []*rawConn
		for i := 0; i < 5; i++ {
			r := dialRaw(t, s.Addr().String())
			caps := uint32(0)
			if i%2 == 0 {
				caps = wire.CapPayloadCRC
			}
			r.handshake(caps)
			r.echo([]byte("ready")) // OnOpen has run
			clients = append(clients, r)
		}
		base := settledPool(s)
		ids := h.openedIDs()
		if len(ids) != 5 {
			t.Fatalf("%d connections opened, want 5", len(ids))
		}
		const senders, perSender, broadcasts = 4, 50, 10
		var wg sync.WaitGroup
		for g := 0; g < senders; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < perSender; i++ {
					for _, id := range ids {
						if err := s.Send(id, []byte(fmt.Sprintf("send %d %03d", g, i))); err != nil {
							t.Errorf("Send: %v", err)
						}
					}
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < broadcasts; i++ {
				buf, err := p.Get(100 << 10) // larger than a loop's write buffer
				if err != nil {
					t.Error(err)
					return
				}
				copy(buf.Bytes(), fmt.Sprintf("broadcast %03d", i))
				if n := s.Broadcast(ids, buf); n != len(ids) {
					t.Errorf("Broadcast reached %d connections, want %d", n, len(ids))
				}
				buf.Release()
			}
		}()
		wg.Wait()

		for ci, r := range clients {
			next := make([]int, senders)
			nextB := 0
			for seq := uint64(1); seq <= senders*perSender+broadcasts; seq++ {
				pk := r.read()
				if pk.Type() != wire.FrameData || pk.Seq != seq {
					t.Fatalf("client %d: got %v seq %d, want DATA seq %d", ci, pk.Type(), pk.Seq, seq)
				}
				if crc := pk.Flags&wire.FlagPayloadCRC != 0; crc != (ci%2 == 0) {
					t.Fatalf("client %d: PAYLOAD_CRC %v on a connection that negotiated %v", ci, crc, ci%2 == 0)
				}
				if bytes.HasPrefix(pk.Payload, []byte("broadcast")) {
					want := fmt.Sprintf("broadcast %03d", nextB)
					if len(pk.Payload) != 100<<10 || !bytes.HasPrefix(pk.Payload, []byte(want)) {
						t.Fatalf("client %d: broadcast %q..., want %q", ci, pk.Payload[:13], want)
					}
					nextB++
					continue
				}
				var g, i int
				if _, err := fmt.Sscanf(string(pk.Payload), "send %d %d", &g, &i); err != nil || g >= senders || i != next[g] {
					t.Fatalf("client %d: %q out of order (want sender %d's %d)", ci, pk.Payload, g, next[g])
				}
				next[g]++
			}
		}
		// The broadcast buffers are released once written everywhere.
		waitPoolBack(t, func() pool.Stats { return settledPool(s) }, base)

		// A connection that is gone.
		clients[0].c.Close()
		waitFor(t, "a connection to close", func() bool { return s.Stats().Conns == 4 })
		if err := s.Send(ids[0], []byte("x")); !errors.Is(err, ErrClosed) {
			t.Errorf("Send to a closed connection: %v, want ErrClosed", err)
		}
		buf, _ := p.Get(10)
		if n := s.Broadcast(ids, buf); n != 4 {
			t.Errorf("Broadcast reached %d, want 4", n)
		}
		buf.Release()
		for _, r := range clients[1:] {
			if pk := r.read(); pk.Type() != wire.FrameData || len(pk.Payload) != 10 {
				t.Fatalf("got %v of %d bytes, want the 10-byte broadcast", pk.Type(), len(pk.Payload))
			}
		}
	})
}

// TestUnixSocket: Listen("unix:PATH") serves on both backends, spreads
// connections over the loops, and removes the socket file on Close.
func TestUnixSocket(t *testing.T) {
	eachBackend(t, func(t *testing.T, b Backend) {
		path := filepath.Join(t.TempDir(), "zw.sock")
		var remotes sync.Map
		h := &funcHandler{open: func(c *Conn) { remotes.Store(c.ID(), c.RemoteAddr().Network()) }}
		s, err := NewServer(h, Options{Backend: b})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.Listen("unix:" + path); err != nil {
			t.Fatal(err)
		}
		if a := s.Addr(); a.Network() != "unix" || a.String() != path {
			t.Fatalf("Addr %s %q, want unix %q", a.Network(), a.String(), path)
		}
		for i := 0; i < 8; i++ {
			r := dialRawNet(t, "unix", path, 64<<10)
			r.handshake(wire.CapPayloadCRC)
			r.echo([]byte(strings.Repeat("unix ", 1+i*5000)))
			r.write(r.next(wire.FrameRequest, wire.FlagPayloadCRC, []byte("crc")))
			r.expectResponse(r.seq, []byte("crc"))
		}
		remotes.Range(func(_, v any) bool {
			if v != "unix" {
				t.Errorf("RemoteAddr network %v, want unix", v)
			}
			return true
		})
		s.Close()
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("socket file after Close: %v", err)
		}
	})
}

// TestServeListener: Serve takes an already-open listener (TCP or Unix),
// serves on it until Close, and returns nil.
func TestServeListener(t *testing.T) {
	eachBackend(t, func(t *testing.T, b Backend) {
		for _, network := range []string{"tcp", "unix"} {
			t.Run(network, func(t *testing.T) {
				addr := "127.0.0.1:0"
				if network == "unix" {
					addr = filepath.Join(t.TempDir(), "zw.sock")
				}
				ln, err := net.Listen(network, addr)
				if err != nil {
					t.Fatal(err)
				}
				s, err := NewServer(&funcHandler{}, Options{Backend: b})
				if err != nil {
					t.Fatal(err)
				}
				served := make(chan error, 1)
				go func() { served <- s.Serve(ln) }()
				waitFor(t, "Serve to start", func() bool { return s.Addr() != nil })
				if a := s.Addr(); a.String() != ln.Addr().String() {
					t.Errorf("Addr %v, want the listener's %v", a, ln.Addr())
				}
				for i := 0; i < 4; i++ {
					r := dialRawNet(t, network, ln.Addr().String(), 64<<10)
					r.handshake(0)
					r.echo([]byte("served"))
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				select {
				case err := <-served:
					if err != nil {
						t.Fatalf("Serve returned %v, want nil", err)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("Serve did not return after Close")
				}
				if _, err := net.Dial(network, ln.Addr().String()); err == nil {
					t.Error("the listener still accepts after Close")
				}
			})
		}
	})
}
