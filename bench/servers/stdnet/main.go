// Command stdnet is the echo server of wire-v1.md written the way Go's net
// package is meant to be used: one goroutine per connection, blocking reads
// through a bufio.Reader, answers through a bufio.Writer that is flushed
// when the reader has nothing more buffered, so a pipelined burst leaves in
// one write.
//
// Usage:
//
//	stdnet [--addr 127.0.0.1:7878]
//
// It prints "listening on ADDR" once it accepts connections and exits on
// SIGINT or SIGTERM.
package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/zerowire/zerowire/bench/internal/echoproto"
	"github.com/zerowire/zerowire/bench/internal/peer"
	"github.com/zerowire/zerowire/wire"
)

// bufSize is the size of each connection's bufio.Reader and bufio.Writer:
// 64 KiB, the read and write buffer size gnet uses by default, so that both
// servers move the same amount per system call.
const bufSize = 64 << 10

// bigPackets holds buffers for the packets that do not fit a bufio.Reader
// (up to the 1 MiB max packet size): rare, and too large to give every
// connection one of its own.
var bigPackets = sync.Pool{New: func() any {
	b := make([]byte, echoproto.Hello.MaxPacketSize)
	return &b
}}

func main() { peer.Main("stdnet", serve) }

func serve(ctx context.Context, addr string, ready func(net.Addr)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	var (
		mu    sync.Mutex
		conns = make(map[net.Conn]struct{})
		wg    sync.WaitGroup
	)
	stopped := context.AfterFunc(ctx, func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	defer stopped()
	ready(ln.Addr())
	var delay time.Duration // out of descriptors: back off as net/http does, then retry
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				wg.Wait()
				return nil
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		mu.Lock()
		if ctx.Err() != nil { // accepted as the shutdown closed the others
			mu.Unlock()
			c.Close()
			continue
		}
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Go(func() {
			serveConn(c)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		})
	}
}

// serveConn answers one connection until it closes or breaks the contract.
func serveConn(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, bufSize)
	w := bufio.NewWriterSize(c, bufSize)
	var s echoproto.Session
	defer s.End()
	need := wire.HeaderSize
	for {
		b, err := r.Peek(need)
		var big *[]byte
		if errors.Is(err, bufio.ErrBufferFull) {
			// A packet larger than the reader's buffer: read it whole into
			// a pooled buffer; bufio hands over what it holds and reads the
			// rest straight from the socket.
			big = bigPackets.Get().(*[]byte)
			b = (*big)[:need]
			_, err = io.ReadFull(r, b)
		}
		if err != nil { // the client went away: nothing left to answer
			w.Flush()
			return
		}
		n, answer, body, err := s.Handle(b, w.AvailableBuffer())
		if err == wire.ErrIncomplete {
			need = n
			continue
		}
		w.Write(answer)
		w.Write(body)
		if big != nil {
			bigPackets.Put(big) // bufio.Writer has copied or sent body
		} else if err == nil {
			r.Discard(n)
		}
		if err != nil { // a protocol error or the client's goodbye
			w.Flush()
			return
		}
		need = wire.HeaderSize
		if r.Buffered() == 0 {
			if w.Flush() != nil {
				return
			}
		}
	}
}
