package zerowire

import (
	"errors"
	"github.com/zerowire/zerowire/internal/conntable"
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zerowire/zerowire/internal/poll"
	"github.com/zerowire/zerowire/internal/sys"
	"github.com/zerowire/zerowire/wire"
)

// The epoll backend: one reactor per loop, each a goroutine with an epoll
// instance of its own, edge-triggered sockets and an eventfd for wake-ups.
// Reads and writes never block and are raw system calls (internal/sys); an
// idle loop blocks in epoll_wait (internal/poll says why not in the Go
// runtime's poller).

const (
	epollAvailable = true
	defaultBackend = BackendEpoll
	listenToken    = poll.WakeToken - 1
	listenBacklog  = 65535
)

type platformLoop struct {
	iov      sys.Iovecs
	acceptor sys.Acceptor
	poller   *poll.Poller
	lnfd     int // -1 when this loop does not accept
	events   []poll.Event
	stop     bool
}

type platformServer struct {
	unixPath string
}

var errEOF = errors.New("EOF")

func (s *Server) listenEpoll(network, address string) error {
	n := s.opts.Loops
	single := s.opts.SingleAcceptor || network == "unix" || n == 1
	fds := []int{}
	fd, addr, err := listenFD(network, address, false)
	if err != nil {
		return err
	}
	fds = append(fds, fd)
	if !single {
		// The first listener settled the port (it may have been 0); the
		// others join it through SO_REUSEPORT and the kernel spreads
		// connections among them.
		for i := 1; i < n; i++ {
			fd, _, err := listenFD(network, addr.String(), true)
			if err != nil {
				for _, fd := range fds {
					unix.Close(fd)
				}
				return err
			}
			fds = append(fds, fd)
		}
	}
	s.mu.Lock()
	if network == "unix" {
		s.plat.unixPath = address
	}
	s.addr = addr
	s.mu.Unlock()
	return s.startLoops(fds)
}

// adoptEpoll takes over an open listener's socket (systemd-style
// activation): one loop accepts and hands connections round-robin.
func (s *Server) adoptEpoll(ln net.Listener) error {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return errors.New("zerowire: listener has no file descriptor")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var fd int
	var derr error
	if err := rc.Control(func(f uintptr) { fd, derr = unix.Dup(int(f)) }); err != nil {
		return err
	}
	if derr != nil {
		return os.NewSyscallError("dup", derr)
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return os.NewSyscallError("setnonblock", err)
	}
	s.mu.Lock()
	s.addr = ln.Addr()
	s.mu.Unlock()
	if ul, ok := ln.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false) // the socket file now belongs to our copy
	}
	ln.Close()
	return s.startLoops([]int{fd})
}

