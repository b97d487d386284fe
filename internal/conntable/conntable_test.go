package conntable

import (
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// conn stands in for a connection. It records the ID it was added under, so a
// Get that returned another ID's value is caught by comparing the two.
type conn struct {
	id      atomic.Uint64
	removed atomic.Int32 // successful Removes of id; more than one is a bug
}

// idOf returns the ID recorded in c, or 0 for nil, so that a failure message
// can name the entry a wrong result belonged to.
func idOf(c *conn) ID {
	if c == nil {
		return 0
	}
	return ID(c.id.Load())
}

// add adds a new conn and records its ID in it.
func add(t testing.TB, tab *Table[conn]) (*conn, ID) {
	t.Helper()
	c := new(conn)
	id, err := tab.Add(c)
	if err != nil {
		t.Fatalf("Add: %v", err)
	}
	c.id.Store(uint64(id))
	return c, id
}

func TestZeroValueAndZeroID(t *testing.T) {
	var tab Table[conn]
	if v, ok := tab.Get(0); ok || v != nil {
		t.Fatalf("empty Get(0) = %v, %v", v, ok)
	}
	_, id := add(t, &tab)
	if id == 0 {
		t.Fatal("Add issued the zero ID")
	}
	if !tab.Remove(id) {
		t.Fatal("Remove of a live ID failed")
	}
	// Slot 0 is now free, and a free slot's word is 0.
	if v, ok := tab.Get(0); ok || v != nil {
		t.Fatalf("Get(0) on a free slot 0 = %v, %v", v, ok)
	}
	if tab.Remove(0) {
		t.Fatal("Remove(0) succeeded")
	}
	if n := tab.Len(); n != 0 {
		t.Fatalf("Len = %d after Remove(0), want 0", n)
	}
	if New[conn]().Len() != 0 {
		t.Fatal("New table not empty")
	}
}

func TestAddGetRemove(t *testing.T) {
	tab := New[conn]()
	var ids []ID
	for i := range 10 {
		c, id := add(t, tab)
		if got, ok := tab.Get(id); !ok || got != c {
			t.Fatalf("Get(%v) = %p, %v; want %p", id, got, ok, c)
		}
		if tab.Len() != i+1 {
			t.Fatalf("Len = %d, want %d", tab.Len(), i+1)
		}
		ids = append(ids, id)
	}
	for i, id := range ids {
		if !tab.Remove(id) {
			t.Fatalf("Remove(%v) = false", id)
		}
		if tab.Remove(id) {
			t.Fatalf("second Remove(%v) = true", id)
		}
		if v, ok := tab.Get(id); ok || v != nil {
			t.Fatalf("Get(%v) after Remove = %p, %v", id, v, ok)
		}
		if tab.Len() != len(ids)-i-1 {
			t.Fatalf("Len = %d, want %d", tab.Len(), len(ids)-i-1)
		}
	}
	// IDs never seen by the table: unallocated chunk, unissued index.
	for _, id := range []ID{makeID(1<<31, 1), makeID(5000, 1), makeID(20, 1), makeID(0, 2)} {
		if _, ok := tab.Get(id); ok {
			t.Fatalf("Get(%v) of an unissued ID succeeded", id)
		}
		if tab.Remove(id) {
			t.Fatalf("Remove(%v) of an unissued ID succeeded", id)
		}
	}
}

func TestNilValue(t *testing.T) {
	var tab Table[conn]
	id, err := tab.Add(nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := tab.Get(id); !ok || v != nil {
		t.Fatalf("Get = %p, %v; want nil, true", v, ok)
	}
}

func TestIDString(t *testing.T) {
	for _, tc := range []struct {
		id   ID
		want string
	}{
		{0, "0#0"},
		{makeID(17, 3), "17#3"},
		{makeID(maxSlots-1, maxGen), "4294967294#4294967295"},
	} {
		if got := tc.id.String(); got != tc.want {
			t.Errorf("ID(%#x).String() = %q, want %q", uint64(tc.id), got, tc.want)
		}
	}
}

// TestStaleIDsNeverResolve reuses one slot many times and checks that every
// earlier ID of it stays dead.
func TestStaleIDsNeverResolve(t *testing.T) {
	var tab Table[conn]
	_, keep := add(t, &tab) // a neighbour that must be unaffected
	var old []ID
	for range 2000 {
		c, id := add(t, &tab)
		if len(old) > 0 && id.index() != old[0].index() {
			t.Fatalf("slot not reused: %v after %v", id, old[0])
		}
		if got, ok := tab.Get(id); !ok || got != c {
			t.Fatalf("Get(%v) = %p, %v; want %p", id, got, ok, c)
		}
		if !tab.Remove(id) {
			t.Fatalf("Remove(%v) failed", id)
		}
		old = append(old, id)
	}
	c, live := add(t, &tab)
	for _, id := range old {
		if id == live {
			t.Fatalf("ID %v issued twice", id)
		}
		if v, ok := tab.Get(id); ok {
			t.Fatalf("stale %v resolved to the value of %v", id, idOf(v))
		}
		if tab.Remove(id) {
			t.Fatalf("stale Remove(%v) succeeded", id)
		}
	}
	if got, ok := tab.Get(live); !ok || got != c {
		t.Fatalf("stale Removes disturbed %v", live)
	}
	if _, ok := tab.Get(keep); !ok {
		t.Fatalf("neighbour %v lost", keep)
	}
}

// TestGenerationsRetire fast-forwards a slot to its last generations and
// checks that it is retired rather than wrapped back to issued IDs.
func TestGenerationsRetire(t *testing.T) {
	var tab Table[conn]
	_, id := add(t, &tab)
	tab.Remove(id)
	tab.slot(id.index()).gen = maxGen - 2 // the slot is free, so the test owns gen

	var old []ID
	for range 2 {
		_, id := add(t, &tab)
		if id.index() != 0 {
			t.Fatalf("slot not reused: got %v", id)
		}
		tab.Remove(id)
		old = append(old, id)
	}
	if g := old[1].gen(); g != maxGen {
		t.Fatalf("last generation = %d, want %d", g, uint32(maxGen))
	}
	for range 3 {
		if _, id := add(t, &tab); id.index() == 0 {
			t.Fatalf("retired slot reissued as %v", id)
		}
	}
	for _, id := range append(old, makeID(0, 1), makeID(0, 0)) {
		if _, ok := tab.Get(id); ok {
			t.Fatalf("Get(%v) on a retired slot succeeded", id)
		}
	}
	n := 0
	tab.Range(func(id ID, _ *conn) bool {
		if id.index() == 0 {
			t.Errorf("Range visited retired slot as %v", id)
		}
		n++
		return true
	})
	if n != 3 || tab.Len() != 3 {
		t.Fatalf("Range visited %d, Len = %d; want 3", n, tab.Len())
	}
}

// TestErrFull starts the table near the end of the index space; allocating
// all 2^32-1 slots for real would take 96 GiB.
func TestErrFull(t *testing.T) {
	var tab Table[conn]
	tab.fresh.Store(maxSlots - 2)
	_, a := add(t, &tab)
	_, b := add(t, &tab)
	if a.index() != maxSlots-2 || b.index() != maxSlots-1 {
		t.Fatalf("last IDs %v, %v", a, b)
	}
	for range 3 {
		if id, err := tab.Add(new(conn)); !errors.Is(err, ErrFull) || id != 0 {
			t.Fatalf("Add on a full table = %v, %v; want 0, ErrFull", id, err)
		}
	}
	if tab.Len() != 2 {
		t.Fatalf("Len = %d after failed Adds, want 2", tab.Len())
	}
	tab.Remove(a)
	c, id := add(t, &tab)
	if id.index() != a.index() || id == a {
		t.Fatalf("Add after Remove on a full table = %v, want slot of %v reused", id, a)
	}
	if got, ok := tab.Get(id); !ok || got != c {
		t.Fatal("reused slot does not resolve")
	}
	seen := 0
	tab.Range(func(ID, *conn) bool { seen++; return true })
	if seen != 2 {
		t.Fatalf("Range at the top of the index space saw %d, want 2", seen)
	}
}

func TestAllocs(t *testing.T) {
	var tab Table[conn]
	c := new(conn)
	id, _ := tab.Add(c)
	if n := testing.AllocsPerRun(1000, func() { tab.Get(id) }); n != 0 {
		t.Errorf("Get: %v allocs, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { tab.Get(id + 1<<32) }); n != 0 {
		t.Errorf("Get of a stale ID: %v allocs, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() {
		id, err := tab.Add(c)
		if err != nil || !tab.Remove(id) {
			panic("Add/Remove failed")
		}
	}); n != 0 {
		t.Errorf("Add+Remove: %v allocs, want 0", n)
	}
	// Fresh indexes inside an existing chunk allocate nothing either.
	if n := testing.AllocsPerRun(100, func() { tab.Add(c) }); n != 0 {
		t.Errorf("Add of fresh indexes: %v allocs, want 0", n)
	}
}

// TestFreeStackTags checks what makes the free stack immune to ABA: a pop
// that read the head, and then the next link of the slot it names, must not
// succeed after other goroutines popped that slot and pushed it back.
func TestFreeStackTags(t *testing.T) {
	var tab Table[conn]
	_, a := add(t, &tab)
	_, b := add(t, &tab)
	tab.Remove(b)
	tab.Remove(a) // free: a, b
	h := tab.free.Load()
	_, sa, _ := tab.pop()
	tab.pop()
	tab.push(a.index(), sa) // free: a again, with a stale link to b
	if tab.free.Load() == h {
		t.Fatal("pop, pop, push restored the head word; a racing pop would install a stale link")
	}
}

// TestConcurrent mixes Adds, Gets and Removes, including Removes of other
// goroutines' IDs, over few slots so that slots are reused constantly.
func TestConcurrent(t *testing.T) {
	const (
		cells = 64 // IDs shared between goroutines
		dead  = 256
	)
	workers := max(4, runtime.GOMAXPROCS(0))
	ops := 1_000_000 / workers
	if testing.Short() {
		ops /= 10
	}
	var (
		tab     Table[conn]
		shared  [cells]atomic.Pointer[conn] // conns added, maybe removed since
		removed [dead]atomic.Uint64         // IDs whose Remove returned true
		hits    atomic.Int64
		wg      sync.WaitGroup
	)
	remove := func(c *conn, r *rand.Rand) {
		id := idOf(c)
		if !tab.Remove(id) {
			return
		}
		if c.removed.Add(1) != 1 {
			t.Errorf("Remove(%v) succeeded twice", id)
		}
		removed[r.IntN(dead)].Store(uint64(id))
	}
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for range ops {
				switch k := r.IntN(cells); r.IntN(9) {
				case 0, 1: // add, evicting the cell's previous conn
					c, _ := add(t, &tab)
					if old := shared[k].Swap(c); old != nil {
						remove(old, r)
					}
				case 2: // remove someone's conn
					if c := shared[k].Load(); c != nil {
						remove(c, r)
					}
				case 3, 4, 5: // get a maybe-live ID
					c := shared[k].Load()
					if c == nil {
						continue
					}
					id := idOf(c)
					got, ok := tab.Get(id)
					if !ok {
						continue
					}
					if got != c || idOf(got) != id {
						t.Errorf("Get(%v) returned the value of %v", id, idOf(got))
						return
					}
					hits.Add(1)
				case 6: // get the ID the slot's next Add will issue
					c := shared[k].Load()
					if c == nil {
						continue
					}
					id := idOf(c) + 1<<32
					// The Add of id may not have recorded it in its conn yet.
					got, ok := tab.Get(id)
					if g := idOf(got); ok && (got == nil || g != id && g != 0) {
						t.Errorf("Get(%v) of an ID being issued returned the value of %v", id, g)
						return
					}
				default: // get a removed ID
					id := ID(removed[r.IntN(dead)].Load())
					if v, ok := tab.Get(id); ok {
						t.Errorf("removed %v resolved (to the value of %v)", id, idOf(v))
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if hits.Load() == 0 {
		t.Error("no Get ever hit; the test exercised nothing")
	}

	// Quiescent: the live entries are exactly the shared conns never removed.
	want := map[ID]*conn{}
	for i := range shared {
		if c := shared[i].Load(); c != nil && c.removed.Load() == 0 {
			want[idOf(c)] = c
		}
	}
	if tab.Len() != len(want) {
		t.Errorf("Len = %d, want %d", tab.Len(), len(want))
	}
	tab.Range(func(id ID, v *conn) bool {
		if want[id] != v {
			t.Errorf("Range visited %v -> %p, not live", id, v)
		}
		delete(want, id)
		return true
	})
	for id := range want {
		t.Errorf("Range missed %v", id)
	}
	if f := tab.fresh.Load(); f > cells+2*uint64(workers) {
		t.Errorf("%d slots used for at most %d live or in-flight entries; slots are not reused", f, cells+2*workers)
	}
}

// TestGrowth adds across several chunk boundaries, and across a leaf
// boundary, from several goroutines at once while readers check that
// existing entries keep resolving to their values.
func TestGrowth(t *testing.T) {
	for _, start := range []uint64{0, 1<<leafShift - 2*chunkLen} {
		var tab Table[conn]
		tab.fresh.Store(start)
		early := make([]*conn, 100)
		for i := range early {
			early[i], _ = add(t, &tab)
		}
		firstSlot := tab.slot(idOf(early[0]).index())

		const writers, perWriter = 4, 5 * chunkLen / 4 // 5 chunks in all
		var (
			done    atomic.Bool
			readers sync.WaitGroup
			wg      sync.WaitGroup
			latest  [writers]atomic.Pointer[conn]
		)
		for r := range 2 {
			readers.Go(func() {
				for i := 0; !done.Load(); i++ {
					c := early[i%len(early)]
					if got, ok := tab.Get(idOf(c)); !ok || got != c {
						t.Errorf("early entry %v lost during growth", idOf(c))
						return
					}
					if c := latest[(i+r)%writers].Load(); c != nil {
						if got, ok := tab.Get(idOf(c)); !ok || got != c {
							t.Errorf("new entry %v does not resolve", idOf(c))
							return
						}
					}
				}
			})
		}
		all := make([][]*conn, writers)
		for w := range writers {
			wg.Go(func() {
				for range perWriter {
					c, _ := add(t, &tab)
					latest[w].Store(c)
					all[w] = append(all[w], c)
				}
			})
		}
		wg.Wait()
		done.Store(true)
		readers.Wait()

		if tab.slot(idOf(early[0]).index()) != firstSlot {
			t.Fatal("growth moved an existing slot")
		}
		if got := tab.fresh.Load() - start; got != uint64(len(early)+writers*perWriter) {
			t.Fatalf("%d indexes issued, want %d", got, len(early)+writers*perWriter)
		}
		if tab.Len() != len(early)+writers*perWriter {
			t.Fatalf("Len = %d, want %d", tab.Len(), len(early)+writers*perWriter)
		}
		for _, cs := range append(all, early) {
			for _, c := range cs {
				if got, ok := tab.Get(idOf(c)); !ok || got != c {
					t.Fatalf("%v does not resolve after growth", idOf(c))
				}
			}
		}
	}
}

func TestRange(t *testing.T) {
	var tab Table[conn]
	stable := map[ID]*conn{}
	var gone []ID
	for i := range 3 * chunkLen {
		c, id := add(t, &tab)
		if i%3 == 0 {
			tab.Remove(id)
			gone = append(gone, id)
		} else {
			stable[id] = c
		}
	}

	// Churn while ranging: these entries may or may not be visited, but
	// removed ones only if visited before their removal.
	var (
		done  atomic.Bool
		churn sync.WaitGroup
	)
	churn.Go(func() {
		for !done.Load() {
			_, id := add(t, &tab)
			tab.Remove(id)
		}
	})
	for range 10 {
		seen := map[ID]bool{}
		tab.Range(func(id ID, v *conn) bool {
			if seen[id] {
				t.Errorf("Range visited %v twice", id)
			}
			seen[id] = true
			// The churning goroutine may not have recorded id in v yet.
			if got := idOf(v); got != id && (got != 0 || stable[id] != nil) {
				t.Errorf("Range passed %v with the value of %v", id, got)
			}
			return true
		})
		for id := range stable {
			if !seen[id] {
				t.Fatalf("Range missed %v, live throughout", id)
			}
		}
		for _, id := range gone {
			if seen[id] {
				t.Fatalf("Range visited %v, removed before it", id)
			}
		}
	}
	done.Store(true)
	churn.Wait()

	n := 0
	tab.Range(func(ID, *conn) bool { n++; return n < 5 })
	if n != 5 {
		t.Fatalf("Range went on after f returned false: %d calls", n)
	}

	// The shutdown pattern: remove everything from inside Range.
	for id := range tab.Range {
		if !tab.Remove(id) {
			t.Fatalf("Remove(%v) inside Range failed", id)
		}
	}
	if tab.Len() != 0 {
		t.Fatalf("Len = %d after removing all in Range", tab.Len())
	}
}
