package pool_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/zerowire/zerowire/pool"
)

func newPool(t testing.TB, opts pool.Options) *pool.Pool {
	t.Helper()
	p, err := pool.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func get(t testing.TB, g interface {
	Get(int) (pool.Buffer, error)
}, n int) pool.Buffer {
	t.Helper()
	b, err := g.Get(n)
	if err != nil {
		t.Fatalf("Get(%d): %v", n, err)
	}
	return b
}

// inUse returns the buffers in use across all classes.
func inUse(p *pool.Pool) int {
	n := 0
	for _, c := range p.Stats().Classes {
		n += c.InUse
	}
	return n
}

func TestSizeClasses(t *testing.T) {
	p := newPool(t, pool.Options{})
	for _, tc := range []struct{ n, cap int }{
		{0, 256}, {1, 256}, {256, 256}, {257, 512}, {4096, 4096}, {4097, 8192},
		{1 << 20, 1 << 20}, {1<<20 + 1, 1<<20 + 64}, {1<<20 + 64, 1<<20 + 64},
	} {
		b := get(t, p, tc.n)
		if got := b.Bytes(); len(got) != tc.n || cap(got) != tc.cap {
			t.Errorf("Get(%d): len %d cap %d, want len %d cap %d", tc.n, len(got), cap(got), tc.n, tc.cap)
		}
		b.Release()
	}
	if _, err := p.Get(1<<20 + 65); !errors.Is(err, pool.ErrTooLarge) {
		t.Errorf("Get(MaxSize+1) = %v, want ErrTooLarge", err)
	}
	// A MaxSize that is not a power of two gets a class of its own.
	q := newPool(t, pool.Options{MaxSize: 3000})
	if c := cap(get(t, q, 2049).Bytes()); c != 3008 {
		t.Errorf("cap of Get(2049) with MaxSize 3000 = %d, want 3008", c)
	}
}

func TestNewRejects(t *testing.T) {
	for _, opts := range []pool.Options{
		{MaxBytes: -1},
		{MaxSize: -1},
		{RegionSize: -1},
		{MaxSize: 1<<30 + 1},
		{MaxBytes: 1<<39 + 1},
		{MaxBytes: 64 << 10}, // cannot hold a buffer of the default MaxSize
	} {
		if _, err := pool.New(opts); err == nil {
			t.Errorf("New(%+v) succeeded", opts)
		}
	}
}

func TestZeroBuffer(t *testing.T) {
	var b pool.Buffer
	if !b.IsZero() || b.Bytes() != nil {
		t.Fatal("zero Buffer is not empty")
	}
	b.Retain()
	b.Release()
	newPool(t, pool.Options{}).NewCache().Put(b)
}

func TestRefcount(t *testing.T) {
	p := newPool(t, pool.Options{})
	b := get(t, p, 100)
	if b.IsZero() {
		t.Fatal("Get returned the zero Buffer")
	}
	b.Retain()
	b.Retain()
	b.Release()
	b.Release()
	if n := inUse(p); n != 1 {
		t.Fatalf("in use after 2 of 3 releases = %d, want 1", n)
	}
	b.Release()
	if n := inUse(p); n != 0 {
		t.Fatalf("in use after the last release = %d, want 0", n)
	}
}

func TestStaleReleasePanics(t *testing.T) {
	if pool.DebugForced() {
		t.Skip("checks the message without debug mode")
	}
	p := newPool(t, pool.Options{})
	b := get(t, p, 100)
	b.Release()
	msg := panicMessage(func() { b.Release() })
	if !strings.Contains(msg, "already released") || !strings.Contains(msg, "pool_test.go:") || !strings.Contains(msg, "zwdebug") {
		t.Fatalf("double Release panicked with %q", msg)
	}
}

func TestExhaustion(t *testing.T) {
	p := newPool(t, pool.Options{MaxBytes: 64 << 10, MaxSize: 4096, RegionSize: 4096})
	var held []pool.Buffer
	for {
		b, err := p.Get(256)
		if errors.Is(err, pool.ErrExhausted) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, b)
		if len(held) > 256 {
			t.Fatal("no ErrExhausted past MaxBytes")
		}
	}
	if len(held) != 256 {
		t.Fatalf("got %d buffers of 256 bytes from 64 KiB, want 256", len(held))
	}
	// The cap is shared: other classes cannot map either.
	if _, err := p.Get(4096); !errors.Is(err, pool.ErrExhausted) {
		t.Fatalf("Get(4096) at the cap = %v, want ErrExhausted", err)
	}
	st := p.Stats()
	if st.MappedBytes != 64<<10 || st.AcquireFailures != 2 {
		t.Fatalf("Stats at the cap: %+v", st)
	}
	held[0].Release()
	held[0] = get(t, p, 200)
	c := p.NewCache()
	if _, err := c.Get(256); !errors.Is(err, pool.ErrExhausted) {
		t.Fatalf("Cache.Get at the cap = %v, want ErrExhausted", err)
	}
	for _, b := range held {
		c.Put(b)
	}
	get(t, c, 256).Release()
	c.Flush()
	if st := p.Stats(); st.Classes[0].InUse != 0 || st.Classes[0].Slots != 256 {
		t.Fatalf("class 256 after releasing all: %+v", st.Classes[0])
	}
}

