package zerowire

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zerowire/zerowire/wire"
)

func dialTest(t testing.TB, s *Server, b Backend, opts *ClientOptions) *Client {
	t.Helper()
	o := ClientOptions{Backend: b}
	if opts != nil {
		o = *opts
		o.Backend = b
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl, err := Dial(ctx, "tcp", s.Addr().String(), &o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func TestClientConcurrentCalls(t *testing.T) {
	forBackends(t, Options{}, func(t *testing.T, s *Server, h *echoHandler) {
		for _, cb := range backends {
			if cb == BackendEpoll && !epollAvailable {
				continue
			}
			cl := dialTest(t, s, cb, &ClientOptions{PayloadCRC: true})
			var wg sync.WaitGroup
			errs := make(chan error, 200)
			for g := 0; g < 200; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 50; i++ {
						want := []byte(fmt.Sprintf("g%d-i%d", g, i))
						got, err := cl.CallBytes(context.Background(), want)
						if err != nil || !bytes.Equal(got, want) {
							errs <- fmt.Errorf("call %s: %q, %v", want, got, err)
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if _, err := cl.Ping(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := cl.Send(context.Background(), []byte("one way")); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the DATA frame", func() bool { return h.data.Load() > 0 })
			h.data.Store(0)
		}
	})
}

// TestClientBusyPoll checks that a busy-polling client runs on loops of
// its own, which spin as configured, and still gets its answers.
func TestClientBusyPoll(t *testing.T) {
	if !epollAvailable {
		t.Skip("the epoll backend is Linux only")
	}
	s := startServer(t, &echoHandler{}, Options{})
	plain := dialTest(t, s, BackendEpoll, nil)
	busy := dialTest(t, s, BackendEpoll, &ClientOptions{BusyPoll: time.Millisecond})
	if plain.eng == busy.eng {
		t.Fatal("a busy-polling client shares the engine of a sleeping one")
	}
	if got := busy.eng.opts.BusyPoll; got != time.Millisecond {
		t.Fatalf("the busy client's engine polls for %v, want 1ms", got)
	}
	if other := dialTest(t, s, BackendEpoll, &ClientOptions{BusyPoll: time.Millisecond}); other.eng != busy.eng {
		t.Fatal("two clients with the same BusyPoll got different engines")
	}
	for i := 0; i < 100; i++ {
		want := []byte(fmt.Sprint("busy ", i))
		if got, err := busy.CallBytes(context.Background(), want); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("call %d: %q, %v", i, got, err)
		}
	}
}

func TestClientTooLargeFailsLocally(t *testing.T) {
	forBackends(t, Options{MaxPacketSize: 4096}, func(t *testing.T, s *Server, h *echoHandler) {
		cl := dialTest(t, s, BackendAuto, nil)
		if cl.MaxPacketSize() != 4096 {
			t.Fatalf("server max %d", cl.MaxPacketSize())
		}
		if _, err := cl.Call(context.Background(), make([]byte, 5000)); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("got %v, want ErrTooLarge", err)
		}
		if _, err := cl.CallBytes(context.Background(), []byte("still fine")); err != nil {
			t.Fatal(err)
		}
	})
}

func TestClientDeadline(t *testing.T) {
	h := &slowHandler{delay: 200 * time.Millisecond}
	s := startServer(t, h, Options{})
	cl := dialTest(t, s, BackendAuto, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := cl.Call(ctx, []byte("x")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
	// The late answer is dropped and the connection carries on.
	got, err := cl.CallBytes(context.Background(), []byte("y"))
	if err != nil || string(got) != "y" {
		t.Fatalf("%q %v", got, err)
	}
}

func TestClientErrorAnswer(t *testing.T) {
	h := &errHandler{}
	s := startServer(t, h, Options{})
	cl := dialTest(t, s, BackendAuto, nil)
	_, err := cl.Call(context.Background(), []byte("x"))
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != wire.CodeApplication || we.Msg != "no" {
		t.Fatalf("got %v", err)
	}
}

// slowHandler answers each REQUEST from a goroutine after a delay.
type slowHandler struct {
	delay    time.Duration
	deferred atomic.Int64 // requests taken, their answers not yet sent
}

func (h *slowHandler) OnOpen(c *Conn)             {}
func (h *slowHandler) OnClose(c *Conn, err error) {}
func (h *slowHandler) OnPacket(c *Conn, p *Packet) {
	d, err := c.Defer(p)
	if err != nil {
		return
	}
	payload := append([]byte(nil), p.Payload...)
	h.deferred.Add(1)
	time.AfterFunc(h.delay, func() { d.Reply(payload) })
}

type errHandler struct{}

func (h *errHandler) OnOpen(c *Conn)             {}
func (h *errHandler) OnClose(c *Conn, err error) {}
func (h *errHandler) OnPacket(c *Conn, p *Packet) {
	c.ReplyError(p, wire.CodeApplication, "no")
}
