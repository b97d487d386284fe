package pool

import (
	"bytes"
	"runtime"
	"strconv"
	"strings"
)

// Stale handles are caught in every mode, by the generation check in slot's
// state. Debug mode (Options.Debug or the zwdebug build tag) adds what costs
// time: it records where each buffer was freed, so the panic can name it;
// it fills released memory with poison; and a Get checks the poison is
// intact, so a write through a slice kept past its release is caught at the
// next Get of that slot.

const poisonByte = 0xDE

// pkgPrefix marks this package's frames, which callSite skips.
var pkgPrefix = func() string {
	pc, _, _, _ := runtime.Caller(0)
	name := runtime.FuncForPC(pc).Name() // path/to/pool.init.func1
	pkg := strings.LastIndexByte(name, '/') + 1
	return name[:pkg+strings.IndexByte(name[pkg:], '.')+1]
}()

// callSite returns file:line of the nearest caller outside this package,
// which is the call the user wrote whichever exported method it went
// through.
func callSite() string {
	var pcs [16]uintptr
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs[:])])
	for {
		f, more := frames.Next()
		if !strings.HasPrefix(f.Function, pkgPrefix) {
			return f.File + ":" + strconv.Itoa(f.Line)
		}
		if !more {
			return "unknown"
		}
	}
}

func poison(b []byte) {
	if len(b) == 0 {
		return
	}
	b[0] = poisonByte
	for i := 1; i < len(b); i *= 2 {
		copy(b[i:], b[:i])
	}
}

// freed records where the slot's last reference was released and poisons
// its memory, unless Close has unmapped it.
func freed(s *slot) {
	r := s.reg
	site := callSite()
	r.freedAt[s.idx&r.mask].Store(&site)
	if !r.cls.pool.closed() {
		poison(r.bytes(s))
	}
}

// checkPoison panics if the memory of s, just taken off a free list, was
// written while it was free.
func checkPoison(s *slot) {
	b := s.reg.bytes(s)
	if bytes.Count(b, []byte{poisonByte}) == len(b) {
		return
	}
	msg := "pool: a buffer was written after its last reference was released"
	if site := s.reg.freedAt[s.idx&s.reg.mask].Load(); site != nil {
		msg += " at " + *site
	}
	panic(msg)
}

// panicStale reports op on a handle whose last reference was already
// released.
func panicStale(op string, b Buffer) {
	s := b.s
	msg := "pool: " + op + " at " + callSite() + " of a Buffer whose last reference was already released"
	if !s.reg.debug {
		panic(msg + " (set Options.Debug or build with -tags zwdebug to learn where)")
	}
	if site := s.reg.freedAt[s.idx&s.reg.mask].Load(); site != nil {
		if (genOf(s.state.Load())-b.gen)&genMask == 1 {
			msg += "; it was released at " + *site
		} else {
			msg += "; it was released, and its memory reused, since; last released at " + *site
		}
	}
	panic(msg)
}
