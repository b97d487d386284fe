// Package conntable maps connection IDs to connections without locks.
//
// An ID names a slot and one generation of it. A slot's generation changes
// every time the slot is reused, so an ID stops resolving the moment its
// connection is removed and never resolves again, even though the slot (like
// an fd) is reused at once. A slot that has used up its generations is
// retired rather than wrapped, so no ID is ever issued twice.
//
// Get is wait-free and allocation-free; Add and Remove are lock-free and,
// once the table has grown to its working size, allocation-free too.
package conntable

import (
	"errors"
	"strconv"
	"sync/atomic"
)

// The slot index space is 32 bits, split into three levels so that a table
// costs one small root directory until it is used, grows in chunks of 4096
// slots, and never moves a slot once it exists.
const (
	chunkBits = 12                        // 4096 slots per chunk
	leafBits  = 10                        // 1024 chunk pointers per leaf
	rootBits  = 32 - leafBits - chunkBits // 1024 leaf pointers in the root
	leafShift = chunkBits + leafBits
	chunkMask = 1<<chunkBits - 1
	leafMask  = 1<<leafBits - 1
	chunkLen  = 1 << chunkBits

	maxSlots = 1<<32 - 1 // index 2^32-1 is never issued: the free stack stores index+1 in 32 bits
	maxGen   = 1<<32 - 1 // a slot that has issued this generation is retired, not wrapped
)

// ErrFull is returned by Add when every slot index has been issued and none
// is free. Retired slots stay issued, so they count towards this.
var ErrFull = errors.New("zerowire: connection table full")

// ID identifies one connection for as long as it is in a Table: the low 32
// bits are the slot index, the high 32 bits the slot's generation. Generations
// start at 1, so the zero ID is never issued and can mean "no connection".
type ID uint64

func makeID(index, gen uint32) ID { return ID(uint64(gen)<<32 | uint64(index)) }

func (id ID) index() uint32 { return uint32(id) }
func (id ID) gen() uint32   { return uint32(id >> 32) }

// String formats id as "index#generation", e.g. "17#3", so that log lines
// show which slot a connection used and how often that slot has been reused.
func (id ID) String() string {
	var b [24]byte
	s := strconv.AppendUint(b[:0], uint64(id.index()), 10)
	s = append(s, '#')
	s = strconv.AppendUint(s, uint64(id.gen()), 10)
	return string(s)
}

// slot holds one connection at a time.
//
// Get's correctness rests on the order of the writes to id and val (see Get):
// Add stores val before id, Remove clears id before val.
type slot[T any] struct {
	id   atomic.Uint64     // ID of the occupant; 0 while free or retired
	val  atomic.Pointer[T] // the occupant; nil while free, so it can be collected
	next atomic.Uint32     // free stack: index+1 of the slot below, 0 at the bottom

	// gen is the last generation issued. It is written by the Remove that
	// freed the slot and read by the Add that pops it; the free stack's
	// compare-and-swap on the head orders the two, so it needs no atomic.
	gen uint32
}

type (
	chunk[T any] [chunkLen]slot[T]
	leaf[T any]  [1 << leafBits]atomic.Pointer[chunk[T]]
)

// Table maps IDs to values of type *T. It is safe for concurrent use by any
// number of goroutines. The zero Table is empty and ready to use; New exists
// for symmetry with the rest of the library. A Table must not be copied.
//
// Memory: 8 KiB for the root, then 8 KiB per 4M slots and 96 KiB per 4096
// slots, allocated the first time an index in their range is issued and kept
// for the table's life; slots are reused, so this tracks the peak number of
// live connections, not the number ever added.
type Table[T any] struct {
	root [1 << rootBits]atomic.Pointer[leaf[T]] // read by every Get; written rarely

	// These change on every Add and Remove. They sit after root so that they
	// share a cache line only with root's last entry (indexes above 2^32-4M),
	// not with the entries every Get reads.

	// free is a Treiber stack of released slots: tag<<32 | (index+1), with a
	// low half of 0 meaning empty. The tag changes on every successful
	// compare-and-swap, so a pop that read a stale next link fails instead
	// of installing it (the ABA problem); it would take exactly a multiple of
	// 2^32 pushes and pops between one pop's load and its CAS to fool it.
	free  atomic.Uint64
	fresh atomic.Uint64 // indexes ever taken from the never-used tail; may run past maxSlots
	n     atomic.Int64  // live entries
}

// New returns an empty Table; the zero Table is equally ready.
func New[T any]() *Table[T] { return new(Table[T]) }

// chunk returns the chunk holding index, or nil if none was allocated.
func (t *Table[T]) chunk(index uint32) *chunk[T] {
	l := t.root[index>>leafShift].Load()
	if l == nil {
		return nil
	}
	return l[index>>chunkBits&leafMask].Load()
}

// slot returns the slot for index, or nil if its chunk was never allocated.
func (t *Table[T]) slot(index uint32) *slot[T] {
	c := t.chunk(index)
	if c == nil {
		return nil
	}
	return &c[index&chunkMask]
}

// grow returns the slot for index, allocating its leaf and chunk if needed.
func (t *Table[T]) grow(index uint32) *slot[T] {
	l := loadOrNew(&t.root[index>>leafShift])
	c := loadOrNew(&l[index>>chunkBits&leafMask])
	return &c[index&chunkMask]
}

