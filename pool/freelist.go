package pool

import (
	"sync/atomic"

	"golang.org/x/sys/cpu"
)

// class is one size class: the directory of its regions and the lock-free
// stack of its free slots.
//
// The stack is a Treiber stack whose head packs, in one 64-bit word, the
// index+1 of the top slot (low half; 0 when empty) and a tag (high half)
// that every successful push or pop increments. Without the tag a pop could
// read top A and next B, lose the CPU while A and B are popped and A pushed
// back, then swing the head to B, which is no longer free (the ABA problem).
// With it, that CAS fails because the tag moved on.
//
// Slots are named by index rather than pointer so the head fits in one word;
// an index finds its slot through the region directory, a fixed-length array
// whose entries are stored once, before any of their slots is pushed, so a
// pop that sees an index also sees its region without taking a lock.
type class struct {
	// Read-mostly: every pop reads these, so they sit apart from head.
	pool        *Pool
	index       int // in pool.classes
	size        int
	shift       uint // log2 of slots per region
	regionBytes int
	regions     []atomic.Pointer[region]
	nregions    int // regions mapped; guarded by pool.mu

	_    cpu.CacheLinePad
	head atomic.Uint64 // tag<<32 | top index+1
	_    cpu.CacheLinePad
}

func (c *class) init(p *Pool, index, size, slots, regionBytes int) {
	c.pool = p
	c.index = index
	c.size = size
	for 1<<c.shift < slots {
		c.shift++
	}
	c.regionBytes = regionBytes
	c.regions = make([]atomic.Pointer[region], p.maxBytes/int64(regionBytes))
}

// slot returns the slot with index i.
func (c *class) slot(i uint32) *slot {
	r := c.regions[i>>c.shift].Load()
	return &r.slots[i&(1<<c.shift-1)]
}

// pop takes the top free slot, or returns nil if there is none.
func (c *class) pop() *slot {
	for {
		h := c.head.Load()
		top := uint32(h)
		if top == 0 {
			return nil
		}
		s := c.slot(top - 1)
		// s.next may be stale if another goroutine popped s meanwhile; the
		// tag then makes the CAS fail.
		if c.head.CompareAndSwap(h, nextHead(h, s.next.Load())) {
			return s
		}
	}
}

// popN takes up to len(dst) free slots with a single CAS and returns how
// many it took. As in pop, the walk may read links that change under it,
// but then the head's tag has changed and the CAS fails.
func (c *class) popN(dst []*slot) int {
	for {
		h := c.head.Load()
		top, n := uint32(h), 0
		for ; top != 0 && n < len(dst); n++ {
			dst[n] = c.slot(top - 1)
			top = dst[n].next.Load()
		}
		if n == 0 || c.head.CompareAndSwap(h, nextHead(h, top)) {
			return n
		}
	}
}

// push returns one free slot to the stack.
func (c *class) push(s *slot) { c.pushChain(s, s) }

// pushList returns free slots to the stack with a single CAS.
func (c *class) pushList(slots []*slot) {
	if len(slots) == 0 {
		return
	}
	for i, s := range slots[:len(slots)-1] {
		s.next.Store(slots[i+1].idx + 1)
	}
	c.pushChain(slots[0], slots[len(slots)-1])
}

// pushChain pushes the slots linked from first to last, which the caller
// owns, onto the stack.
func (c *class) pushChain(first, last *slot) {
	for {
		h := c.head.Load()
		last.next.Store(uint32(h))
		if c.head.CompareAndSwap(h, nextHead(h, first.idx+1)) {
			return
		}
	}
}

// nextHead returns a head word with top as its top and the tag of h plus one.
func nextHead(h uint64, top uint32) uint64 {
	return (h>>32+1)<<32 | uint64(top)
}
