package zerowire

import (
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// attach moves a dialed connection onto the engine: on the epoll backend
// its socket joins a reactor loop, chosen round-robin.
func (cl *Client) attach(nc net.Conn) error {
	if cl.eng.backend != BackendEpoll {
		return cl.attachNet(nc)
	}
	fd, err := dupSocket(nc)
	nc.Close()
	if err != nil {
		return err
	}
	s := cl.eng
	loops := s.getLoops()
	l := loops[s.rr.Add(1)%uint32(len(loops))]
	cl.l = l
	var aerr error
	l.runSync(func() {
		c := cl.newConn(l)
		c.fd = fd
		if !s.register(c) {
			aerr = ErrClosed
			unix.Close(fd)
			return
		}
		if err := l.plat.poller.Add(fd, uint64(c.id)); err != nil {
			aerr = err
			s.forget(c)
			unix.Close(fd)
			return
		}
		cl.start(c)
	})
	return aerr
}

// dupSocket takes a non-blocking duplicate of nc's socket, so that nc can
// be closed and the runtime's poller forgets it.
func dupSocket(nc net.Conn) (int, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return -1, os.ErrInvalid
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(f uintptr) { fd, derr = unix.Dup(int(f)) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, os.NewSyscallError("dup", derr)
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("setnonblock", err)
	}
	return fd, nil
}