// listenFD makes a listening socket; join says that it joins the server's
// first one on the same port through SO_REUSEPORT.
func listenFD(network, address string, join bool) (int, net.Addr, error) {
	if network == "unix" {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return -1, nil, os.NewSyscallError("socket", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrUnix{Name: address}); err != nil {
			unix.Close(fd)
			return -1, nil, os.NewSyscallError("bind", err)
		}
		if err := unix.Listen(fd, listenBacklog); err != nil {
			unix.Close(fd)
			return -1, nil, os.NewSyscallError("listen", err)
		}
		return fd, &net.UnixAddr{Name: address, Net: "unix"}, nil
	}
	ta, err := net.ResolveTCPAddr("tcp", address)
	if err != nil {
		return -1, nil, err
	}
	var sa unix.Sockaddr
	family := unix.AF_INET
	if ip4 := ta.IP.To4(); ip4 != nil {
		sa4 := &unix.SockaddrInet4{Port: ta.Port}
		copy(sa4.Addr[:], ip4)
		sa = sa4
	} else {
		// No address, or an IPv6 one: listen on IPv6, dual-stack when the
		// address is unspecified, as net.Listen does.
		family = unix.AF_INET6
		sa6 := &unix.SockaddrInet6{Port: ta.Port}
		copy(sa6.Addr[:], ta.IP.To16())
		sa = sa6
	}
	if !join && ta.Port != 0 {
		// SO_REUSEPORT would let this server quietly share a port that
		// another process (of the same user) serves: the kernel would split
		// the connections between them. A plain bind first fails as
		// net.Listen does.
		if err := probeBind(family, sa); err != nil {
			return -1, nil, err
		}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, nil, os.NewSyscallError("socket", err)
	}
	fail := func(call string, err error) (int, net.Addr, error) {
		unix.Close(fd)
		return -1, nil, os.NewSyscallError(call, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fail("setsockopt", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return fail("setsockopt", err)
	}
	if family == unix.AF_INET6 && ta.IP == nil {
		unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0)
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	if err := unix.Listen(fd, listenBacklog); err != nil {
		return fail("listen", err)
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	return fd, net.TCPAddrFromAddrPort(addrPort(got)), nil
}

// probeBind binds, without SO_REUSEPORT, a socket it then closes.
func probeBind(family int, sa unix.Sockaddr) error {
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(fd, sa); err != nil {
		return os.NewSyscallError("bind", err)
	}
	return nil
}

func addrPort(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
	}
	return netip.AddrPort{}
}

func (s *Server) startLoops(lnfds []int) error {
	var loops []*loop
	fail := func(err error) error {
		for _, fd := range lnfds {
			unix.Close(fd)
		}
		for _, l := range loops {
			l.plat.poller.Close()
			l.release()
		}
		return err
	}
	for i := 0; i < s.opts.Loops; i++ {
		l, err := newLoop(s, i, false)
		if err != nil {
			return fail(err)
		}
		if l.plat.poller, err = poll.New(); err != nil {
			l.release()
			return fail(err)
		}
		loops = append(loops, l)
		l.plat.lnfd = -1
		l.plat.events = make([]poll.Event, 256)
		if i < len(lnfds) {
			if err := l.plat.poller.AddLevel(lnfds[i], listenToken); err != nil {
				return fail(err)
			}
			l.plat.lnfd = lnfds[i]
		}
	}
	// Published under the lock, and only while the server is still
	// running: a Close racing with Serve either sees the loops or stops them
	// from starting.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state.Load() != stateRunning {
		return fail(ErrClosed)
	}
	s.loops = loops
	for _, l := range loops {
		s.wg.Add(1)
		go l.run()
	}
	return nil
}

// yieldEvery bounds how long a client loop that keeps finding work, or
// any loop that spins, holds its P before the process's other goroutines
// get to run. Without it, a zw bench open-loop run at GOMAXPROCS 1 traced
// its pacers, the goroutines that send on time, waiting 9 ms: the loop
// found an event within every few polls, never reached a yield, and only
// the runtime's 10 ms preemption let them in.
const yieldEvery = int64(20 * time.Microsecond)

func (l *loop) run() {
	// A server's loop blocks in epoll_wait on a thread of its own: it is
	// woken there directly, and the scheduler does not start a new thread
	// for its P at every wait. A client's loop shares its P with the
	// application's goroutines, which it yields to every yieldEvery: on a
	// locked thread each yield would hand the P to another thread and
	// back, on an unlocked one it is a goroutine switch.
	client := l.srv.forClients
	if !client {
		runtime.LockOSThread()
	}
	defer l.srv.wg.Done()
	p := &l.plat
	busy := int64(l.srv.opts.BusyPoll)
	lastEvent := monotime()
	lastYield := lastEvent
	for !p.stop {
		if client {
			if now := monotime(); now-lastYield > yieldEvery {
				runtime.Gosched()
				lastYield = now
			}
		}
		timeout := l.wheel.next(l.now)
		if len(l.again) > 0 {
			timeout = 0
		}
		n, err := 0, error(nil)
		if busy > 0 && timeout != 0 {
			// Spinning keeps the vCPU awake: waking an idle one costs tens
			// of microseconds, more than the work of a request.
			for now := monotime(); now-lastEvent < busy && l.tasks.empty(); now = monotime() {
				if n, err = p.poller.Wait(p.events, 0); n > 0 || err != nil {
					break
				}
				if now-lastYield > yieldEvery {
					runtime.Gosched() // the polls are raw: let other goroutines run
					lastYield = now
				}
			}
		}
		if n == 0 && err == nil && timeout != 0 && !client {
			// Before sleeping, as gnet does: poll once more, then yield.
			// On this locked thread the yield hands the P to another
			// thread and back, which keeps the vCPU awake through the
			// few microseconds in which a peer's next request usually
			// arrives; and goroutines this batch made runnable (workers
			// replying through Deferred) queue their tasks first. S1's
			// p50 fell from 62-63 to 26-33 us and S3's requests per core
			// rose by a fifth in the same runs (docs/PERFORMANCE.md).
			// The client engine's loops do not: with them yielding here
			// too, a client and a server in one process (zw bench's
			// open-loop test, 2000 req/s at depth 1) achieved only
			// 917-1235 req/s.
			if n, err = p.poller.Wait(p.events, 0); n == 0 && err == nil {
				runtime.Gosched()
			}
		}
		if n == 0 && err == nil {
			p.poller.Sleeping()
			if !l.tasks.empty() {
				timeout = 0
			}
			n, err = p.poller.Wait(p.events, timeout)
			p.poller.Awake()
		}
		if err != nil {
			l.srv.opts.Logger.Error("zerowire: loop stopped", "loop", l.idx, "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		l.now = monotime()
		if n > 0 {
			lastEvent = l.now
		}
		for i := 0; i < n; i++ {
			l.onEvent(p.events[i])
		}
		l.runTasks()
		l.readAgain()
		l.wheel.advance(l.now, (*Conn).onTimer)
		l.flushShared()
	}
	if p.lnfd >= 0 {
		unix.Close(p.lnfd)
	}
	p.poller.Close()
}

func (l *loop) onEvent(ev poll.Event) {
	switch ev.Token {
	case poll.WakeToken:
		return
	case listenToken:
		l.accept()
		return
	}
	c, ok := l.srv.table.Get(conntable.ID(ev.Token))
	if !ok || c.l != l {
		return // the connection closed earlier in this batch
	}
	// A batch can be long, and the loop's goroutine can be preempted in
	// it: timestamps taken from a clock read once per wake-up would make
	// deadlines fire early.
	l.now = monotime()
	if ev.Flags&poll.Writable != 0 {
		if l.wOwner == c {
			l.flushShared()
		} else {
			c.flush()
		}
	}
	if ev.Flags&poll.Readable != 0 {
		c.rdMore = true
		if ev.Flags&poll.Hangup != 0 {
			// The peer's FIN (or an error) came, maybe with the last
			// bytes: read on to the end of file, since a short read no
			// longer means the socket is drained and no edge will follow.
			c.hup = true
		}
		l.readAll(c)
	}
}

// maxReads bounds the reads one connection gets per wake-up, so that one
// fast sender cannot starve the loop's other connections.
const maxReads = 16

func (l *loop) readAll(c *Conn) {
	for i := 0; i < maxReads && (c.rdMore || c.holding()); i++ {
		if c.st == stClosed || (c.paused && c.st < stClosing) {
			return
		}
		if !l.readOnce(c) {
			return
		}
	}
	if (c.rdMore || c.holding()) && c.st != stClosed && !c.paused {
		l.revisit(c)
	}
}

func (l *loop) readAgain() {
	if len(l.again) == 0 {
		return
	}
	again := l.again
	l.again = nil
	for i, c := range again {
		again[i] = nil
		if c.st != stClosed && (c.rdMore || c.holding()) {
			l.readAll(c)
		}
	}
	if l.again == nil {
		l.again = again[:0]
	}
}

// accept takes up to 64 pending connections and reports whether more
// may be waiting.
func (l *loop) accept() bool {
	p := &l.plat
	for i := 0; i < 64; i++ {
		fd, ap, err := p.acceptor.Accept4(p.lnfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != 0 {
			if err != unix.EAGAIN && err != unix.EINTR && err != unix.ECONNABORTED {
				// Out of descriptors, most likely: the level-triggered
				// listener reports again, so back off briefly.
				l.srv.opts.Logger.Warn("zerowire: accept", "err", os.NewSyscallError("accept4", err))
				time.Sleep(5 * time.Millisecond)
			}
			return false
		}
		loops := l.srv.loops
		target := l
		if len(loops) > 1 && l.srv.opts.SingleAcceptor || len(loops) > 1 && l.srv.plat.unixPath != "" {
			target = loops[l.srv.rr.Add(1)%uint32(len(loops))]
		}
		if target == l {
			l.adopt(fd, ap)
			continue
		}
		t := taskPool.Get().(*task)
		t.kind, t.seq, t.addr = taskAdopt, uint64(fd), ap
		target.post(t)
	}
	return true
}

func (l *loop) adopt(fd int, ap netip.AddrPort) {
	s := l.srv
	if st := s.state.Load(); st != stateRunning && st != stateShutdown {
		unix.Close(fd)
		return
	}
	if ap.IsValid() {
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	}
	c := &Conn{l: l, fd: fd, o: &s.opts, server: true, peerMax: wire.MinMaxPacketSize}
	c.setRemote(ap)
	l.now = monotime()
	c.lastRecv = l.now
	if !s.register(c) {
		unix.Close(fd)
		return
	}
	if err := l.plat.poller.Add(fd, uint64(c.id)); err != nil {
		s.forget(c)
		unix.Close(fd)
		return
	}
	c.onTimer() // files the first deadline: the handshake's, or the idle timer's if sooner
	if c.refused {
		// Refused like any connection that must go: HELLO, ERROR, and a
		// lingering close, so that the client reads why before any reset.
		c.fail(wire.CodeOverloaded, errOverloaded.Msg, errOverloaded)
	}
}

// post hands t to the loop from any goroutine.
func (l *loop) post(t *task) {
	if l.net {
		l.postNet(t)
		return
	}
	l.tasks.push(t)
	l.plat.poller.Wake()
}

// runSync runs fn on the loop and waits for it.
func (l *loop) runSync(fn func()) {
	if l.net {
		l.runSyncNet(fn)
		return
	}
	t := taskPool.Get().(*task)
	t.kind, t.fn = taskRun, fn
	l.post(t)
	<-t.errc
	t.fn = nil
	taskPool.Put(t)
}

func (s *Server) stopAccepting() {
	for _, l := range s.getLoops() {
		l.runSync(func() {
			if l.plat.lnfd >= 0 && s.state.Load() == stateShutdown {
				// Connections the kernel has completed would be reset
				// when the listener closes: take them, so that they get
				// GOAWAY like every other.
				for l.accept() {
				}
			}
			if l.plat.lnfd >= 0 {
				l.plat.poller.Del(l.plat.lnfd)
				unix.Close(l.plat.lnfd)
				l.plat.lnfd = -1
			}
		})
	}
	s.mu.Lock()
	if s.plat.unixPath != "" {
		os.Remove(s.plat.unixPath)
		s.plat.unixPath = ""
	}
	s.mu.Unlock()
	s.stopAcceptingNet()
}

func (s *Server) stopLoops() {
	for _, l := range s.getLoops() {
		l.runSync(func() { l.plat.stop = true })
	}
}

// eachLoopConn runs f for every connection, on its loop.
func (s *Server) eachLoopConn(f func(*Conn)) {
	for _, l := range s.getLoops() {
		l.runSync(func() {
			s.table.Range(func(_ conntable.ID, c *Conn) bool {
				if c.l == l && c.st != stClosed {
					f(c)
				}
				return true
			})
		})
	}
	s.eachNetConn(f)
}

// The transport of one connection: a non-blocking socket here, a net.Conn
// on the net backend.

func (c *Conn) readSome(b []byte) (int, error) {
	if c.l.net {
		return c.netRead(b)
	}
	for {
		n, err := sys.Read(c.fd, b)
		switch {
		case err == 0 && n == 0:
			return 0, errEOF
		case err == 0:
			if n < len(b) && !c.hup {
				c.rdMore = false // a short read drained the socket
			}
			return n, nil
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			c.rdMore = false
			return 0, nil
		}
		return 0, os.NewSyscallError("read", err)
	}
}

// writeSome writes what the socket takes and returns how much that was;
// a full socket is not an error.
func (c *Conn) writeSome(b []byte) (int, error) {
	if c.l.net {
		return c.netWrite(b)
	}
	done := 0
	for done < len(b) {
		n, err := sys.Write(c.fd, b[done:])
		switch {
		case err == 0:
			done += n
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			return done, nil
		default:
			return done, os.NewSyscallError("write", err)
		}
	}
	return done, nil
}

// writeVec writes bufs with one vectored write; a full socket is not an
// error.
func (c *Conn) writeVec(bufs ...[]byte) (int, error) {
	if c.l.net {
		return c.netWriteVec(bufs)
	}
	for {
		n, err := c.l.plat.iov.Writev(c.fd, bufs)
		switch err {
		case nil:
			return n, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, nil
		}
		return 0, os.NewSyscallError("writev", err)
	}
}

// unread reports bytes waiting in c's socket that the loop has not read.
func (c *Conn) unread() bool {
	if c.l.net {
		return false // the reader goroutine is blocked in Read: nothing waits
	}
	n, err := unix.IoctlGetInt(c.fd, unix.SIOCINQ)
	return err == nil && n > 0
}

func (c *Conn) armWrite(on bool) {
	if c.l.net || c.wantOut == on || c.st == stClosed {
		return
	}
	c.wantOut = on
	c.l.plat.poller.SetWrite(c.fd, uint64(c.id), on)
}

func (c *Conn) shutWrite() {
	if c.l.net {
		c.netShutWrite()
		return
	}
	unix.Shutdown(c.fd, unix.SHUT_WR)
}

func (c *Conn) closeTransport() {
	if c.l.net {
		c.l.nc.Close()
		return
	}
	c.l.plat.poller.Del(c.fd)
	unix.Close(c.fd)
}
