package pool_test

import (
	"strconv"
	"sync"
	"testing"

	"github.com/zerowire/zerowire/pool"
)

// benchSizes are a small control message, a page, and a large payload.
var benchSizes = []int{256, 4096, 65536}

var sink []byte

// newBenchPool returns a default pool, closed when b ends.
func newBenchPool(b *testing.B) *pool.Pool {
	p, err := pool.New(pool.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	return p
}

// newSyncPool returns the sync.Pool the benchmarks compare with: it holds
// *[]byte of n bytes, as sync.Pool's documentation advises.
func newSyncPool(n int) *sync.Pool {
	return &sync.Pool{New: func() any { s := make([]byte, n); return &s }}
}

// BenchmarkAcquireRelease measures one goroutine getting and releasing a
// buffer, beside sync.Pool and make for the same size. Each variant calls
// its API straight from the loop, so no variant pays an indirect call the
// others do not.
func BenchmarkAcquireRelease(b *testing.B) {
	for _, n := range benchSizes {
		p, sp, size := newBenchPool(b), newSyncPool(n), strconv.Itoa(n)
		b.Run("pool/"+size, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				buf, _ := p.Get(n)
				buf.Release()
			}
		})
		b.Run("cache/"+size, func(b *testing.B) {
			c := p.NewCache()
			defer c.Flush()
			b.ReportAllocs()
			for b.Loop() {
				buf, _ := c.Get(n)
				c.Put(buf)
			}
		})
		b.Run("syncpool/"+size, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sp.Put(sp.Get().(*[]byte))
			}
		})
		b.Run("make/"+size, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sink = make([]byte, n)
			}
		})
	}
}

// BenchmarkAcquireReleaseParallel is BenchmarkAcquireRelease from GOMAXPROCS
// goroutines sharing one pool; in the cache variant each goroutine has its
// own Cache, as each event loop does.
func BenchmarkAcquireReleaseParallel(b *testing.B) {
	for _, n := range benchSizes {
		p, sp, size := newBenchPool(b), newSyncPool(n), strconv.Itoa(n)
		b.Run("pool/"+size, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					buf, _ := p.Get(n)
					buf.Release()
				}
			})
		})
		b.Run("cache/"+size, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				c := p.NewCache()
				defer c.Flush()
				for pb.Next() {
					buf, _ := c.Get(n)
					c.Put(buf)
				}
			})
		})
		b.Run("syncpool/"+size, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					sp.Put(sp.Get().(*[]byte))
				}
			})
		})
		b.Run("make/"+size, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					sink = make([]byte, n)
				}
			})
		})
	}
}
