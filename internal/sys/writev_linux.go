package sys

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Iovecs is a reusable vector for Writev, owned by one goroutine: x/sys's
// Writev builds a fresh one on every call.
type Iovecs struct{ v []unix.Iovec }

// Writev writes bufs to the non-blocking fd with one writev(2) and returns
// the bytes written. bufs must stay untouched until it returns.
func (io *Iovecs) Writev(fd int, bufs [][]byte) (int, error) {
	io.v = io.v[:0]
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		v := unix.Iovec{Base: &b[0]}
		v.SetLen(len(b))
		io.v = append(io.v, v)
	}
	if len(io.v) == 0 {
		return 0, nil
	}
	for {
		// The vector points into memory the caller keeps alive for the
		// call; the kernel only reads it. Raw, as for Write: the socket
		// does not block.
		n, _, errno := unix.RawSyscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&io.v[0])), uintptr(len(io.v)))
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return int(n), nil
	}
}
