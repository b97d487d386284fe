package zerowire

import (
	"fmt"
	"io"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fzConnect makes a socket pair and hands one end to the server's loop as
// if it had just accepted it, with no address (as from a Unix listener);
// the other end, blocking with 5 s timeouts, is the test's. Going around
// the listener spares each input a TCP handshake and an accept. On the
// net backend, which has no loop to adopt into, it dials over TCP.
func fzConnect(t *testing.T, s *Server) fzPipe {
	if s.backend != BackendEpoll {
		return fzDialTCP(t, s)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	tv := unix.NsecToTimeval(int64(5 * time.Second))
	for _, opt := range []int{unix.SO_RCVTIMEO, unix.SO_SNDTIMEO} {
		if err := unix.SetsockoptTimeval(fds[1], unix.SOL_SOCKET, opt, &tv); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		t.Fatal(err)
	}
	l := s.getLoops()[0]
	l.runSync(func() { l.adopt(fds[0], netip.AddrPort{}) })
	return fzSock(fds[1])
}

// fzWait lets the loop run once more: a task posted to it runs after the
// events its epoll_wait returned with the task's wake-up, so the peer's
// end of file, already sent, is handled by the time runSync returns, or
// at the latest one round later.
func fzWait(s *Server) {
	if s.backend != BackendEpoll {
		time.Sleep(time.Millisecond)
		return
	}
	l := s.getLoops()[0]
	l.runSync(func() {})
}

// fzIdle checks, on the loop, that no pool buffer outlived the
// connection: once the loop's cache is flushed, the only buffer in use is
// the one behind the loop's own read and write buffers.
func fzIdle(s *Server) error {
	if s.backend != BackendEpoll {
		return nil
	}
	l := s.getLoops()[0]
	var inUse int
	l.runSync(func() {
		l.cache.Flush()
		for _, c := range s.pool.Stats().Classes {
			inUse += c.InUse
		}
	})
	if inUse != 1 {
		return fmt.Errorf("after the close: %d pool buffers in use, want 1 (the loop's own)", inUse)
	}
	return nil
}

// fzSock is the test's end of a socket pair, read and written with plain
// blocking system calls.
type fzSock int

func (f fzSock) Write(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		// MSG_NOSIGNAL: a write after the server closed fails with EPIPE
		// rather than raising SIGPIPE.
		m, err := unix.SendmsgN(int(f), b[n:], nil, nil, unix.MSG_NOSIGNAL)
		if err == unix.EINTR {
			continue // a signal cuts short a wait on a socket with a timeout
		}
		if err != nil {
			return n, err
		}
		n += m
	}
	return n, nil
}

func (f fzSock) Read(b []byte) (int, error) {
	for {
		n, err := unix.Read(int(f), b)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, err
		case n == 0 && len(b) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

func (f fzSock) CloseWrite() error { return unix.Shutdown(int(f), unix.SHUT_WR) }
func (f fzSock) Close() error      { return unix.Close(int(f)) }
