package zerowire

import (
	"github.com/zerowire/zerowire/pool"
	"github.com/zerowire/zerowire/wire"
)

// The send side. Packets are encoded straight into the loop's shared write
// buffer and written with one write per connection per wake-up; only what
// the socket does not take is copied into a pooled buffer of the
// connection's own, so an idle connection holds no buffer.

func (c *Conn) appendPacket(t wire.FrameType, flags wire.Flags, seq uint64, payload []byte) {
	n := wire.PacketSize(len(payload), flags)
	dst := c.outTail(n)
	*dst = wire.AppendPacket(*dst, t, flags, seq, payload)
	c.l.srv.stats.packetsOut.Add(1)
	c.l.srv.stats.bytesOut.Add(uint64(n))
	if c.x != nil && dst == &c.x.out {
		if !c.wantOut {
			// A packet larger than the shared buffer went straight to c's
			// own queue, which is otherwise written only on write
			// readiness, and that is armed only once the socket is full:
			// write it now.
			c.flush()
		} else {
			// The socket is full and no write is tried until it drains:
			// check the queue's limit here, or a peer that sends without
			// reading grows the queue for as long as it sends.
			c.blocked()
		}
	}
}

// refThreshold is the payload size from which a send from another
// goroutine leaves from its pooled buffer by vectored write instead of
// being copied into the write buffer.
const refThreshold = 2048

// appendPacketRef is appendPacket for a payload that outlives the call
// only as long as the write: what the socket does not take is copied.
func (c *Conn) appendPacketRef(t wire.FrameType, flags wire.Flags, seq uint64, payload []byte) {
	if c.l.wOwner == c {
		c.l.flushShared()
	}
	if c.queued() > 0 || c.st >= stClosing {
		c.appendPacket(t, flags, seq, payload)
		return
	}
	size := wire.PacketSize(len(payload), flags)
	// The header and trailer are encoded into the loop's scratch: the
	// vector handed to writev keeps pointers to them, so buffers on the
	// stack would escape and cost an allocation per send.
	l := c.l
	hdr := wire.AppendPacketHeader(l.vecScratch[:0], t, flags, seq, len(payload))
	var trailer []byte
	if flags&wire.FlagPayloadCRC != 0 {
		trailer = wire.AppendTrailer(l.vecScratch[wire.HeaderSize:wire.HeaderSize], payload)
	}
	n, err := c.writeVec(hdr, payload, trailer)
	if err != nil {
		c.lost(err)
		return
	}
	c.l.srv.stats.packetsOut.Add(1)
	c.l.srv.stats.bytesOut.Add(uint64(size))
	if n < size {
		c.growOut(size - n)
		x := c.x
		for _, part := range [][]byte{hdr, payload, trailer} {
			skip := min(n, len(part))
			n -= skip
			x.out = append(x.out, part[skip:]...)
		}
		c.blocked()
	}
}

// outTail returns the buffer the next n bytes for c must be appended to,
// with room for them; order is kept because the shared buffer is used only
// while c has nothing queued of its own. The shared buffer takes no more
// than MaxQueuedBytes for one connection: what the socket refuses of it
// moves to c's queue at once, where each packet after it is checked
// against the limit.
func (c *Conn) outTail(n int) *[]byte {
	l := c.l
	if c.queued() == 0 && n <= cap(l.wbuf) {
		if l.wOwner != c {
			l.flushShared()
			l.wOwner = c
		}
		if k := len(l.wbuf) + n; k <= cap(l.wbuf) && k <= c.o.MaxQueuedBytes {
			return &l.wbuf
		}
		l.flushShared()
		if c.queued() == 0 {
			l.wOwner = c
			return &l.wbuf
		}
	}
	if l.wOwner == c {
		l.flushShared()
	}
	c.growOut(n)
	return &c.x.out
}

// growOut makes room for n more bytes in c's own queue. When the pool is at
// its cap the queue moves to the Go heap: nothing accepted is dropped, and
// the queue limit pauses reading soon after.
func (c *Conn) growOut(n int) {
	x := c.bufs()
	if cap(x.out)-len(x.out) >= n {
		return
	}
	live := x.out[x.outOff:]
	size := len(live) + n
	if size < 4096 {
		size = 4096
	} else {
		size += size / 2
	}
	var nb pool.Buffer
	var mem []byte
	if b, err := c.l.get(size); err == nil {
		nb, mem = b, b.Bytes()[:0]
	} else {
		mem = make([]byte, 0, size)
	}
	mem = append(mem, live...)
	if !x.outBuf.IsZero() {
		x.outBuf.Release()
	}
	x.out, x.outBuf, x.outOff = mem, nb, 0
}

// bufs returns the connection's own buffers, made on first need: an idle
// connection carries none.
func (c *Conn) bufs() *connBufs {
	if c.x == nil {
		c.x = &connBufs{}
	}
	return c.x
}

