package zerowire

import (
	"github.com/zerowire/zerowire/pool"
)

// The receive side, shared by both backends. Bytes are read into the loop's
// one shared read buffer and every complete packet is dispatched as a view
// into it; only a trailing partial packet is copied out, into a pooled
// buffer of the connection's own. A packet too large to be worth copying
// twice is read straight into a buffer of its exact size.

// A partial packet larger than a quarter of the read buffer is completed in
// a buffer of its exact size rather than copied back in front of the shared
// one each time more of it arrives.

// readOnce performs one read for c and dispatches what it completed. It
// returns false when nothing more is to be read now.
func (l *loop) readOnce(c *Conn) bool {
	if c.holding() {
		l.dispatchHeld(c)
		return true
	}
	buf := l.readTarget(c)
	if buf == nil {
		return false // held short again: the partial budget is still spent
	}
	n, ok := l.read(c, buf)
	if !ok {
		return false
	}
	l.readDone(c, n)
	return true
}

// readTarget returns where the next read goes: after the partial packet,
// either in that packet's own buffer or copied back in front of the shared
// one. It returns nil when a packet held short still finds the partial
// budget spent: c is paused again and nothing is to be read.
func (l *loop) readTarget(c *Conn) []byte {
	if c.x == nil || len(c.x.pend) == 0 {
		return l.rbuf
	}
	if c.st >= stClosing {
		c.dropPartial() // a closing connection discards what it reads
		return l.rbuf
	}
	x := c.x
	if x.pendNeed > len(l.rbuf)/4 {
		if cap(x.pend) < x.pendNeed {
			c.growPartial() // it was held short while the budget was spent
			if cap(x.pend) < x.pendNeed {
				return nil
			}
		}
		return x.pend[len(x.pend):x.pendNeed]
	}
	k := copy(l.rbuf, x.pend)
	return l.rbuf[k:]
}

// dispatchHeld dispatches the packets held back while the handler had its
// fill of REQUESTs, before anything more is read; it may hold some again.
func (l *loop) dispatchHeld(c *Conn) {
	l.readTarget(c) // copies them back in front of the shared buffer
	l.readDone(c, 0)
	c.maybeFinish()
}

// readDone dispatches what n more bytes completed.
func (l *loop) readDone(c *Conn, n int) {
	k, since := 0, int64(-1)
	if x := c.x; x != nil && len(x.pend) > 0 {
		if x.pendNeed > len(l.rbuf)/4 {
			x.pend = x.pend[:len(x.pend)+n]
			if len(x.pend) == x.pendNeed {
				c.consume(x.pend)
				c.dropPartial()
			}
			return
		}
		k, since = len(x.pend), x.pendAt
		c.dropPartial()
	}
	b := l.rbuf[:k+n]
	used, need := c.consume(b)
	if used > 0 || since < 0 {
		// A new packet starts: its clock starts now, not at the wake-up,
		// which may be a long batch ago.
		since = monotime()
	}
	if used < len(b) && c.st < stClosing {
		c.keepPartial(b[used:], need, since, true)
	}
	if l.wOwner == c {
		l.flushShared() // the replies to this batch leave in one write
	}
}

// read reads into buf and accounts for the result; false means stop.
func (l *loop) read(c *Conn, buf []byte) (int, bool) {
	n, err := c.readSome(buf)
	switch {
	case n > 0:
		l.srv.stats.bytesIn.Add(uint64(n))
		return n, true
	case err == nil:
		return 0, false // would block
	case err == errEOF:
		c.rdMore = false
		c.onEOF()
		return 0, false
	default:
		c.rdMore = false
		c.lost(err)
		return 0, false
	}
}

// keepPartial copies the start of a packet, which began to arrive at
// since, out of the shared buffer, against the server's partial budget;
// with mayShort, a spent budget holds only the bytes at hand and pauses.
func (c *Conn) keepPartial(b []byte, need int, since int64, mayShort bool) {
	size := len(b)
	if need > len(c.l.rbuf)/4 {
		size = need
	}
	s := c.l.srv
	if s.stats.partialBytes.Add(int64(size)) > s.opts.MaxPartialBytes && size > len(b) && mayShort {
		// Over budget: hold only the bytes already read, and read no more
		// until the budget frees.
		s.stats.partialBytes.Add(int64(len(b) - size))
		size = len(b)
		c.overBudget, c.paused = true, true
		c.l.schedule(c, c.l.now+wheelTick)
	}
	x := c.bufs()
	x.pendCost, x.pendAt = size, since
	c.l.schedule(c, since+int64(c.o.PartialTimeout))
	if buf, err := c.l.get(size); err == nil {
		x.pendBuf, x.pend = buf, buf.Bytes()[:0]
	} else {
		// The pool is at its cap: keep the bytes on the Go heap rather than
		// lose them; the connection's reads stay bounded by one packet.
		x.pend = make([]byte, 0, size)
	}
	x.pend = append(x.pend, b...)
	x.pendNeed = need
}

// growPartial gives a large partial packet a buffer of its full size, if
// the partial budget has room for it; if not, the packet stays held short
// and c pauses again. Every connection held short resumes on the first
// tick the budget is under its cap, so growing must check the budget
// again: growing them all would overrun it by a packet each.
func (c *Conn) growPartial() {
	x := c.x
	have, need, since := x.pend, x.pendNeed, x.pendAt
	old, cost := x.pendBuf, x.pendCost
	x.pendBuf = pool.Buffer{}
	x.pendCost = 0
	c.l.srv.stats.partialBytes.Add(-int64(cost))
	c.keepPartial(have, need, since, true)
	if !old.IsZero() {
		old.Release()
	}
}

func (c *Conn) dropPartial() {
	x := c.x
	if x == nil {
		return
	}
	if !x.pendBuf.IsZero() {
		x.pendBuf.Release()
	}
	c.l.srv.stats.partialBytes.Add(-int64(x.pendCost))
	x.pend, x.pendBuf, x.pendNeed, x.pendCost = nil, pool.Buffer{}, 0, 0
	if x.out == nil {
		c.x = nil
	}
}

// onEOF handles the peer shutting its write side: answer what was
// received, then close.
func (c *Conn) onEOF() {
	c.eof = true
	switch c.st {
	case stHandshake:
		c.finalClose()
	case stClosing:
		if c.queued() == 0 && c.l.wOwner != c {
			c.finalClose()
		}
	case stOpen, stDraining:
		c.peerGone = true
		c.st = stDraining
		c.maybeFinish()
	}
}
