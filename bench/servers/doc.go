// Package servers holds the peer echo servers of the benchmark, one command
// per library (gnet, netpoll, stdnet), and the test that checks each of them
// against wire-v1.md's echo service with a raw client built on the wire
// package, before any number they produce is compared with zerowire's.
package servers
