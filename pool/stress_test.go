package pool_test

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/zerowire/zerowire/pool"
)

// owned is a buffer with the pattern its writer stamped on it.
type owned struct {
	b  pool.Buffer
	id uint64
}

func stamp(b []byte, id uint64) {
	for i := 0; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], id)
	}
	for i := len(b) &^ 7; i < len(b); i++ {
		b[i] = byte(id)
	}
}

func intact(b []byte, id uint64) bool {
	for i := 0; i+8 <= len(b); i += 8 {
		if binary.LittleEndian.Uint64(b[i:]) != id {
			return false
		}
	}
	for i := len(b) &^ 7; i < len(b); i++ {
		if b[i] != byte(id) {
			return false
		}
	}
	return true
}

// getStamped gets a buffer of n bytes and stamps id on it. It returns the
// zero owned if the pool is exhausted, which the stress tests expect, and
// any other error.
func getStamped(get func(int) (pool.Buffer, error), n int, id uint64) (owned, error) {
	b, err := get(n)
	if errors.Is(err, pool.ErrExhausted) {
		return owned{}, nil
	}
	if err != nil {
		return owned{}, err
	}
	stamp(b.Bytes(), id)
	return owned{b, id}, nil
}

// TestStress has goroutines acquire buffers (half of them through a Cache),
// stamp each with a pattern no other buffer carries, hold some, and hand
// retained references to each other over channels. Every holder checks the
// pattern before its release: two live handles sharing memory would smear
// one pattern over the other. Small regions make the classes grow while
// other goroutines pop and push, and a 1 MiB cap makes Gets hit ErrExhausted
// along the way.
func TestStress(t *testing.T) {
	const (
		workers = 8
		rounds  = 3000
		maxSize = 16 << 10
	)
	p := newPool(t, pool.Options{MaxBytes: 1 << 20, MaxSize: maxSize, RegionSize: 8 << 10})
	inbox := make([]chan owned, workers)
	for i := range inbox {
		inbox[i] = make(chan owned, 16)
	}
	var sent, wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		sent.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			stillSending := true
			defer func() {
				if stillSending { // failed early: do not keep the others waiting
					sent.Done()
				}
			}()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			var cache *pool.Cache
			if w%2 == 0 {
				cache = p.NewCache()
				defer cache.Flush()
			}
			get := p.Get
			release := pool.Buffer.Release
			if cache != nil {
				get, release = cache.Get, cache.Put
			}
			drop := func(o owned) bool {
				if !intact(o.b.Bytes(), o.id) {
					errs <- errors.New("a live buffer's pattern was overwritten")
					return false
				}
				release(o.b)
				return true
			}
			var held []owned
			for r := range rounds {
				select {
				case o := <-inbox[w]:
					if !drop(o) {
						return
					}
				default:
				}
				o, err := getStamped(get, 1+rng.IntN(maxSize>>uint(rng.IntN(7))), uint64(w)<<32|uint64(r))
				if err != nil {
					errs <- err
					return
				}
				if o.b.IsZero() {
					continue
				}
				if rng.IntN(2) == 0 {
					o.b.Retain()
					select {
					case inbox[rng.IntN(workers)] <- o:
					default:
						o.b.Release()
					}
				}
				held = append(held, o)
				if len(held) > 8 || rng.IntN(3) == 0 {
					i := rng.IntN(len(held))
					if !drop(held[i]) {
						return
					}
					held = append(held[:i], held[i+1:]...)
				}
			}
			for _, o := range held {
				if !drop(o) {
					return
				}
			}
			stillSending = false
			sent.Done()
			sent.Wait() // nobody sends any more: empty the inbox
			for {
				select {
				case o := <-inbox[w]:
					if !drop(o) {
						return
					}
				default:
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	st := p.Stats()
	t.Logf("after the run: %+v", st)
	for _, c := range st.Classes {
		if c.InUse != 0 || c.InUseBytes != 0 {
			t.Errorf("class %d: %d buffers in use after every release", c.Size, c.InUse)
		}
	}
	if st.MappedBytes > 1<<20 {
		t.Errorf("mapped %d bytes, above MaxBytes", st.MappedBytes)
	}
	// Every mapped slot is on its free list exactly once.
	for _, c := range st.Classes {
		seen := map[*byte]bool{}
		for range c.Slots {
			seen[&get(t, p, c.Size).Bytes()[:1][0]] = true
		}
		if len(seen) != c.Slots {
			t.Errorf("class %d: %d distinct buffers of %d slots", c.Size, len(seen), c.Slots)
		}
	}
	if after := p.Stats(); after.MappedBytes != st.MappedBytes {
		t.Errorf("draining the free lists mapped more: %d bytes, was %d", after.MappedBytes, st.MappedBytes)
	}
}

// TestStressSpare has goroutines get and release buffers of one class
// through the Pool alone, each holding zero to three at a time, so that the
// class's spare is taken, given back and moved between slots by several
// goroutines at once. A spare that the moves left behind would be free but
// out of every Get's reach: the drain at the end finds every slot exactly
// once without mapping more, and the patterns catch two live handles on
// one slot.
func TestStressSpare(t *testing.T) {
	const (
		workers = 4
		rounds  = 20000
		size    = 512
	)
	p := newPool(t, pool.Options{MaxBytes: 16 * size, MaxSize: 4096, RegionSize: 4 * size})
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 2))
			var held []owned
			drop := func(i int) bool {
				o := held[i]
				held = append(held[:i], held[i+1:]...)
				if !intact(o.b.Bytes(), o.id) {
					errs <- errors.New("a live buffer's pattern was overwritten")
					return false
				}
				o.b.Release()
				return true
			}
			for r := range rounds {
				if len(held) == 3 || len(held) > 0 && rng.IntN(2) == 0 {
					if !drop(rng.IntN(len(held))) {
						return
					}
					continue
				}
				o, err := getStamped(p.Get, size, uint64(w)<<32|uint64(r))
				if err != nil {
					errs <- err
					return
				}
				if o.b.IsZero() {
					continue
				}
				held = append(held, o)
			}
			for len(held) > 0 {
				if !drop(0) {
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := p.Stats().Classes[1]
	if st.InUse != 0 {
		t.Fatalf("%d buffers in use after every release", st.InUse)
	}
	seen := map[*byte]bool{}
	for range st.Slots {
		seen[&get(t, p, size).Bytes()[0]] = true
	}
	if len(seen) != st.Slots || p.Stats().Classes[1].Slots != st.Slots {
		t.Fatalf("%d distinct buffers of %d slots; slots now %d", len(seen), st.Slots, p.Stats().Classes[1].Slots)
	}
}
