package conntable

import (
	"sync"
	"sync/atomic"
	"testing"
)

// The benchmarks compare Table with the two maps an event loop would
// otherwise use. Each call is made directly, as the loop would make it, not
// through an interface, so that the numbers are the structures' own. Every
// structure holds benchLive entries, so lookups are not all served by one
// cache line, and map keys are uint64s as IDs are.
const benchLive = 1024 // a power of two, so the loops index with a mask

type rwMap struct {
	mu sync.RWMutex
	m  map[uint64]*conn
}

func newTable() (*Table[conn], []ID) {
	t := new(Table[conn])
	ids := make([]ID, benchLive)
	for i := range ids {
		ids[i], _ = t.Add(new(conn))
	}
	return t, ids
}

// mapKeys are the populated keys of the maps. The Add/Remove benchmarks use
// keys below 1<<40, so they never hit these.
func mapKeys() []uint64 {
	keys := make([]uint64, benchLive)
	for i := range keys {
		keys[i] = 1<<40 + uint64(i)
	}
	return keys
}

func newSyncMap() (*sync.Map, []uint64) {
	m, keys := new(sync.Map), mapKeys()
	for _, k := range keys {
		m.Store(k, new(conn))
	}
	return m, keys
}

func newRWMap() (*rwMap, []uint64) {
	m, keys := &rwMap{m: map[uint64]*conn{}}, mapKeys()
	for _, k := range keys {
		m.m[k] = new(conn)
	}
	return m, keys
}

// reportMisses fails b if a lookup of a live entry failed, which would also
// mean the loop measured the wrong path.
func reportMisses(b *testing.B, misses int) {
	if misses != 0 {
		b.Errorf("%d lookups of live entries failed", misses)
	}
}

func BenchmarkGet(b *testing.B) {
	b.Run("impl=conntable", func(b *testing.B) {
		t, ids := newTable()
		misses := 0
		for i := 0; b.Loop(); i++ {
			if _, ok := t.Get(ids[i&(benchLive-1)]); !ok {
				misses++
			}
		}
		reportMisses(b, misses)
	})
	b.Run("impl=syncmap", func(b *testing.B) {
		m, keys := newSyncMap()
		misses := 0
		for i := 0; b.Loop(); i++ {
			if v, ok := m.Load(keys[i&(benchLive-1)]); !ok || v.(*conn) == nil {
				misses++
			}
		}
		reportMisses(b, misses)
	})
	b.Run("impl=rwmutexmap", func(b *testing.B) {
		m, keys := newRWMap()
		misses := 0
		for i := 0; b.Loop(); i++ {
			m.mu.RLock()
			_, ok := m.m[keys[i&(benchLive-1)]]
			m.mu.RUnlock()
			if !ok {
				misses++
			}
		}
		reportMisses(b, misses)
	})
}

func BenchmarkGetParallel(b *testing.B) {
	// Goroutines start at different entries so they do not walk in step.
	var start atomic.Int64
	b.Run("impl=conntable", func(b *testing.B) {
		t, ids := newTable()
		b.RunParallel(func(pb *testing.PB) {
			misses := 0
			for i := int(start.Add(97)); pb.Next(); i++ {
				if _, ok := t.Get(ids[i&(benchLive-1)]); !ok {
					misses++
				}
			}
			reportMisses(b, misses)
		})
	})
	b.Run("impl=syncmap", func(b *testing.B) {
		m, keys := newSyncMap()
		b.RunParallel(func(pb *testing.PB) {
			misses := 0
			for i := int(start.Add(97)); pb.Next(); i++ {
				if v, ok := m.Load(keys[i&(benchLive-1)]); !ok || v.(*conn) == nil {
					misses++
				}
			}
			reportMisses(b, misses)
		})
	})
	b.Run("impl=rwmutexmap", func(b *testing.B) {
		m, keys := newRWMap()
		b.RunParallel(func(pb *testing.PB) {
			misses := 0
			for i := int(start.Add(97)); pb.Next(); i++ {
				m.mu.RLock()
				_, ok := m.m[keys[i&(benchLive-1)]]
				m.mu.RUnlock()
				if !ok {
					misses++
				}
			}
			reportMisses(b, misses)
		})
	})
}

func BenchmarkAddRemove(b *testing.B) {
	v := new(conn)
	b.Run("impl=conntable", func(b *testing.B) {
		t, _ := newTable()
		for b.Loop() {
			id, err := t.Add(v)
			if err != nil || !t.Remove(id) {
				b.Fatal("Add/Remove failed")
			}
		}
	})
	b.Run("impl=syncmap", func(b *testing.B) {
		m, _ := newSyncMap()
		for k := uint64(0); b.Loop(); k++ {
			m.Store(k, v)
			m.Delete(k)
		}
	})
	b.Run("impl=rwmutexmap", func(b *testing.B) {
		m, _ := newRWMap()
		for k := uint64(0); b.Loop(); k++ {
			m.mu.Lock()
			m.m[k] = v
			m.mu.Unlock()
			m.mu.Lock()
			delete(m.m, k)
			m.mu.Unlock()
		}
	})
}

func BenchmarkAddRemoveParallel(b *testing.B) {
	// Each goroutine takes its own range of map keys once, rather than
	// sharing a counter that would add contention the table does not have.
	var keyBase atomic.Uint64
	b.Run("impl=conntable", func(b *testing.B) {
		t, _ := newTable()
		b.RunParallel(func(pb *testing.PB) {
			v := new(conn)
			for pb.Next() {
				id, err := t.Add(v)
				if err != nil || !t.Remove(id) {
					b.Error("Add/Remove failed")
					return
				}
			}
		})
	})
	b.Run("impl=syncmap", func(b *testing.B) {
		m, _ := newSyncMap()
		b.RunParallel(func(pb *testing.PB) {
			v := new(conn)
			for k := keyBase.Add(1) << 32; pb.Next(); k++ {
				m.Store(k, v)
				m.Delete(k)
			}
		})
	})
	b.Run("impl=rwmutexmap", func(b *testing.B) {
		m, _ := newRWMap()
		b.RunParallel(func(pb *testing.PB) {
			v := new(conn)
			for k := keyBase.Add(1) << 32; pb.Next(); k++ {
				m.mu.Lock()
				m.m[k] = v
				m.mu.Unlock()
				m.mu.Lock()
				delete(m.m, k)
				m.mu.Unlock()
			}
		})
	})
}
