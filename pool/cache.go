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
	p    *Pool
	free [][]*slot // per class, a stack whose capacity is fixed by NewCache
}

// NewCache returns an empty Cache in front of p. Call Flush when the owner
// is done, or the slots it holds stay out of the shared lists.
func (p *Pool) NewCache() *Cache {
	c := &Cache{p: p, free: make([][]*slot, len(p.classes))}
	for i := range c.free {
		c.free[i] = make([]*slot, 0, min(max(cacheBytes/p.classes[i].size, 1), maxCacheSlots))
	}
	return c
}

// Get is Pool.Get served from the cache, which refills half of itself from
// the shared list in one step when empty. The bytes are valid until the
// last reference is released; each Retain needs one Release.
//
// It returns the errors of Pool.Get.
func (c *Cache) Get(n int) (Buffer, error) {
	i, err := c.p.classOf(n)
	if err != nil {
		return Buffer{}, err
	}
	stack := c.free[i]
	if len(stack) == 0 {
		return c.refill(i, n)
	}
	s := stack[len(stack)-1]
	c.free[i] = stack[:len(stack)-1]
	return s.handArmed(s.state.Load(), n), nil
}

// refill serves Get when the class's stack is empty.
func (c *Cache) refill(i, n int) (Buffer, error) {
	cls := &c.p.classes[i]
	stack := c.free[i]
	stack = stack[:cls.popN(stack[:(cap(stack)+1)/2])]
	if len(stack) == 0 {
		s, err := cls.grow()
		if err != nil {
			return Buffer{}, err
		}
		return s.hand(n), nil
	}
	for _, s := range stack {
		s.arm()
	}
	s := stack[len(stack)-1]
	c.free[i] = stack[:len(stack)-1]
	return s.handArmed(s.state.Load(), n), nil
}

// Put is Release, except that when the last reference goes the buffer joins
// this cache (half of a full cache moves to the shared list first). A
// buffer from another pool goes back to that pool.
func (c *Cache) Put(b Buffer) {
	s := b.s
	if s == nil {
		return
	}
	cls := s.reg.cls
	if cls.pool != c.p {
		if b.drop("Put", 0) {
			cls.push(s)
		}
		return
	}
	if !b.drop("Put", 1) {
		return
	}
	stack := c.free[cls.index]
	if len(stack) == cap(stack) {
		half := len(stack) / 2
		spill(cls, stack[half:])
		stack = stack[:half]
	}
	c.free[cls.index] = append(stack, s)
}

// Flush returns every cached buffer to the pool's shared lists.
func (c *Cache) Flush() {
	for i, stack := range c.free {
		spill(&c.p.classes[i], stack)
		c.free[i] = stack[:0]
	}
}

// spill disarms parked slots and pushes them onto cls's shared list.
func spill(cls *class, slots []*slot) {
	for _, s := range slots {
		s.disarm()
	}
	cls.pushList(slots)
}
