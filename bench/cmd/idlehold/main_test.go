package main

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/zerowire/zerowire/wire"
)

// fakeServer answers each connection's HELLO with its own, split in two
// writes so that greet has to read twice, and holds the connection.
func fakeServer(t *testing.T, answer []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, len(hello))
				if _, err := c.Read(buf); err != nil {
					return
				}
				c.Write(answer[:10])
				time.Sleep(5 * time.Millisecond)
				c.Write(answer[10:])
				c.Read(buf) // hold until the client closes
			}()
		}
	}()
	return ln.Addr().String()
}

func TestOpenHolds(t *testing.T) {
	addr := fakeServer(t, wire.AppendPacket(nil, wire.FrameHello, 0, 0, wire.AppendHello(nil, wire.Hello{
		MinVersion: 1, MaxVersion: 1, MaxPacketSize: wire.DefaultMaxPacketSize,
	})))
	conns, err := open(context.Background(), addr, 25, 10, time.Now().Add(10*time.Second))
	if err != nil || len(conns) != 25 {
		t.Fatalf("open: %d conns, %v", len(conns), err)
	}
	closeAll(conns)
}

func TestOpenRejectsNonHello(t *testing.T) {
	addr := fakeServer(t, wire.AppendPacket(nil, wire.FramePong, 0, 0, make([]byte, 16)))
	if _, err := open(context.Background(), addr, 3, 3, time.Now().Add(5*time.Second)); err == nil {
		t.Fatal("a PONG for a HELLO was accepted")
	}
}
