package pool

import "sync/atomic"

// Buffer is a handle to one pooled buffer: a small value, cheap to copy and
// pass around. Copies share the same references; a copy is not a Retain.
// The bytes are valid until the last reference is released; each Retain
// needs one Release.
//
// The zero Buffer holds nothing: Bytes returns nil and Retain and Release do
// nothing.
type Buffer struct {
	s   *slot
	gen uint32 // the slot's generation when Get handed it out
	n   uint32 // requested length
}

// slot is the Go-heap metadata of one buffer: 32 bytes, so two slots share
// a cache line and none straddles two. In classes of spreadSize and up the
// slots sit a cache line apart (see region.spread).
//
// state is the one word every operation on the buffer reads and changes, so
// that a single CAS both checks that a handle is current and changes the
// slot:
//
//	bits 63..33  generation (31 bits, wrapping)
//	bit  32      free
//	bits 31..0   in use: the reference count (at least 1)
//	             free:   the index+1 of the next slot on the class's stack
//	                     (0 at the bottom, or when on no stack), or spareMark
//	                     for the class's spare (see class)
//
// The Release that drops the count to zero also increments the generation,
// in the same CAS: from then on every old handle is stale, and Retain,
// Release and debug-mode Bytes on it fail the generation check instead of
// touching the slot's next user. No handle ever holds the generation of a
// free slot. Keeping the stack's link in the same word lets that CAS also
// link the slot onto the stack, and a free slot costs Stats nothing to
// recognise.
//
// A slot parked in a Cache is instead armed: in use with one reference, the
// one its next Get will hand out, under a generation no handle holds yet, so
// that Get needs no atomic write. Cache.Put arms it in the same CAS that
// frees it.
type slot struct {
	state atomic.Uint64
	idx   uint32 // index within its class
	reg   *region
	cls   *class
}

const (
	genShift  = 33
	genMask   = 1<<31 - 1
	freeBit   = 1 << 32
	lowMask   = 1<<32 - 1
	spareMark = lowMask // never a link: indexes stay below 1<<31
	// spareBits selects what tells a spare from every other state.
	spareBits = freeBit | lowMask
)

// live returns the state of a slot of generation gen with one reference.
func live(gen uint32) uint64 { return uint64(gen)<<genShift | 1 }

// freeState returns the state of a free slot of generation gen linked to
// link. A gen of 1<<31 wraps to 0 with the shift.
func freeState(gen uint32, link uint32) uint64 {
	return uint64(gen)<<genShift | freeBit | uint64(link)
}

// genOf returns the generation in state st.
func genOf(st uint64) uint32 { return uint32(st >> genShift) }

// current reports whether state st is in use under generation gen: one
// compare checks the generation and that the free bit is clear.
func current(st uint64, gen uint32) bool { return st>>32 == uint64(gen)<<1 }

// handle returns a Buffer of n bytes over s, in use in state st, checking
// in debug mode that nothing wrote to it while it was free.
func (s *slot) handle(st uint64, n int) Buffer {
	if s.cls.debug {
		checkPoison(s)
	}
	return Buffer{s: s, gen: genOf(st), n: uint32(n)}
}

// IsZero reports whether b is the zero Buffer, which holds nothing.
func (b Buffer) IsZero() bool { return b.s == nil }

// Bytes returns the buffer's bytes, with the length given to Get and the
// class size as capacity. The bytes are valid until the last reference is
// released; each Retain needs one Release.
//
// In debug mode Bytes panics if b's last reference was already released.
func (b Buffer) Bytes() []byte {
	s := b.s
	if s == nil {
		return nil
	}
	r := s.reg
	if r.debug && !current(s.state.Load(), b.gen) {
		panicStale("Bytes", b)
	}
	return r.bytes(s)[:b.n]
}

// Retain adds a reference, so that the bytes stay valid for one more
// Release. The bytes are valid until the last reference is released; each
// Retain needs one Release. It panics if b's last reference was already
// released.
func (b Buffer) Retain() {
	s := b.s
	if s == nil {
		return
	}
	for {
		st := s.state.Load()
		if !current(st, b.gen) {
			panicStale("Retain", b)
		}
		if s.state.CompareAndSwap(st, st+1) {
			return
		}
	}
}

// Release drops a reference; the last one returns the buffer to its pool,
// after which b and every copy of it are stale. It panics if b's last
// reference was already released.
func (b Buffer) Release() {
	s := b.s
	if s == nil {
		return
	}
	// The common case, with no call on the way: the last reference of
	// the class's spare goes back to being the spare, in one CAS that also
	// checks b's generation. Anything else, a stale b included, fails the
	// CAS and takes the general path.
	if c := s.cls; c.spare.Load() == s &&
		s.state.CompareAndSwap(live(b.gen), freeState(b.gen+1, spareMark)) {
		c.spareStays(s)
		return
	}
	b.release("Release")
}

// release drops a reference for op and, if it was the last one, returns the
// slot to its class: as the class's spare if the spare is not free, else
// onto the shared stack. Either way the CAS that drops the reference also
// puts the slot in the state it is published in, so the last release costs
// two atomic writes: that CAS and the one that publishes it.
func (b Buffer) release(op string) {
	s := b.s
	c := s.cls
	if c.debug {
		// Poison the memory before any Get can see the slot free; a
		// debug pool keeps no spare (see class).
		if b.drop(op, false) {
			c.push(s)
		}
		return
	}
	for {
		st := s.state.Load()
		if !current(st, b.gen) {
			panicStale(op, b)
		}
		if uint32(st) > 1 {
			if s.state.CompareAndSwap(st, st-1) {
				return
			}
			continue
		}
		if sp := c.spare.Load(); sp == s || !sp.isSpare() {
			if s.state.CompareAndSwap(st, freeState(b.gen+1, spareMark)) {
				c.offerSpare(s, sp)
				return
			}
			continue
		}
		h := c.head.Load()
		if s.state.CompareAndSwap(st, freeState(b.gen+1, uint32(h))) {
			c.pushLinked(s, s, h)
			return
		}
	}
}

// drop drops a reference for op and reports whether it was the last one, in
// which case the caller owns the slot, which is now free and on no stack,
// or, if arm, armed: in use with one reference under the next generation.
func (b Buffer) drop(op string, arm bool) bool {
	s := b.s
	for {
		st := s.state.Load()
		if !current(st, b.gen) {
			panicStale(op, b)
		}
		next, last := st-1, uint32(st) == 1
		if last {
			next = freeState(b.gen+1, 0)
			if arm {
				next = live(b.gen + 1)
			}
		}
		if s.state.CompareAndSwap(st, next) {
			if last && s.cls.debug {
				freed(s)
			}
			return last
		}
	}
}
