package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"

	"github.com/zerowire/zerowire/wire"
)

// stdin is what decode reads for "-"; tests replace it.
var stdin io.Reader = os.Stdin

func decodeCommand() *command {
	return &command{
		name:    "decode",
		args:    "[FILE|-]",
		maxArgs: 1,
		summary: `Decode reads a raw zerowire byte stream (one direction of a connection, or
both: any packet is accepted) from FILE or standard input and prints each
packet: its offset, header fields, frame type, flag names, a preview of its
payload, and the decoded payload of HELLO, ERROR and GOAWAY. It stops at the
first malformed packet with its offset and the protocol error's code, and
reports a trailing incomplete packet. The exit code is 1 when the stream is
malformed or ends inside a packet.`,
		setup: func(fs *flag.FlagSet) runFunc {
			var hexIn bool
			fs.BoolVar(&hexIn, "hex", false, "the input is hex text (whitespace allowed between digits)")
			return func(ctx context.Context, e *env, args []string) error {
				name := "-"
				if len(args) == 1 {
					name = args[0]
				}
				return runDecode(e, name, hexIn)
			}
		},
	}
}

// decodeLimits accepts any packet of either direction: the largest size the
// header can state, and PAYLOAD_CRC.
var decodeLimits = wire.Limits{MaxPacketSize: 1<<31 - 1, PayloadCRC: true}

const previewBytes = 32

func runDecode(e *env, name string, hexIn bool) error {
	var b []byte
	var err error
	if name == "-" {
		b, err = io.ReadAll(stdin)
	} else {
		b, err = os.ReadFile(name)
	}
	if err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	if hexIn {
		if b, err = decodeHex(b); err != nil {
			return fmt.Errorf("decode: %w", err)
		}
	}
	w := e.stdout
	off, count := 0, 0
	for off < len(b) {
		p, n, err := wire.Parse(b[off:], decodeLimits)
		if errors.Is(err, wire.ErrIncomplete) {
			have := len(b) - off
			what := fmt.Sprintf("%d of the %d bytes the header gives as its size", have, n)
			if have < wire.HeaderSize {
				what = fmt.Sprintf("%d bytes, short of a %d-byte header", have, wire.HeaderSize)
			}
			fmt.Fprintf(w, "offset %d  incomplete packet: %s\n", off, what)
			fmt.Fprintf(w, "%d packets, %d bytes; the stream ends inside a packet\n", count, off)
			return fmt.Errorf("decode: offset %d: incomplete packet at the end of the input (%s)", off, what)
		}
		if err != nil {
			desc := describeError(err)
			fmt.Fprintf(w, "offset %d  malformed: %s\n", off, desc)
			if h, herr := wire.DecodeHeader(b[off:]); herr == nil {
				fmt.Fprintf(w, "  header    %s ok\n", headerFields(h, b[off:]))
			} else {
				fmt.Fprintf(w, "  bytes     %s\n", hexPreview(b[off:], wire.HeaderSize))
				if len(b)-off >= wire.HeaderSize {
					fmt.Fprintf(w, "  checksum  0x%08x in the header, 0x%08x computed\n",
						binary.LittleEndian.Uint32(b[off+20:]), wire.Checksum(b[off:off+20]))
				}
			}
			fmt.Fprintf(w, "%d packets, %d bytes before the error\n", count, off)
			return fmt.Errorf("decode: offset %d: %s", off, desc)
		}
		printPacket(w, off, p, b[off:off+n])
		off += n
		count++
	}
	fmt.Fprintf(w, "%d packets, %d bytes\n", count, off)
	return nil
}

// decodeHex decodes hex text, ignoring whitespace.
func decodeHex(text []byte) ([]byte, error) {
	digits := bytes.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, text)
	out := make([]byte, hex.DecodedLen(len(digits)))
	if _, err := hex.Decode(out, digits); err != nil {
		return nil, fmt.Errorf("--hex: %w", err)
	}
	return out, nil
}

// describeError names a parse error's code, as the contract does.
func describeError(err error) string {
	var we *wire.Error
	if errors.As(err, &we) {
		return fmt.Sprintf("%s (code %d): %s", we.Code, uint32(we.Code), we.Msg)
	}
	return err.Error()
}