func (c *Conn) releaseOut() {
	x := c.x
	if x == nil {
		return
	}
	if !x.outBuf.IsZero() {
		x.outBuf.Release()
	}
	x.out, x.outBuf, x.outOff = nil, pool.Buffer{}, 0
	if x.pend == nil {
		c.x = nil
	}
}

// queued is the number of bytes waiting for the socket.
func (c *Conn) queued() int {
	if c.x == nil {
		return 0
	}
	return len(c.x.out) - c.x.outOff
}

// flushShared writes the shared buffer to its owner; what the socket does
// not take is copied to the owner's own queue.
func (l *loop) flushShared() {
	c := l.wOwner
	if c == nil {
		return
	}
	l.wOwner = nil
	b := l.wbuf
	l.wbuf = l.wbuf[:0]
	if len(b) == 0 || c.st == stClosed {
		return
	}
	n, err := c.writeSome(b)
	if err != nil {
		c.lost(err)
		return
	}
	if n < len(b) {
		c.growOut(len(b) - n)
		c.x.out = append(c.x.out, b[n:]...)
		c.blocked()
	}
	c.afterWrite()
}

// flush writes c's own queue.
func (c *Conn) flush() {
	if c.queued() == 0 || c.st == stClosed {
		c.afterWrite()
		return
	}
	x := c.x
	n, err := c.writeSome(x.out[x.outOff:])
	if err != nil {
		c.lost(err)
		return
	}
	x.outOff += n
	if c.queued() == 0 {
		c.releaseOut()
	} else {
		c.blocked()
	}
	c.afterWrite()
}

// blocked notes that the socket is full: wait for write readiness, and
// start the slow-consumer clock once the queue is over its limit.
func (c *Conn) blocked() {
	c.armWrite(true)
	if c.queued() > c.o.MaxQueuedBytes && c.overAt == 0 {
		c.overAt = c.l.now
		c.paused = true
		c.l.schedule(c, c.overAt+int64(c.o.SlowConsumerTimeout))
	}
}

// afterWrite resumes a connection whose queue has drained, and finishes the
// close of one that has nothing left to say.
func (c *Conn) afterWrite() {
	if c.st == stClosed {
		return
	}
	if c.queued() == 0 {
		c.armWrite(false)
	}
	if c.overAt != 0 && c.queued() <= c.o.MaxQueuedBytes/2 {
		c.overAt = 0
		c.resume(true)
	}
	if c.st == stClosing && c.queued() == 0 && (c.l.wOwner != c) {
		c.shutWrite()
		if c.eof {
			c.finalClose()
		}
	}
}

// resume lets a paused connection read again once every cause is gone.
// own says the cause just gone was the loop's own backpressure (deferred
// REQUESTs, the outbound queue), under which a partial packet's deadline
// did not run: it restarts. Not so for the partial budget, or a peer held
// short could have its deadline renewed each time it resumes.
func (c *Conn) resume(own bool) {
	if !c.paused || c.overAt != 0 || c.overBudget || int(c.deferred) >= c.o.MaxPendingRequests {
		return
	}
	c.paused = false
	c.lastRecv = c.l.now // the idle timer did not run while paused
	if x := c.x; own && x != nil && len(x.pend) > 0 {
		x.pendAt = c.l.now
		c.l.schedule(c, x.pendAt+int64(c.o.PartialTimeout))
	}
	if c.l.net {
		c.l.cond.Broadcast()
	} else if c.rdMore || c.holding() {
		c.l.revisit(c)
	}
}

// beginClose flushes what is queued, shuts the write side, and keeps
// reading (discarding) until the peer closes or the linger deadline passes,
// so that a reset does not destroy the last packets in flight.
func (c *Conn) beginClose() {
	if c.st >= stClosing {
		return
	}
	c.st = stClosing
	c.paused = false
	c.closeAt = c.l.now + int64(c.o.CloseLinger)
	c.l.schedule(c, c.closeAt)
	if c.l.wOwner == c {
		c.l.flushShared()
	} else {
		c.flush()
	}
	if c.rdMore && c.st == stClosing {
		c.l.revisit(c)
	}
}

// finalClose releases everything the connection holds and tells the
// endpoint, exactly once.
func (c *Conn) finalClose() {
	if c.st == stClosed {
		return
	}
	if c.l.wOwner == c {
		c.l.wOwner = nil
		c.l.wbuf = c.l.wbuf[:0]
	}
	c.st = stClosed
	c.closeTransport()
	c.releaseOut()
	c.dropPartial()
	c.l.srv.forget(c)
	if c.l.net {
		c.l.cond.Broadcast() // the reader may wait for this close
	}
	if c.openCalled || !c.server {
		c.endpoint().onClose(c, c.err)
	}
}

// lost handles a transport failure: nothing more can be sent.
func (c *Conn) lost(err error) {
	if c.err == nil {
		c.err = err
	}
	c.finalClose()
}
