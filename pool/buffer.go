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

// slot is the Go-heap metadata of one buffer.
//
// state packs the slot's generation (high half) and reference count (low
// half) into one word, so that a single CAS checks that a handle is still
// current and changes the count. The Release that drops the count to zero
// also increments the generation, in the same CAS: from then on every old
// handle is stale, and Retain, Release and debug-mode Bytes on it fail the
// generation check instead of touching the slot's next user. A slot on a
// shared free list has zero references and a generation no handle holds.
//
// A slot parked in a Cache is instead armed: it already has the one
// reference its next Get will hand out, under a generation no handle holds
// yet, so that Get needs no atomic write. Cache.Put arms it in the same CAS
// that frees it.
type slot struct {
	state atomic.Uint64 // generation<<32 | references
	next  atomic.Uint32 // free-list link: index+1 of the next free slot
	idx   uint32        // index within its class
	reg   *region
}

func (s *slot) refs() uint32 { return uint32(s.state.Load()) }

// hand gives a free slot, which the caller owns, its first reference.
func (s *slot) hand(n int) Buffer { return s.handArmed(s.arm(), n) }

// arm gives a free slot, which the caller owns, the reference its next Get
// hands out, and returns its state.
func (s *slot) arm() uint64 { return s.state.Add(1) }

// disarm takes back the reference arm gave.
func (s *slot) disarm() { s.state.Store(s.state.Load() &^ (1<<32 - 1)) }

// handArmed returns a Buffer of n bytes over an armed slot in state st.
func (s *slot) handArmed(st uint64, n int) Buffer {
	if s.reg.debug {
		checkPoison(s)
	}
	return Buffer{s: s, gen: uint32(st >> 32), n: uint32(n)}
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
	if r.debug && uint32(s.state.Load()>>32) != b.gen {
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
		if uint32(st>>32) != b.gen {
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
	if b.s != nil && b.drop("Release", 0) {
		b.s.reg.cls.push(b.s)
	}
}

// drop drops a reference for op and reports whether it was the last one, in
// which case the caller owns the free slot, which has refs references (0, or
// 1 to arm it), and must put it on a free list.
func (b Buffer) drop(op string, refs uint64) bool {
	s := b.s
	for {
		st := s.state.Load()
		if uint32(st>>32) != b.gen {
			panicStale(op, b)
		}
		last := uint32(st) == 1
		next := st - 1
		if last {
			next = uint64(b.gen+1)<<32 | refs
		}
		if s.state.CompareAndSwap(st, next) {
			if last && s.reg.debug {
				freed(s)
			}
			return last
		}
	}
}
