package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestUsage(t *testing.T) {
	code, _, errOut := runCmd(t)
	if code != exitUsage || !strings.Contains(errOut, "Usage:") || !strings.Contains(errOut, "Exit codes:") {
		t.Fatalf("no args: exit %d, stderr %q", code, errOut)
	}
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		code, out, _ := runCmd(t, args...)
		if code != exitOK || !strings.Contains(out, "serve") || !strings.Contains(out, "2  usage error") {
			t.Errorf("%v: exit %d, stdout %q", args, code, out)
		}
	}
	for _, name := range []string{"serve", "bench", "demo", "ping", "decode"} {
		for _, args := range [][]string{{name, "-h"}, {name, "--help"}, {"help", name}} {
			code, out, _ := runCmd(t, args...)
			if code != exitOK || !strings.Contains(out, "Usage: zw "+name) || !strings.Contains(out, "Exit codes") {
				t.Errorf("%v: exit %d, stdout %q", args, code, out)
			}
		}
	}
	_, out, _ := runCmd(t, "serve", "-h")
	for _, f := range []string{"-addr", "-loops", "-max-packet", "-idle-timeout", "-busy-poll", "-backend"} {
		if !strings.Contains(out, f) {
			t.Errorf("serve -h lacks %s", f)
		}
	}
	_, out, _ = runCmd(t, "bench", "-h")
	for _, f := range []string{"-addr", "-conns", "-depth", "-size", "-duration", "-warmup", "-rate", "-busy-poll", "-backend", "-json", "-plot"} {
		if !strings.Contains(out, f) {
			t.Errorf("bench -h lacks %s", f)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `zw: unknown command "frobnicate"`},
		{[]string{"help", "frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"bench", "--nope"}, "zw bench: flag provided but not defined: -nope"},
		{[]string{"bench", "--conns", "x"}, `zw bench: invalid value "x" for flag -conns`},
		{[]string{"bench", "--conns", "0"}, "--conns must be at least 1"},
		{[]string{"bench", "--size", "12Q"}, "invalid size"},
		{[]string{"bench", "--backend", "kqueue"}, `unknown backend "kqueue"`},
		{[]string{"bench", "--plot", "x.gif"}, "must end in .svg or .png"},
		{[]string{"bench", "--progress", "sometimes"}, "invalid --progress"},
		{[]string{"bench", "--busy-poll", "-1ms"}, "--busy-poll must not be negative"},
		{[]string{"serve", "extra"}, `unexpected argument "extra"`},
		{[]string{"serve", "--max-packet", "100"}, "must be between 4096"},
		{[]string{"serve", "--log-level", "loud"}, "invalid --log-level"},
		{[]string{"ping", "a:1", "b:2"}, `unexpected argument "b:2"`},
		{[]string{"ping", "--count", "0", "127.0.0.1:1"}, "--count must be at least 1"},
		{[]string{"decode", "--hex", "a", "b"}, `unexpected argument "b"`},
		{[]string{"demo", "now"}, `unexpected argument "now"`},
	} {
		code, out, errOut := runCmd(t, tc.args...)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want 2; stderr %q", tc.args, code, errOut)
		}
		if !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: stderr %q lacks %q", tc.args, errOut, tc.want)
		}
		if out != "" {
			t.Errorf("%v: stdout %q, want nothing", tc.args, out)
		}
	}
}

func TestParseInterspersed(t *testing.T) {
	code, out, errOut := runCmd(t, "decode", writeFile(t, "v.hex", []byte(vectorHex)), "--hex")
	if code != 0 || !strings.Contains(out, "REQUEST") {
		t.Fatalf("flag after the argument: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "64": 64, "4K": 4096, "4k": 4096, "1M": 1 << 20, "2MiB": 2 << 20, "1G": 1 << 30, "10B": 10} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "K", "1.5M", "99999999999999999999G"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) succeeded", in)
		}
	}
}

func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for ~3s")
	}
	code, out, errOut := runCmd(t, "demo")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q\n%s", code, errOut, out)
	}
	mustContain(t, out, "p50", "p99.99", "max", "errors      0")
	m := regexp.MustCompile(`throughput  (\d+) req/s`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no throughput line:\n%s", out)
	}
	if n, _ := strconv.Atoi(m[1]); n <= 0 {
		t.Errorf("throughput %d req/s", n)
	}
}

func TestServePortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	for _, backend := range []string{"epoll", "net"} {
		code, out, errOut := runCmd(t, "serve", "--addr", addr, "--backend", backend)
		if code != exitFailure {
			t.Fatalf("%s: exit %d, want 1; stdout %q", backend, code, out)
		}
		want := "zw: listen " + addr + ": bind: address already in use\n"
		if errOut != want {
			t.Errorf("%s: stderr %q, want %q", backend, errOut, want)
		}
	}
}

// A second zw serve on the port of a first must fail too, although the
// epoll backend listens with SO_REUSEPORT.
func TestServeTwice(t *testing.T) {
	s := startServe(t, "--addr", "127.0.0.1:0")
	code, _, errOut := runCmd(t, "serve", "--addr", s.addr)
	if code != exitFailure || !strings.Contains(errOut, "address already in use") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

func TestBenchAgainstServe(t *testing.T) {
	s := startServe(t, "--addr", "127.0.0.1:0", "--loops", "2")

	// The table.
	code, out, errOut := runCmd(t, "bench", "--addr", s.addr, "--conns", "4", "--depth", "4",
		"--duration", "500ms", "--warmup", "100ms")
	if code != 0 {
		t.Fatalf("bench: exit %d, stderr %q\n%s", code, errOut, out)
	}
	mustContain(t, out, "4 conns × depth 4", "latency (µs)", "p99.9", "throughput", "MB/s", "errors      0")

	// --json, one object with the documented fields.
	code, out, errOut = runCmd(t, "bench", "--addr", s.addr, "--conns", "8", "--depth", "2", "--size", "1K",
		"--duration", "500ms", "--warmup", "100ms", "--json")
	if code != 0 {
		t.Fatalf("bench --json: exit %d, stderr %q", code, errOut)
	}
	var j map[string]any
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatalf("bench --json: %v\n%s", err, out)
	}
	for _, k := range []string{"requests", "errors", "rps", "mbps", "p50_us", "p90_us", "p99_us", "p999_us", "p9999_us",
		"max_us", "conns", "depth", "size", "duration_s", "rate"} {
		if _, ok := j[k]; !ok {
			t.Errorf("--json lacks %q: %s", k, out)
		}
	}
	if j["errors"].(float64) != 0 || j["requests"].(float64) <= 0 || j["rps"].(float64) <= 0 || j["size"].(float64) != 1024 {
		t.Errorf("--json: %s", out)
	}
	if p50, p99, mx := j["p50_us"].(float64), j["p99_us"].(float64), j["max_us"].(float64); p50 <= 0 || p50 > p99 || p99 > mx {
		t.Errorf("percentiles out of order: %s", out)
	}
	if want := j["rps"].(float64) * 2 * 1024 / 1e6; !near(j["mbps"].(float64), want) {
		t.Errorf("mbps %v, want rps×2×size/1e6 = %v", j["mbps"], want)
	}
	if strings.Count(out, "\n") != 1 {
		t.Errorf("--json printed more than one line:\n%s", out)
	}

	// Open loop, a plot of each kind, the progress line, the net backend, and
	// payloads of 0 bytes and of 100 KB.
	dir := t.TempDir()
	// Depth 16: a round trip slowed by a loaded machine must not hold the
	// pacer back, or the rate measured is the machine's, not the pacer's.
	code, out, errOut = runCmd(t, "bench", "--addr", s.addr, "--conns", "2", "--rate", "2000", "--depth", "16",
		"--duration", "1200ms", "--warmup", "100ms", "--plot", filepath.Join(dir, "lat.svg"), "--progress", "always")
	if code != 0 {
		t.Fatalf("open loop: exit %d, stderr %q", code, errOut)
	}
	mustContain(t, out, "open loop at 2000 req/s")
	mustContain(t, errOut, "req/s  p50 ")
	if m := regexp.MustCompile(`throughput  (\d+) req/s`).FindStringSubmatch(out); m == nil {
		t.Errorf("no throughput:\n%s", out)
	} else if n, _ := strconv.Atoi(m[1]); n < 1000 || n > 2500 {
		// Over the rate is the pacer's fault; under it by as much as half
		// can also be a stall of this process near the end of 1.2 s.
		t.Errorf("open loop at 2000 req/s measured %d req/s", n)
	}
	for _, args := range [][]string{
		{"--size", "0", "--backend", "net", "--plot", filepath.Join(dir, "lat.png")},
		{"--size", "100K", "--depth", "3", "--crc"},
		{"--busy-poll", "1ms"},
	} {
		code, out, errOut = runCmd(t, append([]string{"bench", "--addr", s.addr, "--conns", "2",
			"--duration", "300ms", "--warmup", "0s"}, args...)...)
		if code != 0 || !strings.Contains(out, "errors      0") {
			t.Fatalf("%v: exit %d, stderr %q\n%s", args, code, errOut, out)
		}
	}
	for _, f := range []string{"lat.svg", "lat.png"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() < 1000 {
			t.Errorf("plot %s: %v", f, err)
		}
	}

	if code := s.stop(t); code != 0 {
		t.Errorf("serve exited %d, stderr:\n%s", code, s.stderr)
	}
	mustContain(t, s.stderr.String(), "zw: shutting down", "zw: stopped")
}

