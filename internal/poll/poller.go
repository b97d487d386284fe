// Package poll wraps the operating system's readiness notification for the
// event loop. Each platform file provides the same contract:
//
//	New() (*Poller, error)                   an instance with a wake-up channel
//	(*Poller) Add(fd int, token uint64) error       edge-triggered read interest
//	(*Poller) AddLevel(fd int, token uint64) error  level-triggered, for listeners
//	(*Poller) SetWrite(fd int, token uint64, on bool) error  toggle write interest
//	(*Poller) Del(fd int) error
//	(*Poller) Sleeping(), Awake()            bracket a Wait that may park
//	(*Poller) Wait(events []Event, msec int) (int, error)  msec 0 polls, <0 waits
//	(*Poller) Wake() error                   callable from any goroutine
//	(*Poller) Close() error
//
// A Wait that may block does so in epoll_wait itself, through the
// scheduler-aware system call: it was tried parked in the Go runtime's
// poller instead (the epoll fd is pollable), which saved CPU under heavy
// load, but nested epoll loses wake-ups that arrive while an epoll_wait
// is copying events out, and at moderate load the loop then stalled until
// a timer: half the throughput of an open-loop benchmark. A poll that
// cannot block (msec 0) is a raw system call.
//
// A token is the caller's 64-bit name for the descriptor (the event loop
// uses the connection ID, never the fd, because the kernel reuses an fd as
// soon as it is closed and a stale event must not reach a newer connection).
// The wake-up token is WakeToken. Only Linux has a Poller today; on other
// systems the server runs on Go's net package instead.
package poll

// WakeToken is the token Wait reports when Wake was called.
const WakeToken = ^uint64(0)

// Event flags reported by Wait.
const (
	Readable = 1 << iota
	Writable
	Hangup // the peer closed or the socket failed; reading reports which
)

// Event is one readiness report.
type Event struct {
	Token uint64
	Flags uint32
}
