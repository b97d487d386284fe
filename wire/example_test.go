package wire_test

import (
	"errors"
	"fmt"

	"github.com/zerowire/zerowire/wire"
)

func ExampleParse() {
	// A client's first bytes: HELLO, then a REQUEST pipelined behind it.
	var out []byte
	hello := wire.Hello{MinVersion: 1, MaxVersion: 1, MaxPacketSize: 65536, Capabilities: wire.CapPayloadCRC}
	out = wire.AppendPacket(out, wire.FrameHello, 0, 0, wire.AppendHello(nil, hello))
	out = wire.AppendPacket(out, wire.FrameRequest, wire.FlagPayloadCRC, 1, []byte("hello"))

	// The receiver parses every complete packet in place; here the last
	// bytes of the stream have not arrived yet.
	in := out[:len(out)-3]
	lim := wire.Limits{MaxPacketSize: 65536, PayloadCRC: true}
	for {
		p, n, err := wire.Parse(in, lim)
		if errors.Is(err, wire.ErrIncomplete) {
			fmt.Printf("wait: %d of %d bytes\n", len(in), n)
			break
		}
		if err != nil {
			fmt.Println("reject:", err) // send ERROR with the code, then close
			break
		}
		fmt.Printf("%v seq %d size %d payload %d bytes\n", p.Type(), p.Seq, p.Size, len(p.Payload))
		in = in[n:]
	}

	in = append(in, out[len(out)-3:]...)
	p, _, _ := wire.Parse(in, lim)
	fmt.Printf("%v seq %d payload %q\n", p.Type(), p.Seq, p.Payload)
	// Output:
	// HELLO seq 0 size 40 payload 16 bytes
	// wait: 30 of 33 bytes
	// REQUEST seq 1 payload "hello"
}
