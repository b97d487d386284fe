package zerowire

import (
	"github.com/zerowire/zerowire/internal/conntable"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zerowire/zerowire/pool"
	"github.com/zerowire/zerowire/wire"
)

// A loop owns connections: their protocol state, its read and write buffers
// and its timers are touched only by the loop's goroutine. On the epoll
// backend a loop serves many connections on one OS thread; on the net
// backend each connection has a loop of its own whose goroutine is the
// connection's reader, and mu stands in for the thread.
type loop struct {
	srv *Server
	idx int

	// Owned by the loop.
	rbuf       []byte      // the shared read buffer: parsed in place
	wbuf       []byte      // the shared write buffer, owned by wOwner until flushed
	wOwner     *Conn       //
	bufs       pool.Buffer // backs rbuf and wbuf
	cache      *pool.Cache
	vecScratch [wire.HeaderSize + wire.TrailerSize]byte // appendPacketRef's header and trailer
	pkt        Packet                                   // the packet being dispatched
	wpkt       wire.Packet                              // the packet being handled
	now        int64                                    // nanoseconds on the monotonic clock, read once per wake-up
	wheel      wheel
	again      []*Conn // connections to read again: cut short, or resumed

	tasks taskQueue
	plat  platformLoop

	// The net backend: one loop per connection.
	net     bool
	nc      net.Conn
	netc    *Conn
	mu      sync.Mutex // stands in for the loop's thread
	cond    *sync.Cond // wakes a reader paused for backpressure
	timer   *time.Timer
	timerAt int64
}

var epoch = time.Now()

func monotime() int64 { return int64(time.Since(epoch)) }

const (
	readBufSize  = 64 << 10
	writeBufSize = 64 << 10
	netBufSize   = 16 << 10
)

// newLoop makes an epoll loop (net false) or a net-backend loop for one
// connection, whose buffers are smaller since there is one per connection.
func newLoop(s *Server, idx int, net bool) (*loop, error) {
	l := &loop{srv: s, idx: idx, now: monotime(), net: net}
	rsize, wsize := readBufSize, writeBufSize
	if net {
		rsize, wsize = netBufSize, netBufSize
		l.cond = sync.NewCond(&l.mu)
	}
	b, err := s.pool.Get(rsize + wsize)
	if err != nil {
		return nil, err
	}
	mem := b.Bytes()
	l.bufs = b
	l.rbuf = mem[:rsize:rsize]
	l.wbuf = mem[rsize:rsize:len(mem)]
	if !net {
		l.cache = s.pool.NewCache()
		l.wheel.init(l.now)
	}
	return l, nil
}

func (l *loop) release() {
	if l.cache != nil {
		l.cache.Flush()
	}
	l.bufs.Release()
}

// get takes a pooled buffer of n bytes, from the loop's cache when it has one.
func (l *loop) get(n int) (pool.Buffer, error) {
	if l.cache != nil {
		return l.cache.Get(n)
	}
	return l.srv.pool.Get(n)
}

// revisit queues c to be read again before the loop sleeps: an
// edge-triggered socket that was not read to the end reports nothing more.
func (l *loop) revisit(c *Conn) {
	l.again = append(l.again, c)
}

func (l *loop) schedule(c *Conn, at int64) {
	if l.net {
		l.scheduleNet(at)
		return
	}
	l.wheel.schedule(c, at)
}

// A task carries an operation from another goroutine to a connection's loop.
type task struct {
	next  *task
	kind  taskKind
	id    ConnID
	seq   uint64
	flags wire.Flags
	code  wire.Code
	buf   pool.Buffer // the payload, owned by the task until run
	n     int
	addr  netip.AddrPort
	fn    func()
	call  *call
	errc  chan error
}

type taskKind uint8

const (
	taskSend taskKind = iota
	taskReply
	taskReplyError
	taskGoAway
	taskClose
	taskAdopt // a connection accepted by another loop
	taskRun   // run fn on the loop
	taskCall  // a client's REQUEST or PING
)

var taskPool = sync.Pool{New: func() any { return &task{errc: make(chan error, 1)} }}

// taskQueue is a lock-free multi-producer, single-consumer queue: producers
// push onto a Treiber stack, the loop takes the whole stack with one swap
// and reverses it, which restores arrival order without any ABA hazard.
type taskQueue struct {
	head atomic.Pointer[task]
}

