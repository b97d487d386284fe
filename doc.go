// Package zerowire serves and calls the zerowire protocol: a packed 24-byte
// header, frame types for one-way data, requests and responses, pings, and a
// HELLO handshake (the byte contract is the wire package and
// docs/PROTOCOL.md).
//
// # The model
//
// A Server runs loops: on Linux one epoll reactor per loop, each a
// goroutine owning its connections outright; elsewhere (or with
// BackendNet) each connection runs on Go's net package. Bytes are read into
// the loop's one shared read buffer and parsed in place; each DATA or
// REQUEST frame reaches Handler.OnPacket as a view into that buffer:
//
//	p is valid until OnPacket returns; call p.Retain to keep it.
//
// Answers are encoded into the loop's shared write buffer and leave with one
// write per connection per wake-up. Only what a socket does not take, and a
// packet split across reads, is copied into a pooled buffer of the
// connection's own, so an idle connection holds no buffer at all.
//
// Handler methods run on the loop and must not block. Slow work goes to
// another goroutine with Conn.Defer, and the Deferred it returns answers
// from there. Any goroutine can send to a connection by its ConnID
// (Server.Send, Server.Broadcast): the operation travels to the owning loop
// through a lock-free queue and one eventfd write.
//
// # Errors
//
// A peer that breaks the contract gets ERROR with the contract's code and
// is closed; no other connection notices. Protocol errors are *wire.Error
// values; ErrClosed wraps net.ErrClosed.
//
// A Client is one connection, safe for concurrent use, on the same engine:
// calls are pipelined and matched to answers by sequence number.
package zerowire
