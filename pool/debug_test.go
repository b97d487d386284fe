package pool_test

import (
	"bytes"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/zerowire/zerowire/pool"
)

// here returns "debug_test.go:<line of the call>".
func here() string { return callerLine() }

// at runs f, written on the caller's line, and returns that line as here
// does, naming where f released a buffer.
func at(f func()) string {
	f()
	return callerLine()
}

func callerLine() string {
	_, file, line, _ := runtime.Caller(2)
	return file[strings.LastIndexByte(file, '/')+1:] + ":" + strconv.Itoa(line)
}

// stale checks that msg reports op at site bad on a buffer released at rel.
func stale(t *testing.T, msg, op, bad, rel string) {
	t.Helper()
	if !strings.Contains(msg, "pool: "+op+" at ") || !strings.Contains(msg, "/"+bad+" of") || !strings.HasSuffix(msg, "/"+rel) {
		t.Errorf("panic %q; want it to name %s at %s and the release at %s", msg, op, bad, rel)
	}
}

func TestDebugStaleHandle(t *testing.T) {
	p := newPool(t, pool.Options{Debug: true})
	c := p.NewCache()

	b := get(t, p, 1000)
	rel := at(func() { b.Release() })
	stale(t, panicMessage(func() { b.Release() }), "Release", here(), rel)
	stale(t, panicMessage(func() { b.Retain() }), "Retain", here(), rel)
	stale(t, panicMessage(func() { b.Bytes() }), "Bytes", here(), rel)
	stale(t, panicMessage(func() { c.Put(b) }), "Put", here(), rel)

	b = get(t, c, 1000)
	b.Retain()
	c.Put(b)
	rel = at(func() { c.Put(b) })
	stale(t, panicMessage(func() { b.Release() }), "Release", here(), rel)
	stale(t, panicMessage(func() { c.Put(b) }), "Put", here(), rel)
	c.Flush()
	if n := inUse(p); n != 0 {
		t.Fatalf("%d buffers in use after the stale calls", n)
	}
}

func TestDebugReusedSlot(t *testing.T) {
	p := newPool(t, pool.Options{Debug: true})
	old := get(t, p, 1000)
	first := &old.Bytes()[0]
	old.Release()
	b := get(t, p, 1000)
	if &b.Bytes()[0] != first {
		t.Skip("the free list did not hand the same slot back")
	}
	rel := at(func() { b.Release() })
	msg := panicMessage(func() { old.Release() })
	if !strings.Contains(msg, "reused") || !strings.HasSuffix(msg, "/"+rel) {
		t.Fatalf("panic %q; want it to say the memory was reused, last released at %s", msg, rel)
	}
}

func TestDebugPoison(t *testing.T) {
	p := newPool(t, pool.Options{Debug: true})
	b := get(t, p, 1000)
	mem := b.Bytes()[:1024]
	if bytes.Count(mem, []byte{0xDE}) != len(mem) {
		t.Fatal("fresh memory is not poisoned")
	}
	clear(mem)
	rel := at(func() { b.Release() })
	if bytes.Count(mem, []byte{0xDE}) != len(mem) {
		t.Fatal("released memory is not poisoned")
	}
	mem[100] = 1 // a write through a slice kept past its Release
	msg := panicMessage(func() { p.Get(1000) })
	if !strings.Contains(msg, "written after") || !strings.HasSuffix(msg, "/"+rel) {
		t.Fatalf("panic %q; want it to report the write and the release at %s", msg, rel)
	}
}

func TestZwdebugTag(t *testing.T) {
	if !pool.DebugForced() {
		t.Skip("needs -tags zwdebug")
	}
	p := newPool(t, pool.Options{})
	b := get(t, p, 1000)
	rel := at(func() { b.Release() })
	stale(t, panicMessage(func() { b.Release() }), "Release", here(), rel)
}
