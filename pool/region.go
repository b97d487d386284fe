package pool

import (
	"fmt"
	"sync/atomic"
)

// Every platform file provides the memory under regions:
//
//	// mapRegion returns size bytes of zeroed, writable memory, preferably
//	// outside the Go heap.
//	func mapRegion(size int, populate, hugePages bool) ([]byte, error)
//	// unmapRegion gives back memory from mapRegion; it is never touched again.
//	func unmapRegion(mem []byte) error
//
// mmap_linux.go maps anonymous memory; mmap_other.go falls back to Go slices
// with the same behaviour apart from where the bytes live.

// region is one mapping carved into equal slots. Its metadata lives on the
// Go heap, allocated once when the region is mapped, so Get and Release
// allocate nothing; the mapped bytes hold no Go pointers.
type region struct {
	mem   []byte
	size  int    // of each slot
	mask  uint32 // slot index within the class to index within the region
	debug bool
	cls   *class
	// slots holds the slots, one every 1<<spread entries. Slots of
	// neighbouring indexes often belong to different owners (two event
	// loops' Caches, each refilled with a few slots at a time): where they
	// share a cache line, each owner's CAS on its own slot steals the line
	// from the other. Spread 1 gives every slot a line to itself, which
	// costs 32 bytes of Go heap per buffer, so it is used from spreadSize
	// up, where that is at most 1/128 of the buffer and where Caches hold
	// the fewest slots of a class, so that neighbours are most often held
	// by different owners.
	slots  []slot
	spread uint
	// freedAt, in debug mode only, holds for each slot the call site of the
	// release that last freed it.
	freedAt []atomic.Pointer[string]
}

// spreadSize is the smallest class whose slots sit a cache line apart.
const spreadSize = 4096

// slot returns the slot with index j within r.
func (r *region) slot(j uint32) *slot { return &r.slots[j<<r.spread] }

// bytes returns the whole of slot s's memory.
func (r *region) bytes(s *slot) []byte {
	off := int(s.idx&r.mask) * r.size
	return r.mem[off : off+r.size : off+r.size]
}

// grow maps a new region, puts its first slot in use with one reference and
// returns it and its state, and pushes the rest. It takes pool.mu: this is
// the one slow path allowed a lock.
func (c *class) grow() (*slot, uint64, error) {
	p := c.pool
	if p.mapped.Load()+int64(c.regionBytes) > p.maxBytes {
		// Full: fail without the lock, so a storm of Gets at the cap does
		// not queue on it.
		return c.exhausted(nil)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed() {
		return nil, 0, ErrClosed
	}
	if s, st := c.takeSpare(); s != nil {
		return s, st, nil // a Release freed a slot while this Get waited
	}
	if s, st := c.pop(); s != nil {
		return s, st, nil // another Get mapped a region while this one waited
	}
	if p.mapped.Load()+int64(c.regionBytes) > p.maxBytes {
		return c.exhausted(nil)
	}
	mem, err := mapRegion(c.regionBytes, p.populate, p.hugePages)
	if err != nil {
		return c.exhausted(err)
	}
	r := &region{
		mem:    mem,
		size:   c.size,
		mask:   1<<c.shift - 1,
		debug:  p.debug,
		cls:    c,
		slots:  make([]slot, 1<<c.shift<<c.spread),
		spread: c.spread,
	}
	n := uint32(1) << c.shift
	first := uint32(c.nregions) << c.shift
	for i := range n {
		s := r.slot(i)
		s.idx = first + i
		s.reg = r
		s.cls = c
		s.state.Store(freeState(0, s.idx+2)) // links each slot to the one after it
	}
	if r.debug {
		r.freedAt = make([]atomic.Pointer[string], n)
		poison(mem)
	}
	c.regions[c.nregions].Store(r)
	c.nregions++
	p.mapped.Add(int64(c.regionBytes))
	if n > 1 {
		last := r.slot(n - 1)
		h := c.head.Load()
		last.state.Store(freeState(0, uint32(h)))
		c.pushLinked(r.slot(1), last, h)
	}
	s := r.slot(0)
	s.state.Store(live(0))
	return s, live(0), nil
}

// exhausted counts a failed Get and returns the slot it can find, in use
// with its state, if a Release freed one since the caller looked, or
// ErrExhausted wrapping cause.
func (c *class) exhausted(cause error) (*slot, uint64, error) {
	if s, st := c.takeSpare(); s != nil {
		return s, st, nil
	}
	if s, st := c.pop(); s != nil {
		return s, st, nil
	}
	c.pool.failures.Add(1)
	if cause != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrExhausted, cause)
	}
	return nil, 0, ErrExhausted
}

// unmapAll unmaps every region of c and forgets them; pool.mu is held.
func (c *class) unmapAll() error {
	var first error
	for i := range c.nregions {
		if err := unmapRegion(c.regions[i].Load().mem); err != nil && first == nil {
			first = err
		}
		c.regions[i].Store(nil)
	}
	c.nregions = 0
	c.head.Store(0)
	c.spare.Store(nil)
	return first
}

// stats counts c's slots; pool.mu is held.
func (c *class) stats() ClassStats {
	cs := ClassStats{Size: c.size, Slots: c.nregions << c.shift}
	for i := range c.nregions {
		r := c.regions[i].Load()
		for j := range uint32(1) << c.shift {
			if r.slot(j).state.Load()&freeBit == 0 {
				cs.InUse++
			}
		}
	}
	cs.InUseBytes = int64(cs.InUse) * int64(c.size)
	return cs
}