func near(a, b float64) bool { return a > b*0.99-0.01 && a < b*1.01+0.01 }

func TestBenchOverUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "zw.sock")
	s := startServe(t, "--addr", "unix:"+path)
	if s.addr != "unix:"+path {
		t.Fatalf("listening on %q, want unix:%s", s.addr, path)
	}
	code, out, errOut := runCmd(t, "bench", "--addr", s.addr, "--conns", "2", "--depth", "4", "--duration", "300ms", "--warmup", "0s")
	if code != 0 || !strings.Contains(out, "errors      0") {
		t.Fatalf("exit %d, stderr %q\n%s", code, errOut, out)
	}
	if code, out, _ := runCmd(t, "ping", s.addr, "--count", "2", "--interval", "10ms"); code != 0 || !strings.Contains(out, "2 received") {
		t.Fatalf("ping: exit %d\n%s", code, out)
	}
}

func TestBenchUnreachable(t *testing.T) {
	addr := closedAddr(t)
	code, out, errOut := runCmd(t, "bench", "--addr", addr, "--duration", "100ms")
	if code != exitFailure || out != "" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	if !strings.HasPrefix(errOut, "zw: dial "+addr+": ") || !strings.Contains(errOut, "connection refused") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("stderr %q", errOut)
	}
}

func TestBenchPayloadTooLarge(t *testing.T) {
	s := startServe(t, "--addr", "127.0.0.1:0", "--max-packet", "8K")
	code, _, errOut := runCmd(t, "bench", "--addr", s.addr, "--size", "8K", "--duration", "100ms")
	if code != exitFailure || !strings.Contains(errOut, "exceeds the server's max_packet_size of 8192") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestPing(t *testing.T) {
	s := startServe(t, "--addr", "127.0.0.1:0")
	code, out, errOut := runCmd(t, "ping", s.addr, "--count", "3", "--interval", "10ms")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q\n%s", code, errOut, out)
	}
	mustContain(t, out, "PING "+s.addr, "pong 1: rtt ", "pong 3: rtt ", "3 sent, 3 received, 0% lost", "rtt min/avg/max/stddev = ")
	if code, out, _ := runCmd(t, "ping", "--addr", s.addr, "--count", "1"); code != 0 || !strings.Contains(out, "1 received") {
		t.Fatalf("--addr: exit %d\n%s", code, out)
	}

	addr := closedAddr(t)
	code, out, errOut = runCmd(t, "ping", addr, "--count", "1")
	if code != exitFailure || out != "" {
		t.Fatalf("closed port: exit %d, stdout %q", code, out)
	}
	if !strings.HasPrefix(errOut, "zw: ping: dial "+addr+": ") || !strings.Contains(errOut, "connection refused") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("closed port: stderr %q", errOut)
	}
}