func (q *taskQueue) push(t *task) {
	for {
		old := q.head.Load()
		t.next = old
		if q.head.CompareAndSwap(old, t) {
			return
		}
	}
}

func (q *taskQueue) empty() bool { return q.head.Load() == nil }

func (q *taskQueue) takeAll() *task {
	t := q.head.Swap(nil)
	var rev *task
	for t != nil {
		next := t.next
		t.next = rev
		rev, t = t, next
	}
	return rev
}

// runTasks runs what other goroutines posted, in the order they posted it.
func (l *loop) runTasks() {
	for t := l.tasks.takeAll(); t != nil; {
		next := t.next
		if t.kind == taskRun {
			t.fn()
			t.errc <- nil
		} else if t.kind == taskCall {
			l.runCall(t)
		} else if t.kind == taskAdopt {
			l.adopt(int(t.seq), t.addr)
			l.finishTask(t, nil)
		} else {
			l.finishTask(t, l.runTask(t))
		}
		t = next
	}
}

// runCall queues a client's call on its connection.
func (l *loop) runCall(t *task) {
	k := t.call
	t.call = nil
	c, ok := l.srv.table.Get(conntable.ID(t.id))
	var cl *Client
	if ok { // c is nil when the connection is gone
		cl = c.cl
	}
	if cl != nil && c.l == l && c.st < stClosing {
		cl.sendCall(c, k)
	} else {
		k.complete(ErrNotProcessed)
	}
	l.finishTask(t, nil)
}

// runTask applies t to its connection on the loop and reports the outcome.
func (l *loop) runTask(t *task) error {
	c, ok := l.srv.table.Get(conntable.ID(t.id))
	if !ok || c.l != l || c.st == stClosed {
		return ErrClosed
	}
	payload := t.buf.Bytes()
	if !t.buf.IsZero() {
		payload = payload[:t.n]
	}
	switch t.kind {
	case taskSend:
		return c.sendData(t.flags, payload, len(payload) >= refThreshold)
	case taskReply, taskReplyError:
		if _, ok := c.defers[t.seq]; !ok {
			return ErrNotRequest
		}
		delete(c.defers, t.seq)
		c.deferred--
		var err error
		if t.kind == taskReply {
			err = c.respond(t.seq, t.flags, payload)
		} else {
			c.appendError(t.seq, t.code, string(payload))
		}
		c.resume(true)
		c.maybeFinish()
		if err == ErrTooLarge {
			err = nil // answered with FRAME_TOO_LARGE, as the contract asks
		}
		return err
	case taskGoAway:
		c.goAway(t.code, "server shutting down")
	case taskClose:
		c.goAway(wire.CodeNone, "closed by the application")
	}
	return nil
}

// The timer wheel: connections are filed under the tick of their next
// deadline. Activity only moves a timestamp; when a tick comes the
// connection works out its real deadline and is filed again or expires, so
// the busy path never touches the wheel.
const (
	wheelTick  = int64(10 * time.Millisecond)
	wheelSlots = 512
)

type wheel struct {
	slots [][]*Conn // wheelSlots of them, made by init: a net-backend loop has no wheel
	cur   int64     // the next tick to fire
	count int
}

func (w *wheel) init(now int64) {
	w.slots = make([][]*Conn, wheelSlots)
	w.cur = now/wheelTick + 1
}

func (w *wheel) schedule(c *Conn, at int64) {
	t := at/wheelTick + 1
	if t < w.cur {
		t = w.cur
	}
	if t-w.cur >= wheelSlots {
		t = w.cur + wheelSlots - 1 // beyond the horizon: look again then
	}
	if c.wheelAt != 0 && c.wheelAt <= t {
		return
	}
	c.wheelAt = t
	w.slots[t%wheelSlots] = append(w.slots[t%wheelSlots], c)
	w.count++
}

// next returns the milliseconds until the next tick, or -1 with nothing filed.
func (w *wheel) next(now int64) int {
	if w.count == 0 {
		return -1
	}
	d := w.cur*wheelTick - now
	if d <= 0 {
		return 0
	}
	return int((d + int64(time.Millisecond) - 1) / int64(time.Millisecond))
}

