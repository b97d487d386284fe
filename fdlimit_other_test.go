//go:build !unix

package zerowire

import "testing"

// fdLimit: systems without RLIMIT_NOFILE (Windows) bound sockets by memory,
// not by a per-process count the test must fit.
func fdLimit(*testing.T) int { return 1 << 20 }
