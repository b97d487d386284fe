//go:build !linux

package pool

// Without a portable mmap the regions are Go slices: the API and the
// lifetime rules stay the same, but the garbage collector sees the memory.
// The slices hold no pointers, so it never scans them.
func mapRegion(size int, _, _ bool) ([]byte, error) { return make([]byte, size), nil }

// unmapRegion leaves the slice to the garbage collector once the pool drops
// its region.
func unmapRegion([]byte) error { return nil }
