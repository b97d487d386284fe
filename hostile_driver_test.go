//go:build linux

package zerowire

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zerowire/zerowire/internal/poll"
	"github.com/zerowire/zerowire/wire"
)

// The raw-socket driver of TestHostilePeers (hostile_test.go): thousands of
// hostile connections as non-blocking sockets on one poller, run by one
// goroutine, and the checks of what each received.

// A hostilePeer is one hostile connection: a non-blocking socket and what
// it does, driven by a hostileDriver.
type hostilePeer struct {
	i, fd   int
	state   uint8 // hostileWaiting, hostileConnecting, hostileOpen, hostileDone
	startAt time.Time
	// dialed: connect began; opened: it completed and the first bytes were
	// written; first: the first bytes came; ended: the server closed it.
	dialed, opened, first, ended time.Time

	sockopt func(fd int)
	out     []byte // written once the connection opens; shared, read-only
	off     int
	wantW   bool
	blast   bool // after out: REQUESTs of hostileSlowBody until the server closes
	seq     uint64
	hdr     [wire.HeaderSize]byte
	hoff    int
	poff    int
	sent    int  // REQUESTs sent whole while blasting
	drip    bool // one more write while blasting past hostileSlowBurst
	noRead  bool // never reads once blasting
	rx      []byte
	eof     bool
	err     error
	ready   bool                                // set by onData: the kind's milestone reached
	onData  func(p *hostilePeer) (close bool)   // after bytes came
	tick    func(p *hostilePeer, now time.Time) // every pass of the driver
	trickle int
}

const (
	hostileWaiting uint8 = iota
	hostileConnecting
	hostileOpen
	hostileDone
)

// hostileDriver runs hostile peers on raw sockets from one goroutine.
type hostileDriver struct {
	p      *poll.Poller
	sa     unix.SockaddrInet4
	kind   byte
	peers  []*hostilePeer
	live   int
	buf    []byte
	events []poll.Event
}

// newHostileDriver makes n peers of one kind, set up by setup, started
// spread evenly over ramp.
func newHostileDriver(t *testing.T, s *Server, kind, n int, ramp time.Duration, setup func(p *hostilePeer)) *hostileDriver {
	p, err := poll.New()
	if err != nil {
		t.Fatal(err)
	}
	ap := s.Addr().(*net.TCPAddr).AddrPort()
	d := &hostileDriver{p: p, sa: unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}, kind: byte(kind),
		buf: make([]byte, 64<<10), events: make([]poll.Event, 256), live: n}
	start := time.Now()
	for i := 0; i < n; i++ {
		pe := &hostilePeer{i: i, fd: -1, startAt: start.Add(ramp * time.Duration(i) / time.Duration(n))}
		setup(pe)
		d.peers = append(d.peers, pe)
	}
	t.Cleanup(d.close)
	return d
}

// run drives the peers until every one has ended or until returns true,
// for at most limit; false when limit passed first.
func (d *hostileDriver) run(limit time.Duration, until func() bool) bool {
	deadline := time.Now().Add(limit)
	for d.live > 0 && (until == nil || !until()) {
		now := time.Now()
		if now.After(deadline) {
			return false
		}
		for _, p := range d.peers {
			switch {
			case p.state == hostileWaiting && !now.Before(p.startAt):
				d.connect(p, now)
			case p.state == hostileOpen && p.tick != nil:
				p.tick(p, now)
			}
		}
		n, _ := d.p.Wait(d.events, 2)
		for _, ev := range d.events[:n] {
			if ev.Token < uint64(len(d.peers)) {
				d.onEvent(d.peers[ev.Token], ev.Flags)
			}
		}
	}
	return true
}

func (d *hostileDriver) connect(p *hostilePeer, now time.Time) {
	p.dialed = now
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		p.fd = -1
		d.end(p, err)
		return
	}
	p.fd, p.state = fd, hostileConnecting
	if p.sockopt != nil {
		p.sockopt(fd)
	}
	// A loopback address of its own per kind and a spread within it, the
	// port chosen at connect: thousands of connections (and their
	// TIME_WAITs, run after run) do not exhaust one address's ports.
	unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 1 + d.kind, byte(p.i / 250), byte(2 + p.i%250)}})
	if err := unix.Connect(fd, &d.sa); err != nil && err != unix.EINPROGRESS {
		d.end(p, err)
		return
	}
	d.p.Add(fd, uint64(p.i))
	d.p.SetWrite(fd, uint64(p.i), true)
	p.wantW = true
}

func (d *hostileDriver) onEvent(p *hostilePeer, flags uint32) {
	if p.state == hostileConnecting {
		if v, _ := unix.GetsockoptInt(p.fd, unix.SOL_SOCKET, unix.SO_ERROR); v != 0 {
			d.end(p, unix.Errno(v))
			return
		}
		p.state, p.opened = hostileOpen, time.Now()
		d.flush(p)
		d.read(p)
		return
	}
	if flags&poll.Writable != 0 {
		d.flush(p)
	}
	if p.noRead && flags&poll.Hangup != 0 {
		// Reset by the server: seen without reading a byte.
		if v, _ := unix.GetsockoptInt(p.fd, unix.SOL_SOCKET, unix.SO_ERROR); v != 0 {
			d.end(p, unix.Errno(v))
		}
		return
	}
	if flags&poll.Readable != 0 {
		d.read(p)
	}
}

