package poll

import (
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/zerowire/zerowire/internal/sys"
)

// Poller is an epoll instance plus an eventfd for cross-goroutine wake-ups.
type Poller struct {
	epfd int
	efd  int
	// asleep dedupes wake-ups: only the first Wake after the loop announced
	// it will block pays for an eventfd write (gnet does the same with a CAS).
	asleep atomic.Bool
	raw    []unix.EpollEvent
}

// New creates a Poller.
func New() (*Poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	p := &Poller{epfd: epfd, efd: efd, raw: make([]unix.EpollEvent, 256)}
	if err := p.ctl(unix.EPOLL_CTL_ADD, efd, unix.EPOLLIN|unix.EPOLLET, WakeToken); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

func (p *Poller) ctl(op, fd int, events uint32, token uint64) error {
	ev := unix.EpollEvent{Events: events}
	putToken(&ev, token)
	if err := unix.EpollCtl(p.epfd, op, fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

const readEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET

// Add registers fd for edge-triggered read readiness under token.
func (p *Poller) Add(fd int, token uint64) error {
	return p.ctl(unix.EPOLL_CTL_ADD, fd, readEvents, token)
}

// AddLevel registers a listening socket, level-triggered so that an accept
// loop cut short for fairness is reported again.
func (p *Poller) AddLevel(fd int, token uint64) error {
	return p.ctl(unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN, token)
}

// SetWrite arms or disarms write readiness; the loop arms it only while a
// socket's send buffer is full, so an idle connection costs no wake-ups.
func (p *Poller) SetWrite(fd int, token uint64, on bool) error {
	ev := uint32(readEvents)
	if on {
		ev |= unix.EPOLLOUT
	}
	return p.ctl(unix.EPOLL_CTL_MOD, fd, ev, token)
}

// Del removes fd.
func (p *Poller) Del(fd int) error {
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// Sleeping announces that the loop is about to block in Wait. The loop must
// look at its task queue after Sleeping and before Wait: a producer that
// queued a task earlier saw the loop awake and did not call the eventfd.
func (p *Poller) Sleeping() { p.asleep.Store(true) }

// Awake undoes Sleeping once Wait has returned.
func (p *Poller) Awake() { p.asleep.Store(false) }

// Wait fills events and returns how many it filled. msec < 0 blocks, 0 polls.
// A signal can end it early with none (EINTR is not an error): callers wait
// in a loop.
func (p *Poller) Wait(events []Event, msec int) (int, error) {
	raw := p.raw
	if len(events) < len(raw) {
		raw = raw[:len(events)]
	}
	var n int
	var err error
	switch {
	case msec == 0:
		var e unix.Errno
		if n, e = sys.EpollPoll(p.epfd, raw); e != 0 {
			err = e
		}
	default:
		n, err = unix.EpollWait(p.epfd, raw, msec)
	}
	if err != nil {
		if err == unix.EINTR {
			return 0, nil
		}
		return 0, os.NewSyscallError("epoll_wait", err)
	}
	for i := 0; i < n; i++ {
		e := &raw[i]
		tok := token(e)
		var f uint32
		if e.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			f |= Readable
		}
		if e.Events&unix.EPOLLOUT != 0 {
			f |= Writable
		}
		if e.Events&(unix.EPOLLHUP|unix.EPOLLERR|unix.EPOLLRDHUP) != 0 {
			f |= Hangup
		}
		if tok == WakeToken {
			var buf [8]byte
			unix.Read(p.efd, buf[:])
		}
		events[i] = Event{Token: tok, Flags: f}
	}
	return n, nil
}

// Wake interrupts a blocking Wait. It costs one CAS when the loop is awake:
// the loop polls its task queue before it sleeps again.
func (p *Poller) Wake() error {
	if !p.asleep.CompareAndSwap(true, false) {
		return nil
	}
	one := [8]byte{1}
	_, err := unix.Write(p.efd, one[:])
	if err != nil && err != unix.EAGAIN {
		return os.NewSyscallError("write", err)
	}
	return nil
}

// Close releases the epoll instance and the eventfd.
func (p *Poller) Close() error {
	unix.Close(p.efd)
	return unix.Close(p.epfd)
}

// The kernel's epoll_data is a 64-bit union; x/sys/unix splits it into Fd and
// Pad on 64-bit Linux, so the token is stored as two halves.
func putToken(ev *unix.EpollEvent, t uint64) {
	ev.Fd = int32(uint32(t))
	ev.Pad = int32(uint32(t >> 32))
}

func token(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}