func TestClose(t *testing.T) {
	for _, debug := range []bool{false, true} {
		p, err := pool.New(pool.Options{Debug: debug})
		if err != nil {
			t.Fatal(err)
		}
		c := p.NewCache()
		held := get(t, p, 5000)
		get(t, c, 300).Release()
		if p.Stats().MappedBytes == 0 {
			t.Fatal("nothing mapped after Get")
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		st := p.Stats()
		if st.MappedBytes != 0 {
			t.Fatalf("MappedBytes after Close = %d", st.MappedBytes)
		}
		for _, cs := range st.Classes {
			if cs.Slots != 0 {
				t.Fatalf("class %d has %d slots after Close", cs.Size, cs.Slots)
			}
		}
		if _, err := p.Get(1); !errors.Is(err, pool.ErrClosed) {
			t.Fatalf("Get after Close = %v", err)
		}
		if _, err := c.Get(1); !errors.Is(err, pool.ErrClosed) {
			t.Fatalf("Cache.Get after Close = %v", err)
		}
		held.Release() // must not touch the unmapped memory, even in debug mode
		c.Flush()
		if err := p.Close(); !errors.Is(err, pool.ErrClosed) {
			t.Fatalf("second Close = %v", err)
		}
	}
}

func TestCacheOverflowAndFlush(t *testing.T) {
	p := newPool(t, pool.Options{})
	c := p.NewCache()
	var held []pool.Buffer
	for range 100 {
		held = append(held, get(t, c, 512))
	}
	for _, b := range held {
		c.Put(b)
	}
	if n := inUse(p); n == 0 || n > 32 {
		t.Fatalf("in use after Put of all = %d, want what the cache keeps", n)
	}
	c.Flush()
	if n := inUse(p); n != 0 {
		t.Fatalf("in use after Flush = %d", n)
	}
	// Every slot is back on the shared list exactly once.
	slots := p.Stats().Classes[1].Slots
	seen := map[*byte]bool{}
	for range slots {
		b := get(t, p, 512)
		seen[&b.Bytes()[0]] = true
	}
	if len(seen) != slots || p.Stats().Classes[1].Slots != slots {
		t.Fatalf("%d distinct of %d slots; slots now %d", len(seen), slots, p.Stats().Classes[1].Slots)
	}
}

func TestCachePutOtherPool(t *testing.T) {
	a := newPool(t, pool.Options{})
	b := newPool(t, pool.Options{})
	buf := get(t, a, 1000)
	b.NewCache().Put(buf)
	if inUse(a) != 0 {
		t.Fatal("buffer from another pool not released")
	}
	if slots := a.Stats().Classes[2].Slots; slots == 0 {
		t.Fatal("class 1024 of pool a has no slots")
	}
	if b.Stats().MappedBytes != 0 {
		t.Fatal("pool b mapped memory")
	}
}

func TestZeroAllocs(t *testing.T) {
	if pool.DebugForced() {
		t.Skip("debug mode records call sites, which allocates")
	}
	p := newPool(t, pool.Options{})
	c := p.NewCache()
	get(t, p, 4096).Release()
	c.Put(get(t, c, 4096))
	if n := testing.AllocsPerRun(1000, func() {
		b, _ := p.Get(4096)
		b.Bytes()[0] = 1
		b.Retain()
		b.Release()
		b.Release()
	}); n != 0 {
		t.Errorf("Pool Get+Release: %v allocs, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() {
		b, _ := c.Get(4096)
		b.Bytes()[0] = 1
		c.Put(b)
	}); n != 0 {
		t.Errorf("Cache Get+Put: %v allocs, want 0", n)
	}
}

func panicMessage(f func()) (msg string) {
	defer func() { msg, _ = recover().(string) }()
	f()
	return ""
}

func TestPopulateHugePages(t *testing.T) {
	for _, opts := range []pool.Options{
		{Populate: true},
		{HugePages: true, RegionSize: 2 << 20},
		{Populate: true, HugePages: true, RegionSize: 2 << 20},
	} {
		p := newPool(t, opts)
		b := get(t, p, 4096)
		clear(b.Bytes())
		b.Release()
		if err := p.Close(); err != nil {
			t.Fatalf("%+v: Close: %v", opts, err)
		}
	}
}
