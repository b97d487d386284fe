package pool_test

import (
	"runtime"
	"runtime/metrics"
	"testing"

	"github.com/zerowire/zerowire/pool"
)

const (
	gcViewHeld    = 1 << 30   // bytes held for the whole benchmark
	gcViewBufSize = 64 << 10  // in buffers of this size
	gcViewGarbage = 256 << 20 // bytes of short-lived objects per op
	gcViewLive    = 1 << 14   // of which this many stay reachable at a time
)

// node is ordinary garbage: small, and holding a pointer the collector
// must follow (to one of a fixed set, so garbage does not chain).
type node struct {
	next *node
	data [48]byte
}

// BenchmarkGCView shows what the garbage collector sees when a server holds
// 1 GiB of buffers: in the pool (off the heap) or in Go slices. Each op
// allocates 256 MiB of small pointerful objects. Reported per op: GC cycles,
// stop-the-world pause and GC CPU time; and at the end, the live heap and
// the heap goal, which the held slices double.
func BenchmarkGCView(b *testing.B) {
	b.Run("pool", func(b *testing.B) {
		p, err := pool.New(pool.Options{MaxBytes: gcViewHeld})
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		bufs := make([]pool.Buffer, gcViewHeld/gcViewBufSize)
		for i := range bufs {
			if bufs[i], err = p.Get(gcViewBufSize); err != nil {
				b.Fatal(err)
			}
			clear(bufs[i].Bytes()) // fault the pages in, as make does
		}
		gcView(b)
		for _, buf := range bufs {
			buf.Release()
		}
	})
	b.Run("slices", func(b *testing.B) {
		bufs := make([][]byte, gcViewHeld/gcViewBufSize)
		for i := range bufs {
			bufs[i] = make([]byte, gcViewBufSize)
		}
		gcView(b)
		runtime.KeepAlive(bufs)
	})
}

func gcView(b *testing.B) {
	live := make([]*node, gcViewLive)
	anchors := make([]node, 1024)
	samples := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	metrics.Read(samples)
	gcCPU := samples[0].Value.Float64()
	b.ResetTimer()
	for i := range b.N {
		for j := range gcViewGarbage / 64 {
			n := &node{next: &anchors[j%len(anchors)]}
			n.data[0] = byte(i)
			live[j%len(live)] = n
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	metrics.Read(samples)
	ops := float64(b.N)
	b.ReportMetric(float64(after.NumGC-before.NumGC)/ops, "GCs/op")
	b.ReportMetric(float64(after.PauseTotalNs-before.PauseTotalNs)/1e3/ops, "pause-µs/op")
	b.ReportMetric((samples[0].Value.Float64()-gcCPU)*1e3/ops, "gc-cpu-ms/op")
	b.ReportMetric(float64(after.HeapAlloc)/(1<<20), "heap-MiB")
	b.ReportMetric(float64(after.NextGC)/(1<<20), "goal-MiB")
}
