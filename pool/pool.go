// Package pool hands out reference-counted byte buffers carved from memory
// mapped outside the Go heap: acquiring and releasing them makes no garbage,
// and buffers held by thousands of connections do not inflate the garbage
// collector's heap goal. (The same goal then no longer acts as ballast, so
// pace the collector for the heap alone with GOGC or GOMEMLIMIT; see
// docs/perf/pool.md.)
//
// Buffers come in size classes, 256 bytes doubling up to the pool's
// MaxSize. Each class keeps its free slots on a lock-free stack, plus one
// spare slot beside it that a Get right after a Release takes with a single
// CAS; a Cache gives one owner (an event loop) a private stack in front of
// them, so the common acquire and release touch no shared cache line.
//
// Ownership: a Buffer is a small value handle. The bytes are valid until the
// last reference is released; each Retain needs one Release. Retain or
// Release through a handle whose last reference is gone panics, naming the
// call site. With Options.Debug or the build tag zwdebug the panic also
// names the release that freed the buffer, Bytes checks the handle too, and
// released memory is poisoned with 0xDE and checked when it is handed out
// again.
package pool

import (
	"errors"
	"fmt"
	"math/bits"
	"os"
	"sync"
	"sync/atomic"

	"github.com/zerowire/zerowire/wire"
)

// Errors returned by Get.
var (
	// ErrExhausted means the pool has mapped Options.MaxBytes, or the kernel
	// refused more memory, and no buffer of the class is free. Get never
	// blocks waiting for one: releasing a buffer makes room again.
	ErrExhausted = errors.New("pool: exhausted")
	// ErrTooLarge means the requested size is above Options.MaxSize.
	ErrTooLarge = errors.New("pool: buffer larger than MaxSize")
	// ErrClosed means the pool was closed.
	ErrClosed = errors.New("pool: closed")
)

const (
	minClassShift = 8
	minClassSize  = 1 << minClassShift

	// headerRoom lets the default pool serve a packet of the default maximum
	// size plus framing around it in one buffer.
	headerRoom = 64

	defaultMaxBytes    = 1 << 30
	defaultRegionBytes = 1 << 20
	// defaultRegionSlots keeps large classes from mapping a region per
	// buffer during a burst, while bounding what Populate faults in for the
	// largest class (16 MiB at the default MaxSize).
	defaultRegionSlots = 16

	// maxMaxSize keeps a buffer's length within the handle's uint32.
	maxMaxSize = 1 << 30
	// maxMaxBytes keeps every slot index of a class, plus one, in 32 bits.
	maxMaxBytes = 1 << 39
	// maxRegions bounds the region directory each class allocates up front;
	// RegionSize is raised when MaxBytes would need more.
	maxRegions = 4096
)

// Options configure a Pool. The zero value is a usable configuration.
type Options struct {
	// MaxBytes caps the memory mapped across all size classes. Zero means
	// 1 GiB.
	MaxBytes int64
	// MaxSize is the largest buffer Get serves. Zero means
	// wire.DefaultMaxPacketSize plus 64 bytes of room for framing.
	MaxSize int
	// RegionSize is how many bytes a class maps at a time, rounded down to a
	// power-of-two number of buffers. Zero means 1 MiB or 16 buffers of the
	// class, whichever is larger. It is raised where MaxBytes would need more
	// than 4096 regions of a class, and lowered where MaxBytes cannot hold
	// one region.
	RegionSize int
	// Populate faults every page of a region in when it is mapped, so the
	// first touch of a buffer costs no page fault.
	Populate bool
	// HugePages asks the kernel for transparent huge pages over each region;
	// only regions of 2 MiB or more (see RegionSize) can get them.
	HugePages bool
	// Debug poisons released memory and reports misuse with call sites. The
	// build tag zwdebug turns it on for every pool.
	Debug bool
}

// forceDebug is set by the zwdebug build tag.
var forceDebug = false

// Pool is a set of size classes of off-heap buffers. Its methods are safe
// for concurrent use, except that Close must not run concurrently with Get
// or Cache.Get.
type Pool struct {
	classes []class // size classes, smallest first
	debug   bool
	// getLimit is MaxSize+1 while the pool is open and 0 once it is
	// closed, so that Get tests both with one compare.
	getLimit atomic.Uint64

	populate  bool
	hugePages bool
	maxBytes  int64

	mu       sync.Mutex   // serializes mapping regions and Close
	mapped   atomic.Int64 // bytes mapped; written under mu, read without it
	failures atomic.Uint64
}

// New returns an empty pool; it maps memory only when Get first needs it.
// It returns an error if an option is negative, MaxSize is above 1 GiB,
// MaxBytes is above 512 GiB, or MaxBytes cannot hold one buffer of MaxSize.
func New(opts Options) (*Pool, error) {
	if opts.MaxBytes < 0 || opts.MaxSize < 0 || opts.RegionSize < 0 {
		return nil, errors.New("pool: negative option")
	}
	maxBytes := opts.MaxBytes
	if maxBytes == 0 {
		maxBytes = defaultMaxBytes
	}
	maxSize := opts.MaxSize
	if maxSize == 0 {
		maxSize = wire.DefaultMaxPacketSize + headerRoom
	}
	if maxSize > maxMaxSize {
		return nil, fmt.Errorf("pool: MaxSize %d above %d", maxSize, maxMaxSize)
	}
	if maxBytes > maxMaxBytes {
		return nil, fmt.Errorf("pool: MaxBytes %d above %d", maxBytes, int64(maxMaxBytes))
	}
	p := &Pool{
		debug:     opts.Debug || forceDebug,
		populate:  opts.Populate,
		hugePages: opts.HugePages,
		maxBytes:  maxBytes,
	}
	p.getLimit.Store(uint64(maxSize) + 1)
	sizes := classSizes(maxSize)
	p.classes = make([]class, len(sizes))
	page := os.Getpagesize()
	for i, size := range sizes {
		slots, regionBytes := regionShape(size, opts.RegionSize, maxBytes, page)
		if slots == 0 {
			return nil, fmt.Errorf("pool: MaxBytes %d cannot hold a buffer of %d bytes", maxBytes, size)
		}
		p.classes[i].init(p, i, size, slots, regionBytes)
	}
	return p, nil
}

