package sys

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// Mmap maps length bytes of private, anonymous, read-write memory, zeroed by
// the kernel. Memory mapped here is invisible to the Go garbage collector:
// it is never scanned, never counted in the heap goal, and must therefore
// never hold Go pointers. With populate, the kernel faults every page in
// before returning (MAP_POPULATE), trading a slower map for no page faults
// on first touch.
func Mmap(length int, populate bool) ([]byte, error) {
	flags := unix.MAP_PRIVATE | unix.MAP_ANONYMOUS
	if populate {
		flags |= unix.MAP_POPULATE
	}
	b, err := unix.Mmap(-1, 0, length, unix.PROT_READ|unix.PROT_WRITE, flags)
	if err != nil {
		return nil, os.NewSyscallError("mmap", err)
	}
	return b, nil
}

// Munmap returns memory from Mmap to the kernel. Any slice still referring
// to it faults on access afterwards.
func Munmap(b []byte) error {
	return os.NewSyscallError("munmap", unix.Munmap(b))
}

// AdviseHugePages asks for transparent huge pages over b, which cuts TLB
// misses when large regions are touched at random. It is only advice: a
// kernel built without THP refuses it, and the memory works as before.
func AdviseHugePages(b []byte) error {
	return os.NewSyscallError("madvise", unix.Madvise(b, unix.MADV_HUGEPAGE))
}

// PopulateWrite faults in every page of b for writing. Unlike MAP_POPULATE
// it can run after AdviseHugePages, so the pages it faults in are huge ones.
// Kernels before 5.14 do not know the advice; then it does nothing and the
// pages fault in on first touch instead.
func PopulateWrite(b []byte) error {
	err := unix.Madvise(b, unix.MADV_POPULATE_WRITE)
	if errors.Is(err, unix.EINVAL) {
		return nil
	}
	return os.NewSyscallError("madvise", err)
}
