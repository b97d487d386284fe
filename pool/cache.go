package pool

// A Cache keeps per class at most cacheBytes and at most maxCacheSlots
// buffers (but at least one), so caching the large classes cannot strand
// much memory with one owner.
const (
	cacheBytes    = 256 << 10
	maxCacheSlots = 32
)

// Cache is a small private stock of free buffers in front of a Pool, for one
// owner such as an event loop: its Get and Put touch no shared cache line
// except the buffer's own, and go to the pool's shared free lists only in
// batches. It is not safe for concurrent use.
//
// Buffers from a Cache are ordinary Buffers: any goroutine may Retain and
// Release them, and a buffer released elsewhere returns to the shared lists.
// Buffers parked in a Cache count as in use in Stats until Flush.
type Cache struct {
	p       *Pool
	debug   bool
	stacks  []cacheStack // per class
	scratch []*slot      // for refill
}

// cacheStack holds parked slots, each armed with the reference its Get
// hands out under generation gen, so that Get writes nothing shared.
type cacheStack struct {
	n     int
	slots []parked // length fixed by NewCache
}

type parked struct {
	s   *slot
	gen uint32
}

// NewCache returns an empty Cache in front of p. Call Flush when the owner
// is done, or the slots it holds stay out of the shared lists.
func (p *Pool) NewCache() *Cache {
	c := &Cache{p: p, debug: p.debug, stacks: make([]cacheStack, len(p.classes))}
	half := 0
	for i := range c.stacks {
		n := min(max(cacheBytes/p.classes[i].size, 1), maxCacheSlots)
		c.stacks[i].slots = make([]parked, n)
		half = max(half, (n+1)/2)
	}
	c.scratch = make([]*slot, half)
	return c
}

// Get is Pool.Get served from the cache, which refills half of itself from
// the shared list in one step when empty. The bytes are valid until the
// last reference is released; each Retain needs one Release.
//
// It returns the errors of Pool.Get.
func (c *Cache) Get(n int) (Buffer, error) {
	// The common case, with no call on the way: a parked slot already
	// holds its reference, so handing it out writes nothing shared.
	if uint64(n) < c.p.getLimit.Load() && !c.debug {
		if k := &c.stacks[classIndex(n)]; k.n > 0 {
			k.n--
			e := k.slots[k.n]
			return Buffer{s: e.s, gen: e.gen, n: uint32(n)}, nil
		}
	}
	return c.get(n)
}

// get is Get's general path: refills an empty stack, and in debug mode
// checks the poison.
func (c *Cache) get(n int) (Buffer, error) {
	if uint64(n) >= c.p.getLimit.Load() {
		return Buffer{}, c.p.getErr(n)
	}
	i := classIndex(n)
	k := &c.stacks[i]
	if k.n == 0 && !c.refill(i, k) {
		return c.p.classes[i].get(n)
	}
	k.n--
	e := k.slots[k.n]
	return e.s.handle(live(e.gen), n), nil
}

// refill moves up to half a stack of slots from the class's shared stack to
// k, arming each, and reports whether it moved any.
func (c *Cache) refill(i int, k *cacheStack) bool {
	got := c.scratch[:c.p.classes[i].popN(c.scratch[:(len(k.slots)+1)/2])]
	for j, s := range got {
		in := s.state.Load()&^spareBits | 1
		s.state.Store(in)
		k.slots[j] = parked{s, genOf(in)}
	}
	k.n = len(got)
	return k.n > 0
}

// Put is Release, except that when the last reference goes the buffer joins
// this cache (half of a full cache moves to the shared list first). A
// buffer from another pool goes back to that pool.
func (c *Cache) Put(b Buffer) {
	s := b.s
	if s == nil {
		return
	}
	// The common case, with no call on the way: the CAS that drops the
	// last reference also checks b's generation and arms the slot under the
	// next one. Anything else, a stale b included, fails it.
	if cls := s.cls; cls.pool == c.p && !c.debug {
		if k := &c.stacks[cls.index]; k.n < len(k.slots) &&
			s.state.CompareAndSwap(live(b.gen), live(b.gen+1)) {
			k.slots[k.n] = parked{s, (b.gen + 1) & genMask}
			k.n++
			return
		}
	}
	c.put(b)
}

// put is Put's general path.
func (c *Cache) put(b Buffer) {
	s := b.s
	cls := s.cls
	if cls.pool != c.p {
		b.release("Put")
		return
	}
	if !b.drop("Put", true) {
		return
	}
	k := &c.stacks[cls.index]
	if k.n == len(k.slots) {
		half := k.n / 2
		spill(cls, k.slots[half:k.n])
		k.n = half
	}
	k.slots[k.n] = parked{s, genOf(s.state.Load())}
	k.n++
}

// Flush returns every cached buffer to the pool's shared lists.
func (c *Cache) Flush() {
	for i := range c.stacks {
		k := &c.stacks[i]
		spill(&c.p.classes[i], k.slots[:k.n])
		k.n = 0
	}
}

// spill frees parked slots, keeping their generation, which no handle holds
// yet, and pushes them onto cls's shared stack with one CAS.
func spill(cls *class, slots []parked) {
	if len(slots) == 0 {
		return
	}
	for i, e := range slots[:len(slots)-1] {
		e.s.state.Store(freeState(e.gen, slots[i+1].s.idx+1))
	}
	last := slots[len(slots)-1]
	h := cls.head.Load()
	last.s.state.Store(freeState(last.gen, uint32(h)))
	cls.pushLinked(slots[0].s, last.s, h)
}
