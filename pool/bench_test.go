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

// acquirers returns, for one size, each way of getting and dropping a
// buffer the benchmarks compare. newOps is called once per goroutine, so
// the Cache variant gets one Cache per goroutine as an event loop would.
func acquirers(b *testing.B, n int) []struct {
	name   string
	newOps func() func()
} {
	p, err := pool.New(pool.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	sp := sync.Pool{New: func() any { s := make([]byte, n); return &s }}
	return []struct {
		name   string
		newOps func() func()
	}{
		{"pool", func() func() {
			return func() {
				buf, _ := p.Get(n)
				buf.Release()
			}
		}},
		{"cache", func() func() {
			c := p.NewCache()
			return func() {
				buf, _ := c.Get(n)
				c.Put(buf)
			}
		}},
		{"syncpool", func() func() {
			return func() { sp.Put(sp.Get().(*[]byte)) }
		}},
		{"make", func() func() {
			return func() { sink = make([]byte, n) }
		}},
	}
}

// BenchmarkAcquireRelease measures one goroutine getting and releasing a
// buffer, beside sync.Pool and make for the same size.
func BenchmarkAcquireRelease(b *testing.B) {
	for _, n := range benchSizes {
		for _, a := range acquirers(b, n) {
			b.Run(a.name+"/"+strconv.Itoa(n), func(b *testing.B) {
				op := a.newOps()
				b.ReportAllocs()
				for b.Loop() {
					op()
				}
			})
		}
	}
}

// BenchmarkAcquireReleaseParallel is BenchmarkAcquireRelease from GOMAXPROCS
// goroutines sharing one pool.
func BenchmarkAcquireReleaseParallel(b *testing.B) {
	for _, n := range benchSizes {
		for _, a := range acquirers(b, n) {
			b.Run(a.name+"/"+strconv.Itoa(n), func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					op := a.newOps()
					for pb.Next() {
						op()
					}
				})
			})
		}
	}
}
