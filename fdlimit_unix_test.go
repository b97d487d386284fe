//go:build unix

package zerowire

import (
	"syscall"
	"testing"
)

// fdLimit is the soft limit on open files.
func fdLimit(t *testing.T) int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	return int(rl.Cur)
}