// classSizes returns 256 doubling while below maxSize, then maxSize rounded
// up to a cache line, so the largest class wastes little.
func classSizes(maxSize int) []int {
	var sizes []int
	for s := minClassSize; s < maxSize; s <<= 1 {
		sizes = append(sizes, s)
	}
	return append(sizes, max(minClassSize, (maxSize+63)&^63))
}

// regionShape returns how many slots of size one region holds (a power of
// two, so a slot index splits into region and offset with a shift) and the
// region's length in whole pages; zero slots if one does not fit maxBytes.
func regionShape(size, regionSize int, maxBytes int64, page int) (slots, regionBytes int) {
	if regionSize == 0 {
		slots = max(defaultRegionBytes/size, defaultRegionSlots)
	} else {
		slots = max(regionSize/size, 1)
	}
	slots = 1 << (bits.Len(uint(slots)) - 1)
	bytesFor := func(slots int) int64 { return (int64(slots)*int64(size) + int64(page-1)) &^ int64(page-1) }
	for slots > 0 && bytesFor(slots) > maxBytes {
		slots >>= 1
	}
	if slots == 0 {
		return 0, 0
	}
	for maxBytes/bytesFor(slots) > maxRegions {
		slots <<= 1
	}
	return slots, int(bytesFor(slots))
}

// classIndex returns the index of the class serving n bytes, for n at most
// MaxSize. (For n <= 256 the shift leaves 0; above, the class of size
// 256<<k serves up to that size, and the last class, MaxSize rounded up,
// the rest.)
func classIndex(n int) int {
	return bits.Len(uint(max(n, 1)-1) >> minClassShift)
}

// getErr returns why Get(n) cannot be served: n is above MaxSize, or the
// pool is closed.
func (p *Pool) getErr(n int) error {
	if p.closed() {
		return ErrClosed
	}
	if n < 0 {
		panic("pool: negative size")
	}
	return ErrTooLarge
}

// Get returns a buffer of n bytes whose capacity is its class size. The
// bytes are valid until the last reference is released; each Retain needs
// one Release. Their contents are whatever the previous user left.
//
// Get returns ErrTooLarge if n is above MaxSize, ErrExhausted if no buffer
// of the class is free and MaxBytes is mapped (or the kernel refused more),
// and ErrClosed after Close. It panics if n is negative.
func (p *Pool) Get(n int) (Buffer, error) {
	if uint64(n) >= p.getLimit.Load() {
		return Buffer{}, p.getErr(n)
	}
	c := &p.classes[classIndex(n)]
	// The common case, with no call on the way: the class's spare is
	// free and one CAS on its state puts it in use. (A debug pool keeps
	// no spare.)
	if s := c.spare.Load(); s != nil {
		if st := s.state.Load(); st&spareBits == freeBit|spareMark {
			if in := st&^spareBits | 1; s.state.CompareAndSwap(st, in) {
				return Buffer{s: s, gen: genOf(in), n: uint32(n)}, nil
			}
		}
	}
	return c.get(n)
}

// Close unmaps every region and returns ErrClosed if already closed.
// Buffers still held become invalid: their bytes must not be touched again,
// though Release stays safe to call once Close has returned.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.getLimit.Swap(0) == 0 {
		return ErrClosed
	}
	var first error
	for i := range p.classes {
		if err := p.classes[i].unmapAll(); err != nil && first == nil {
			first = err
		}
	}
	p.mapped.Store(0)
	return first
}

// closed reports whether Close has been called.
func (p *Pool) closed() bool { return p.getLimit.Load() == 0 }

// Stats is a snapshot of a pool's memory.
type Stats struct {
	MappedBytes     int64        // bytes mapped across all classes
	AcquireFailures uint64       // Gets that returned ErrExhausted
	Classes         []ClassStats // one per size class, smallest first
}

// ClassStats describes one size class.
type ClassStats struct {
	Size  int // capacity of each buffer
	Slots int // buffers mapped
	// InUse counts buffers that are not free: those handed out and not
	// yet released, and those parked in a Cache until its Flush. (A parked
	// buffer keeps the reference its next Get hands out, which saves that
	// Get an atomic write.)
	InUse      int
	InUseBytes int64 // InUse times Size
}

// Stats walks every slot, so its cost grows with mapped memory; it is meant
// for monitoring, not for the data path.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := Stats{
		MappedBytes:     p.mapped.Load(),
		AcquireFailures: p.failures.Load(),
		Classes:         make([]ClassStats, len(p.classes)),
	}
	for i := range p.classes {
		st.Classes[i] = p.classes[i].stats()
	}
	return st
}
