package sys

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Acceptor accepts connections without allocating: x/sys's Accept4 builds
// a Sockaddr on the heap for every connection, garbage that a burst of
// ten thousand idle connections turns into resident memory. One per loop.
type Acceptor struct {
	sa  unix.RawSockaddrAny
	len uint32
}

// Accept4 accepts one connection on the non-blocking listener lfd and
// returns its fd and the peer's address (the zero AddrPort for a Unix
// socket).
func (a *Acceptor) Accept4(lfd, flags int) (int, netip.AddrPort, unix.Errno) {
	a.len = unix.SizeofSockaddrAny
	fd, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(lfd), uintptr(unsafe.Pointer(&a.sa)),
		uintptr(unsafe.Pointer(&a.len)), uintptr(flags), 0, 0)
	if e != 0 {
		return -1, netip.AddrPort{}, e
	}
	return int(fd), a.addrPort(), 0
}

func (a *Acceptor) addrPort() netip.AddrPort {
	switch a.sa.Addr.Family {
	case unix.AF_INET:
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(&a.sa))
		return netip.AddrPortFrom(netip.AddrFrom4(p.Addr), port(p.Port))
	case unix.AF_INET6:
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(&a.sa))
		return netip.AddrPortFrom(netip.AddrFrom16(p.Addr).Unmap(), port(p.Port))
	}
	return netip.AddrPort{}
}

// port converts a port from network byte order as the kernel stored it.
func port(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}
