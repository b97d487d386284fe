package pool

import (
	"strings"
	"testing"
)

// TestGenerationWraps takes a slot to the last 31-bit generation and checks
// that the release after it, through Release and through Cache.Put, wraps
// to generation 0 and still makes the old handle stale.
func TestGenerationWraps(t *testing.T) {
	p, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := p.NewCache()
	for _, way := range []struct {
		release func(Buffer)
		get     func(int) (Buffer, error)
	}{{Buffer.Release, p.Get}, {c.Put, c.Get}} {
		b, err := p.Get(100)
		if err != nil {
			t.Fatal(err)
		}
		b.s.state.Store(live(genMask))
		b.gen = genMask
		b.Retain()
		b.Release()
		way.release(b)
		if st := b.s.state.Load(); genOf(st) != 0 {
			t.Fatalf("generation after the last release = %d, want 0 (state %#x)", genOf(st), st)
		}
		var msg string
		func() {
			defer func() { msg, _ = recover().(string) }()
			b.Retain()
		}()
		if !strings.Contains(msg, "already released") {
			t.Fatalf("Retain through the handle of generation %d after the wrap: panic %q", genMask, msg)
		}
		again, err := way.get(100)
		if err != nil {
			t.Fatal(err)
		}
		if again.s != b.s || again.gen != 0 {
			t.Fatalf("next Get: slot %p generation %d, want slot %p generation 0", again.s, again.gen, b.s)
		}
		again.Release()
	}
	c.Flush()
	if n := p.Stats().Classes[0].InUse; n != 0 {
		t.Fatalf("%d in use at the end", n)
	}
}