// loadOrNew returns *p, first installing a new zero P if *p is nil. Racing
// callers all get the one that won the compare-and-swap; the losers' copies
// were never published, so dropping them loses nothing.
func loadOrNew[P any](p *atomic.Pointer[P]) *P {
	if v := p.Load(); v != nil {
		return v
	}
	v := new(P)
	if p.CompareAndSwap(nil, v) {
		return v
	}
	return p.Load()
}

// Add stores v under a new ID and returns it. v may be nil; Get then reports
// (nil, true). Add is lock-free and, once the table has grown to its working
// size, does not allocate.
//
// Add returns ErrFull when all 2^32-1 slot indexes are issued and none is free.
func (t *Table[T]) Add(v *T) (ID, error) {
	index, s, ok := t.pop()
	if !ok {
		i := t.fresh.Add(1) - 1
		if i >= maxSlots {
			return 0, ErrFull
		}
		index, s = uint32(i), t.grow(uint32(i))
	}
	id := makeID(index, s.gen+1)
	s.val.Store(v)
	// Count before publishing, so that a Remove of id, which must see id
	// first, cannot drive n below zero.
	t.n.Add(1)
	s.id.Store(uint64(id))
	return id, nil
}

// Get returns the value added under id, and whether id is live. Once id has
// been removed, Get reports (nil, false) for it forever. Get is wait-free and
// does not allocate.
func (t *Table[T]) Get(id ID) (*T, bool) {
	// The zero ID would match a free slot 0.
	s := t.slot(id.index())
	if s == nil || id == 0 || s.id.Load() != uint64(id) {
		return nil, false
	}
	// The slot may be removed and reused by another Add between these loads;
	// the second load of id is what keeps the new occupant out. Go's atomics
	// are sequentially consistent, so consider the single order of all of
	// them:
	//
	//  - The first load saw id, so it comes after the Add of id stored id,
	//    which it did after storing its val. val loaded below therefore
	//    reads that store or a later one.
	//  - Every later store to val comes after id was cleared: Remove clears
	//    id before storing nil, and the next Add pops the slot only after
	//    that Remove pushed it. So if v came from a later store, the load
	//    below comes after id was cleared, and as IDs are never reissued
	//    it cannot see id again.
	//
	// Hence if both loads see id, v is the value added under id, and id was
	// live at the second load, which is where Get takes effect.
	v := s.val.Load()
	if s.id.Load() != uint64(id) {
		return nil, false
	}
	return v, true
}

// Remove removes id and reports whether it was live. A stale or unknown id
// has no effect and returns false; of racing Removes of one id exactly one
// returns true. Remove is lock-free and does not allocate.
func (t *Table[T]) Remove(id ID) bool {
	// The zero ID would match a free slot 0.
	s := t.slot(id.index())
	if s == nil || id == 0 || !s.id.CompareAndSwap(uint64(id), 0) {
		return false
	}
	// From here the slot is ours: no Get resolves id, no other Remove can
	// succeed, and no Add can take the slot until push.
	s.val.Store(nil)
	t.n.Add(-1)
	s.gen = id.gen()
	if s.gen != maxGen {
		t.push(id.index(), s)
	}
	return true
}

// Range calls f for live entries until f returns false, without blocking
// Add, Get or Remove, so f may call them too. Every entry live for the whole
// of Range is visited exactly once; no entry removed before Range began is
// visited; an entry added or removed during Range may or may not be. Each
// visit passes the value added under that ID, as Get would return it.
//
// Range's signature is an iter.Seq2, so "for id, v := range t.Range" works.
func (t *Table[T]) Range(f func(ID, *T) bool) {
	// An entry live for the whole of Range has an index below fresh.
	end := min(t.fresh.Load(), maxSlots)
	for base := uint64(0); base < end; base += chunkLen {
		c := t.chunk(uint32(base))
		if c == nil {
			continue
		}
		for i := range c {
			s := &c[i]
			// Same protocol as Get, with the ID read from the slot.
			w := s.id.Load()
			if w == 0 {
				continue
			}
			v := s.val.Load()
			if s.id.Load() != w {
				continue
			}
			if !f(ID(w), v) {
				return
			}
		}
	}
}

// Len returns the number of live entries. Under concurrent Adds and Removes
// it is a snapshot that may count an Add still in progress.
func (t *Table[T]) Len() int { return int(t.n.Load()) }

// pop takes a released slot off the free stack.
func (t *Table[T]) pop() (uint32, *slot[T], bool) {
	for {
		h := t.free.Load()
		top := uint32(h)
		if top == 0 {
			return 0, nil, false
		}
		// The slot may be popped, reused and pushed again by others before
		// the CAS below, making next stale; the tag in h then no longer
		// matches, so the CAS fails.
		s := t.slot(top - 1)
		next := s.next.Load()
		if t.free.CompareAndSwap(h, (h>>32+1)<<32|uint64(next)) {
			return top - 1, s, true
		}
	}
}

// push puts a slot removed by the caller onto the free stack.
func (t *Table[T]) push(index uint32, s *slot[T]) {
	for {
		h := t.free.Load()
		s.next.Store(uint32(h))
		if t.free.CompareAndSwap(h, (h>>32+1)<<32|uint64(index+1)) {
			return
		}
	}
}
