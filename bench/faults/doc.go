// Package faults checks zerowire's Client, Pool and Server against faults on
// the path and in the process, from the outside, through the public API:
//
//   - toxics_test.go: a toxiproxy proxy, run in-process as a library, sits
//     between a Pool (and Clients) and a Server on loopback and adds
//     latency, a bandwidth limit, slicing, connections cut mid-packet
//     (limit_data, reset_peer), a black hole (timeout) and slow closes.
//     Every call must end once, within its deadline, with its RESPONSE or
//     an error that says whether it is safe to retry; a client dialed
//     straight to the server keeps echoing throughout; nothing leaks.
//   - crash_test.go: the server runs as a subprocess (internal/echoserver),
//     is killed with SIGKILL under load and restarted on the same port; the
//     Pool's calls fail with clear errors and it reconnects.
//   - shutdown_test.go: Server.Shutdown under load (hundreds of connections,
//     16 REQUESTs in flight each) answers every REQUEST up to each GOAWAY's
//     last seq and none above it.
//
// Only the tests' own goroutines and descriptors are checked for leaks:
// toxiproxy leaks goroutines of its own when a toxic closes a link
// (limit_data, reset_peer, timeout), and those are told apart by their
// stacks. The echo server's buffers are checked through a pool.Pool the
// test gives it, which must have every buffer back once it has closed.
//
// The package has no code of its own. Usage, from bench/ (the flags go
// after the package, where go test hands them to the test binary):
//
//	go test ./faults/...                               # the short suite, ~25 s (~30 s with -race)
//	go test -timeout 30m ./faults/ -faults.long        # larger counts, longer loads, both server backends
package faults