func (w *wheel) advance(now int64, fire func(*Conn)) {
	for w.count > 0 && w.cur*wheelTick <= now {
		s := &w.slots[w.cur%wheelSlots]
		due := *s
		*s = nil
		tick := w.cur
		w.cur++
		for i, c := range due {
			due[i] = nil
			w.count--
			if c.wheelAt != tick {
				continue // filed again under an earlier tick since
			}
			c.wheelAt = 0
			fire(c)
		}
		if len(*s) == 0 && cap(due) <= 64 {
			*s = due[:0]
		}
	}
	if w.count == 0 {
		w.cur = now/wheelTick + 1
	}
}

// expire closes c for a deadline that passed without a complete packet,
// unless bytes are waiting in its socket while the loop means to read it:
// then they arrived in time and the loop is only behind (a burst of
// thousands of connections), and the deadline is looked at again once they
// are read. A connection paused by the partial budget is not being read on
// purpose: its deadline stands.
func (c *Conn) expire(why *wire.Error) {
	if !c.paused && c.unread() {
		c.l.schedule(c, c.l.now+wheelTick)
		return
	}
	c.fail(why.Code, why.Msg, why)
}

// onTimer works out what is due for c and files its next deadline.
func (c *Conn) onTimer() {
	now := c.l.now
	o := c.o
	switch {
	case c.st == stClosed:
		return
	case c.st == stDraining && !c.server && c.closeAt != 0:
		if now >= c.closeAt {
			c.beginClose()
		} else {
			c.l.schedule(c, c.closeAt)
		}
		return
	case c.st == stClosing:
		if now >= c.closeAt {
			c.finalClose()
		} else {
			c.l.schedule(c, c.closeAt)
		}
		return
	case c.overAt != 0:
		if now-c.overAt >= int64(o.SlowConsumerTimeout) {
			c.l.srv.stats.slowConsumers.Add(1)
			c.fail(wire.CodeSlowConsumer, errSlow.Msg, errSlow)
			if c.st == stClosing && c.queued() > 0 {
				// The ERROR is queued behind all the peer has not read,
				// and in the whole deadline the peer did not read the
				// queue down to half its limit: it would not read all of
				// it in a linger, which would only read and discard what
				// it goes on sending. Close now.
				c.finalClose()
			}
		} else {
			c.l.schedule(c, c.overAt+int64(o.SlowConsumerTimeout))
		}
		return
	case c.st == stHandshake && now-c.lastRecv >= int64(o.HandshakeTimeout):
		c.expire(errHandshake)
		return
	}
	next := int64(-1)
	if c.st == stHandshake {
		next = c.lastRecv + int64(o.HandshakeTimeout)
	}
	// The partial packet's deadline does not run while the loop itself has
	// stopped reading (deferred REQUESTs at their cap): the packet cannot
	// arrive. It does while the partial budget holds reading, or a peer
	// could hold its share of the budget for as long as it liked.
	if x := c.x; x != nil && len(x.pend) > 0 && (!c.paused || c.overBudget) {
		at := x.pendAt + int64(o.PartialTimeout)
		if now >= at {
			c.expire(errPartial)
			return
		}
		if next < 0 || at < next {
			next = at
		}
	}
	if c.overBudget {
		// Resume only when this packet fits: were every waiting connection
		// to resume the moment anything freed, they would all grow at once.
		need := int64(0)
		if c.x != nil {
			need = int64(c.x.pendNeed - c.x.pendCost)
		}
		if c.l.srv.stats.partialBytes.Load()+need <= c.l.srv.opts.MaxPartialBytes {
			c.overBudget = false
			c.resume(false)
		} else if at := now + wheelTick; next < 0 || at < next {
			next = at
		}
	}
	if o.IdleTimeout > 0 && !c.paused {
		at := c.lastRecv + int64(o.IdleTimeout)
		if now >= at {
			c.expire(errIdle)
			return
		}
		if next < 0 || at < next {
			next = at
		}
	}
	if o.IdleTimeout > 0 && c.paused && next < 0 {
		next = now + int64(o.IdleTimeout) // look again once reading resumes
	}
	if next >= 0 {
		c.l.schedule(c, next)
	}
}
