package pool

import (
	"sync/atomic"

	"golang.org/x/sys/cpu"
)

// class is one size class: the directory of its regions, the lock-free
// stack of its free slots, and its spare.
//
// The stack is a Treiber stack whose head packs, in one 64-bit word, the
// index+1 of the top slot (low half; 0 when empty) and a tag (high half)
// that every successful push or pop increments. Without the tag a pop could
// read top A and next B, lose the CPU while A and B are popped and A pushed
// back, then swing the head to B, which is no longer free (the ABA problem).
// With it, that CAS fails because the tag moved on. Each free slot's link to
// the next lives in its state word (see slot), which is only written while
// the slot is off the stack.
//
// Slots are named by index rather than pointer so the head fits in one word;
// an index finds its slot through the region directory, a fixed-length array
// whose entries are stored once, before any of their slots is pushed, so a
// pop that sees an index also sees its region without taking a lock.
//
// The spare is one free slot kept beside the stack: the last one released
// while the spare was not free. Get takes it with one CAS on the slot's own
// state, and its Release gives it back with another, where the stack would
// cost a CAS on the head and a write of the slot's state each way. A slot is
// the spare while its state is free with spareMark; the spare pointer only
// says where to look, so a Get that read an old pointer still takes a free
// spare safely, and one that lost the race sees the state changed. Whoever
// moves the pointer off a slot, and whoever makes a slot a spare, then
// reads the other's word (see reclaim), so a free spare the pointer left is
// always pushed onto the stack by one of them and never stranded.
//
// A debug pool keeps no spare: each slot it frees is poisoned and pushed,
// so the fast paths of Get and Release, which skip the poison check, find
// no spare there and need not test for debug mode.
type class struct {
	// Read-mostly: every Get and Release reads these, so they sit apart
	// from head and spare.
	pool        *Pool
	index       int // in pool.classes
	size        int
	debug       bool
	shift       uint // log2 of slots per region
	regionBytes int
	spread      uint // region.spread of its regions
	regions     []atomic.Pointer[region]
	nregions    int // regions mapped; guarded by pool.mu

	_     cpu.CacheLinePad
	head  atomic.Uint64 // tag<<32 | top index+1
	_     cpu.CacheLinePad
	spare atomic.Pointer[slot]
	_     cpu.CacheLinePad
}

func (c *class) init(p *Pool, index, size, slots, regionBytes int) {
	c.pool = p
	c.index = index
	c.size = size
	c.debug = p.debug
	if size >= spreadSize {
		c.spread = 1
	}
	for 1<<c.shift < slots {
		c.shift++
	}
	c.regionBytes = regionBytes
	c.regions = make([]atomic.Pointer[region], p.maxBytes/int64(regionBytes))
}

// slot returns the slot with index i.
func (c *class) slot(i uint32) *slot {
	return c.regions[i>>c.shift].Load().slot(i & (1<<c.shift - 1))
}

// get takes a free slot, puts it in use with one reference and returns it
// as a Buffer of n bytes: the spare, else the top of the stack, else a slot
// of a new region.
func (c *class) get(n int) (Buffer, error) {
	s, st := c.takeSpare()
	if s == nil {
		if s, st = c.pop(); s == nil {
			var err error
			if s, st, err = c.grow(); err != nil {
				return Buffer{}, err
			}
		}
	}
	return s.handle(st, n), nil
}

// isSpare reports whether s is a free spare; s may be nil.
func (s *slot) isSpare() bool {
	return s != nil && s.state.Load()&spareBits == freeBit|spareMark
}

// takeSpare puts the spare in use with one reference and returns it and
// its state, or nil if the spare is not free.
func (c *class) takeSpare() (*slot, uint64) {
	s := c.spare.Load()
	if s == nil {
		return nil, 0
	}
	st := s.state.Load()
	if st&spareBits != freeBit|spareMark {
		return nil, 0
	}
	in := st&^spareBits | 1
	if !s.state.CompareAndSwap(st, in) {
		return nil, 0
	}
	return s, in
}

// offerSpare points the spare at s, just made a free spare, where it
// pointed at sp.
func (c *class) offerSpare(s, sp *slot) {
	if sp == s {
		c.spareStays(s)
		return
	}
	if !c.spare.CompareAndSwap(sp, s) {
		c.reclaim(s) // another Release moved the pointer first
		return
	}
	if sp != nil {
		c.reclaim(sp)
	}
}

// spareStays checks, after s was made a free spare, that the spare pointer
// still names it.
func (c *class) spareStays(s *slot) {
	if c.spare.Load() != s {
		c.reclaim(s)
	}
}

// reclaim pushes s onto the stack if it is a free spare that the spare
// pointer has left. Both the goroutine that moved the pointer off s and the
// one that made s a spare call it, each after its own write: with
// sequentially consistent atomics at least one of them sees the other's,
// and the CAS lets only one push s. A Get that still takes s through an old
// pointer wins that CAS instead, which is as good.
func (c *class) reclaim(s *slot) {
	st := s.state.Load()
	if st&spareBits == freeBit|spareMark && s.state.CompareAndSwap(st, st&^lowMask) {
		c.push(s)
	}
}

// pop takes the top free slot, puts it in use with one reference and
// returns it and its state, or nil if the stack is empty.
func (c *class) pop() (*slot, uint64) {
	for {
		h := c.head.Load()
		top := uint32(h)
		if top == 0 {
			return nil, 0
		}
		s := c.slot(top - 1)
		// st may be stale if another goroutine popped s meanwhile; the tag
		// then makes the CAS fail. If it succeeds, no push or pop came
		// between, so s was on top, free and linked by st, throughout.
		st := s.state.Load()
		if c.head.CompareAndSwap(h, nextHead(h, uint32(st))) {
			in := st&^spareBits | 1
			s.state.Store(in) // no other goroutine writes a free slot's state
			return s, in
		}
	}
}

// popN takes up to len(dst) free slots with a single CAS and returns how
// many it took, each free, off the stack and owned by the caller. As in
// pop, the walk may read slots that change under it, but then the head's
// tag has changed and the CAS fails; the walk stops at a state that is not
// a stack link so that it never follows a reference count as an index.
func (c *class) popN(dst []*slot) int {
	for {
		h := c.head.Load()
		top, n, whole := uint32(h), 0, true
		for top != 0 && n < len(dst) {
			s := c.slot(top - 1)
			st := s.state.Load()
			if st&freeBit == 0 || uint32(st) == spareMark {
				whole = false
				break
			}
			dst[n] = s
			n++
			top = uint32(st)
		}
		if whole && (n == 0 || c.head.CompareAndSwap(h, nextHead(h, top))) {
			return n
		}
	}
}

// push returns one free slot, which the caller owns, to the stack.
func (c *class) push(s *slot) {
	h := c.head.Load()
	s.state.Store(s.state.Load()&^lowMask | uint64(uint32(h)))
	c.pushLinked(s, s, h)
}

// pushLinked pushes the slots linked from first to last, which the caller
// owns and whose last already links to the top of head h, onto the stack,
// linking last again each time the head has moved.
func (c *class) pushLinked(first, last *slot, h uint64) {
	for !c.head.CompareAndSwap(h, nextHead(h, first.idx+1)) {
		h = c.head.Load()
		last.state.Store(last.state.Load()&^lowMask | uint64(uint32(h)))
	}
}

// nextHead returns a head word with top as its top and the tag of h plus one.
func nextHead(h uint64, top uint32) uint64 {
	return (h>>32+1)<<32 | uint64(top)
}
