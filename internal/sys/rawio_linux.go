package sys

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The event loop's reads and writes are on non-blocking sockets: they
// return at once, so they go through RawSyscall, without telling the Go
// scheduler that the thread may block. With Syscall, the runtime's sysmon
// thread sees the loop's P "in a system call" on every read and write,
// keeps polling every 20 µs, and hands the P to another thread, which on a
// busy core costs more than the read itself (measured: a quarter of the
// server's CPU under 256 connections, in futex and nanosleep).

// Read reads into b from the non-blocking fd. An empty b reports EAGAIN
// rather than a 0 that would read as end of file.
func Read(fd int, b []byte) (int, unix.Errno) {
	if len(b) == 0 {
		return 0, unix.EAGAIN
	}
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(n), e
}

// Write writes b to the non-blocking fd.
func Write(fd int, b []byte) (int, unix.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(n), e
}

// EpollPoll is epoll_wait with a zero timeout: it never blocks, so it is
// raw too; a wait that may block must go through unix.EpollWait.
func EpollPoll(epfd int, events []unix.EpollEvent) (int, unix.Errno) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_WAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	return int(n), e
}
