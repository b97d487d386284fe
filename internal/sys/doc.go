// Package sys is the one place in zerowire for raw system calls and unsafe
// code, so that a reviewer auditing either reads this package and nothing
// else. Each wrapper is small and says why it exists.
//
// Errors from system calls are wrapped once, with the call's name, as
// *os.SyscallError.
package sys
