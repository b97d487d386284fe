package pool

import "github.com/zerowire/zerowire/internal/sys"

func mapRegion(size int, populate, hugePages bool) ([]byte, error) {
	if !hugePages {
		return sys.Mmap(size, populate)
	}
	// Advise before populating, or the pages faulted in are small ones.
	mem, err := sys.Mmap(size, false)
	if err != nil {
		return nil, err
	}
	// Huge pages are only advice: a kernel without THP refuses it and the
	// region works as before.
	_ = sys.AdviseHugePages(mem)
	if populate {
		if err := sys.PopulateWrite(mem); err != nil {
			_ = sys.Munmap(mem)
			return nil, err
		}
	}
	return mem, nil
}

func unmapRegion(mem []byte) error { return sys.Munmap(mem) }