func headerFields(h wire.Header, raw []byte) string {
	sum := binary.LittleEndian.Uint32(raw[20:24])
	return fmt.Sprintf("version=%d flags=0x%04x (%s) size=%d seq=%d checksum=0x%08x",
		h.Version, uint16(h.Flags), flagNames(h.Flags), h.Size, h.Seq, sum)
}

// flagNames spells out flags: the frame type, then the set bits.
func flagNames(f wire.Flags) string {
	names := []string{f.Type().String()}
	if f&wire.FlagCopy != 0 {
		names = append(names, "COPY")
	}
	if f&wire.FlagPayloadCRC != 0 {
		names = append(names, "PAYLOAD_CRC")
	}
	if r := f &^ (0xf | wire.FlagCopy | wire.FlagPayloadCRC); r != 0 {
		names = append(names, fmt.Sprintf("RESERVED(0x%04x)", uint16(r)))
	}
	return strings.Join(names, "|")
}

// printPacket prints one well-formed packet; raw is its bytes.
func printPacket(w io.Writer, off int, p wire.Packet, raw []byte) {
	fmt.Fprintf(w, "offset %d  %s  %s ok\n", off, p.Type(), headerFields(p.Header, raw))
	if p.Flags&wire.FlagPayloadCRC != 0 {
		fmt.Fprintf(w, "  trailer   crc32c=0x%08x ok\n", binary.LittleEndian.Uint32(raw[len(raw)-wire.TrailerSize:]))
	}
	switch p.Type() {
	case wire.FrameHello:
		if h, err := wire.ParseHello(p.Payload); err == nil {
			fmt.Fprintf(w, "  hello     versions %d..%d, max_packet_size %d, idle_timeout_ms %d, capabilities 0x%08x%s, %s\n",
				h.MinVersion, h.MaxVersion, h.MaxPacketSize, h.IdleTimeoutMS, h.Capabilities, capNames(h.Capabilities), extensions(h.Extensions))
		}
	case wire.FrameError:
		if code, msg, err := wire.ParseErrorPayload(p.Payload); err == nil {
			fmt.Fprintf(w, "  error     %s (code %d) %q\n", code, uint32(code), msg)
		}
	case wire.FrameGoAway:
		if g, err := wire.ParseGoAway(p.Payload); err == nil {
			fmt.Fprintf(w, "  goaway    last_seq %d, %s (code %d) %q\n", g.LastSeq, g.Code, uint32(g.Code), g.Msg)
		}
	}
	if len(p.Payload) > 0 {
		fmt.Fprintf(w, "  payload   %d bytes: %s\n", len(p.Payload), hexPreview(p.Payload, previewBytes))
	}
}

func capNames(c uint32) string {
	if c&wire.CapPayloadCRC != 0 {
		return " (PAYLOAD_CRC)"
	}
	return ""
}

// extensions lists a HELLO's extensions as type:length.
func extensions(b []byte) string {
	if len(b) == 0 {
		return "no extensions"
	}
	var parts []string
	for len(b) > 0 {
		ext, rest, err := wire.NextExtension(b)
		if err != nil {
			parts = append(parts, "malformed")
			break
		}
		parts = append(parts, fmt.Sprintf("type %d (%d bytes)", ext.Type, len(ext.Value)))
		b = rest
	}
	return "extensions " + strings.Join(parts, ", ")
}

// hexPreview shows up to max bytes of b as hex and printable ASCII.
func hexPreview(b []byte, max int) string {
	more := ""
	if len(b) > max {
		b, more = b[:max], " ..."
	}
	var h, a strings.Builder
	for i, c := range b {
		if i > 0 {
			h.WriteByte(' ')
		}
		fmt.Fprintf(&h, "%02x", c)
		if c >= 0x20 && c < 0x7f {
			a.WriteByte(c)
		} else {
			a.WriteByte('.')
		}
	}
	return fmt.Sprintf("%s%s  |%s|", h.String(), more, a.String())
}