// flush writes what p has to write: out, then REQUESTs while blasting.
func (d *hostileDriver) flush(p *hostilePeer) {
	for p.state == hostileOpen {
		var n int
		var err error
		switch {
		case p.off < len(p.out):
			if n, err = unix.Write(p.fd, p.out[p.off:]); n > 0 {
				p.off += n
			}
		case p.blast && (p.sent < hostileSlowBurst || p.drip):
			p.drip = false
			if p.hoff == 0 && p.poff == 0 {
				p.seq++
				wire.AppendPacketHeader(p.hdr[:0], wire.FrameRequest, 0, p.seq, len(hostileSlowBody))
			}
			if n, err = unix.Writev(p.fd, [][]byte{p.hdr[p.hoff:], hostileSlowBody[p.poff:]}); n > 0 {
				k := min(n, len(p.hdr)-p.hoff)
				p.hoff, p.poff = p.hoff+k, p.poff+n-k
				if p.poff == len(hostileSlowBody) {
					p.hoff, p.poff, p.sent = 0, 0, p.sent+1
				}
			}
		default:
			d.arm(p, false)
			return
		}
		switch {
		case err == unix.EAGAIN:
			d.arm(p, true)
			return
		case err == unix.EINTR:
		case err != nil:
			if p.noRead {
				p.noRead = false
				d.read(p) // what the socket holds now: the ERROR, if it fit
			}
			d.end(p, err)
			p.err = err // the write's failure, whatever the read found
			return
		}
	}
}

func (d *hostileDriver) arm(p *hostilePeer, on bool) {
	if p.wantW != on {
		p.wantW = on
		d.p.SetWrite(p.fd, uint64(p.i), on)
	}
}

// read reads what came, until the socket is drained or the server closed.
func (d *hostileDriver) read(p *hostilePeer) {
	for p.state == hostileOpen && !p.noRead {
		n, err := unix.Read(p.fd, d.buf)
		switch {
		case n > 0:
			if p.first.IsZero() {
				p.first = time.Now()
			}
			p.rx = append(p.rx, d.buf[:n]...)
			if p.onData != nil && p.onData(p) {
				d.end(p, nil)
			}
		case err == nil:
			p.eof = true
			d.end(p, nil)
		case err == unix.EAGAIN:
			return
		case err != unix.EINTR:
			d.end(p, err)
		}
	}
}

func (d *hostileDriver) end(p *hostilePeer, err error) {
	if p.state == hostileDone {
		return
	}
	p.err, p.ended, p.state = err, time.Now(), hostileDone
	if p.fd >= 0 {
		d.p.Del(p.fd)
		unix.Close(p.fd)
	}
	d.live--
}

// close ends every peer still open and releases the poller.
func (d *hostileDriver) close() {
	if d.p == nil {
		return
	}
	for _, p := range d.peers {
		if p.state == hostileConnecting || p.state == hostileOpen {
			d.end(p, nil)
		}
	}
	d.p.Close()
	d.p = nil
}

// check reports how what p received differs from HELLO, then ERROR code
// with seq 0 as the last packet, then the close; a reset after the ERROR
// is accepted.
func (p *hostilePeer) check(code wire.Code) error {
	pkts, err := hostileParse(p.rx)
	if err != nil {
		return err
	}
	if !p.eof && !errors.Is(p.err, unix.ECONNRESET) {
		return fmt.Errorf("connection ended with %v after %s", p.err, hostileTypes(pkts))
	}
	if len(pkts) < 2 || pkts[0].Type() != wire.FrameHello {
		return fmt.Errorf("got %s, want HELLO then ERROR %v", hostileTypes(pkts), code)
	}
	last := pkts[len(pkts)-1]
	got, msg, err := wire.ParseErrorPayload(last.Payload)
	if last.Type() != wire.FrameError || last.Seq != 0 || err != nil || got != code {
		return fmt.Errorf("got %s ending with code %v %q, want ERROR seq 0 %v last", hostileTypes(pkts), got, msg, code)
	}
	return nil
}

// hostileParse parses every whole packet of b; an incomplete tail is an
// error, since the server closed after it.
func hostileParse(b []byte) ([]wire.Packet, error) {
	var pkts []wire.Packet
	for len(b) > 0 {
		p, n, err := wire.Parse(b, wire.Limits{MaxPacketSize: 1 << 30, PayloadCRC: true})
		if err != nil {
			return pkts, fmt.Errorf("parsing what the server sent: %v after %s (%d bytes left)", err, hostileTypes(pkts), len(b))
		}
		pkts, b = append(pkts, p), b[n:]
	}
	return pkts, nil
}

func hostileTypes(pkts []wire.Packet) string {
	var b strings.Builder
	for i, p := range pkts {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(p.Type().String())
	}
	return "[" + b.String() + "]"
}

// hostileCheck runs check on every peer and reports the failures: how many
// and the first few.
func hostileCheck(t *testing.T, what string, peers []*hostilePeer, check func(p *hostilePeer) error) {
	t.Helper()
	var errs []string
	failed := 0
	for _, p := range peers {
		if err := check(p); err != nil {
			if failed++; len(errs) < 5 {
				errs = append(errs, fmt.Sprintf("#%d: %v", p.i, err))
			}
		}
	}
	if failed > 0 {
		t.Errorf("%s: %d of %d connections failed; first: %s", what, failed, len(peers), strings.Join(errs, "; "))
	}
}

var (
	hostileHello = helloPacket(0)
	// hostileSlowBody is the payload of every never-read peer's REQUESTs.
	hostileSlowBody = make([]byte, hostileSlowPayload)
)

// hostileElapsed returns the smallest and largest of f over peers.
func hostileElapsed(peers []*hostilePeer, f func(p *hostilePeer) time.Duration) (lo, hi time.Duration) {
	lo = time.Hour
	for _, p := range peers {
		lo, hi = min(lo, f(p)), max(hi, f(p))
	}
	return lo.Round(time.Millisecond), hi.Round(time.Millisecond)
}
