package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
	"github.com/zerowire/zerowire"
)

// scenario is one set of toxics on the path between the callers and the
// server.
type scenario struct {
	name   string
	toxics []string // toxiproxy toxics, as the JSON of its HTTP API
	// addAfter is how many calls complete before the toxics are added (0:
	// before the first call); removeAfter, when set, is how long they stay.
	addAfter    int
	removeAfter time.Duration
	deadline    time.Duration // of each call
	calls       int           // per goroutine; 0 means the suite's default
	maxPayload  int
	pause       time.Duration // between two calls of a goroutine, to spread the load over the toxic's life
	// allOK: the toxic delays or splits bytes but loses none, so every
	// call must succeed.
	allOK bool
	// goawayEvery, when set, makes the server close one of the proxied
	// connections with GOAWAY this often.
	goawayEvery time.Duration
}

func toxic(name, typ, stream string, attrs string) string {
	return fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":1,"attributes":{%s}}`, name, typ, stream, attrs)
}

func scenarios() []scenario {
	return []scenario{
		{
			name: "latency",
			toxics: []string{
				toxic("lat_down", "latency", "downstream", `"latency":20,"jitter":10`),
				toxic("lat_up", "latency", "upstream", `"latency":5,"jitter":5`),
			},
			deadline: 5 * time.Second, maxPayload: 64 << 10, allOK: true,
		},
		{
			name: "bandwidth",
			toxics: []string{
				toxic("bw_down", "bandwidth", "downstream", `"rate":2048`),
				toxic("bw_up", "bandwidth", "upstream", `"rate":2048`),
			},
			deadline: 5 * time.Second, maxPayload: 64 << 10, allOK: true,
		},
		{
			// Every packet cut into pieces of 1 to ~80 bytes with a pause
			// between pieces: headers, payloads and trailers split
			// everywhere. Fewer calls: 64 KiB in 40-byte pieces is slow.
			name: "slicer",
			toxics: []string{
				toxic("slice_down", "slicer", "downstream", `"average_size":40,"size_variation":39,"delay":20`),
				toxic("slice_up", "slicer", "upstream", `"average_size":40,"size_variation":39,"delay":20`),
			},
			deadline: 5 * time.Second, maxPayload: 64 << 10, allOK: true, calls: pick(25, 150),
		},
		{
			// Each connection is cut after so many bytes in one direction
			// or the other, wherever that falls: mostly mid-packet.
			name: "limit_data",
			toxics: []string{
				toxic("limit_down", "limit_data", "downstream", `"bytes":300000`),
				toxic("limit_up", "limit_data", "upstream", `"bytes":200000`),
			},
			deadline: 3 * time.Second, maxPayload: 64 << 10, pause: 5 * time.Millisecond,
		},
		{
			// Every connection, old or new, drops what its client sends
			// once the toxic is on and is reset (RST, both ways) 100 ms
			// later; new connections fail their handshake the same way,
			// until the toxic goes after 700 ms (3 s in the long suite).
			name: "reset_peer",
			toxics: []string{
				toxic("reset_up", "reset_peer", "upstream", `"timeout":100`),
			},
			addAfter: 40, removeAfter: pick(700*time.Millisecond, 3*time.Second), deadline: time.Second, maxPayload: 64 << 10, pause: 10 * time.Millisecond,
		},
		{
			// A black hole in the middle of the load: nothing reaches the
			// callers for a second (3 s in the long suite), then the toxic goes (toxiproxy closes
			// the connections it held) and calls succeed again.
			name: "timeout",
			toxics: []string{
				toxic("timeout_down", "timeout", "downstream", `"timeout":0`),
			},
			addAfter: 40, removeAfter: pick(time.Second, 3*time.Second), deadline: 400 * time.Millisecond, calls: pick(15, 60), maxPayload: 64 << 10,
		},
		{
			// Connections take 300 ms to close, and the server closes one
			// of them with GOAWAY every 50 ms.
			name: "slow_close+goaway",
			toxics: []string{
				toxic("slow_down", "slow_close", "downstream", `"delay":300`),
				toxic("slow_up", "slow_close", "upstream", `"delay":300`),
			},
			deadline: 3 * time.Second, maxPayload: 64 << 10, goawayEvery: 50 * time.Millisecond, pause: 10 * time.Millisecond,
		},
	}
}

// TestToxics runs each scenario: 8 goroutines (half through a Pool of two
// connections, half each with a Client of its own, redialed when lost, on
// both client engines)
// make calls with mixed payloads through a toxiproxy proxy to a server.
func TestToxics(t *testing.T) {
	for _, b := range serverBackends() {
		for _, sc := range scenarios() {
			t.Run(backendName(b)+"/"+sc.name, func(t *testing.T) { runScenario(t, b, sc) })
		}
	}
}

// trackingEcho echoes and keeps the IDs of the open connections.
type trackingEcho struct {
	echoHandler
	mu    sync.Mutex
	conns map[zerowire.ConnID]bool
}

func (h *trackingEcho) OnOpen(c *zerowire.Conn) {
	h.mu.Lock()
	h.conns[c.ID()] = true
	h.mu.Unlock()
}

func (h *trackingEcho) OnClose(c *zerowire.Conn, err error) {
	h.mu.Lock()
	delete(h.conns, c.ID())
	h.mu.Unlock()
}

func (h *trackingEcho) ids() []zerowire.ConnID {
	h.mu.Lock()
	defer h.mu.Unlock()
	var ids []zerowire.ConnID
	for id := range h.conns {
		ids = append(ids, id)
	}
	return ids
}

// newProxy starts a toxiproxy proxy from 127.0.0.1:0 to upstream, in this
// process.
func newProxy(t *testing.T, name, upstream string) *toxiproxy.Proxy {
	t.Helper()
	api := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	px := toxiproxy.NewProxy(api, name, "127.0.0.1:0", upstream)
	if err := px.Start(); err != nil {
		t.Fatal(err)
	}
	return px
}

func addToxics(t *testing.T, px *toxiproxy.Proxy, toxics []string) {
	for _, js := range toxics {
		if _, err := px.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
			t.Errorf("adding toxic %s: %v", js, err)
		}
	}
}

func runScenario(t *testing.T, b zerowire.Backend, sc scenario) {
	began := time.Now()
	checkLeaks := leakCheck(t)
	bufs := newPool(t)
	defer bufs.Close()
	h := &trackingEcho{conns: map[zerowire.ConnID]bool{}}
	srv, err := zerowire.NewServer(h, zerowire.Options{Backend: b, Pool: bufs, Logger: quiet(), Loops: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := srv.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	stopDirect := directEcho(t, srv.Addr().String())
	waitUntil(t, 5*time.Second, "the direct client's connection", func() bool { return len(h.ids()) == 1 })
	direct := h.ids()[0]

	px := newProxy(t, sc.name, srv.Addr().String())
	defer px.Stop()

	zp, err := zerowire.NewPool(zerowire.PoolOptions{
		Addrs: []string{px.Listen}, ConnsPerAddr: 2,
		DialTimeout: time.Second, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Client: zerowire.ClientOptions{PayloadCRC: true, Logger: quiet()},
	})
	if err != nil {
		t.Fatal(err)
	}
	poolClosed := false
	defer func() {
		if !poolClosed {
			zp.Close()
		}
	}()
	const goroutines = 8
	callers := make([]caller, goroutines)
	for g := range callers {
		if g%2 == 0 {
			callers[g] = poolCaller{zp}
		} else {
			// Odd goroutines: a Client each, with a PAYLOAD_CRC trailer on
			// one in two, on the portable engine the other.
			o := zerowire.ClientOptions{PayloadCRC: g%4 == 1, Logger: quiet()}
			if g%4 == 3 {
				o.Backend = zerowire.BackendNet
			}
			callers[g] = &clientCaller{addr: px.Listen, opts: o}
		}
	}
	ld := load{goroutines: goroutines, calls: sc.calls, deadline: sc.deadline, margin: time.Second, maxPayload: sc.maxPayload, pause: sc.pause}
	if ld.calls == 0 {
		ld.calls = pick(50, 250)
	}

	// The toxics: on before the load, or once addAfter calls are done.
	var done atomic.Int64
	loadOver := make(chan struct{})
	var ctl sync.WaitGroup
	var removedAt time.Time
	if sc.addAfter == 0 {
		addToxics(t, px, sc.toxics)
	}
	ctl.Add(1)
	go func() {
		defer ctl.Done()
		for sc.addAfter > 0 && done.Load() < int64(sc.addAfter) {
			select {
			case <-loadOver:
				return
			case <-time.After(time.Millisecond):
			}
		}
		if sc.addAfter > 0 {
			addToxics(t, px, sc.toxics)
		}
		if sc.removeAfter > 0 {
			select {
			case <-loadOver:
			case <-time.After(sc.removeAfter):
			}
			px.Toxics.ResetToxics(context.Background())
			removedAt = time.Now()
		}
	}()
	// The server's GOAWAYs, on proxied connections only.
	goaways := 0
	if sc.goawayEvery > 0 {
		ctl.Add(1)
		go func() {
			defer ctl.Done()
			tick := time.NewTicker(sc.goawayEvery)
			defer tick.Stop()
			for {
				select {
				case <-loadOver:
					return
				case <-tick.C:
				}
				ids := h.ids()
				rand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
				for _, id := range ids {
					if id != direct {
						if srv.CloseConn(id) == nil {
							goaways++
						}
						break
					}
				}
			}
		}()
	}

	var tl, poolTl, clientTl tally
	loadStart := time.Now()
	ld.run(t, &tl, []*tally{&poolTl, &clientTl}, callers, nil, &done)
	loadTime := time.Since(loadStart)
	close(loadOver)
	ctl.Wait()

	// The per-goroutine Clients close with the toxics still on: Close
	// lingers at most CloseLinger (2s) for the answers it is owed.
	closeStart := time.Now()
	for _, c := range callers {
		c.close()
	}
	if d := time.Since(closeStart); d > 4*time.Second {
		t.Errorf("closing the Clients under the toxics took %v", d)
	}

	// The path heals: the pool reconnects and calls succeed again.
	px.Toxics.ResetToxics(context.Background())
	healStart := time.Now()
	recovered := 0
	for recovered < 5 && time.Since(healStart) < 15*time.Second {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		payload := []byte(fmt.Sprint("heal ", recovered))
		r, err := zp.Call(ctx, payload)
		cancel()
		if err == nil {
			if string(r.Payload()) == string(payload) {
				recovered++
			}
			r.Release()
		} else {
			recovered = 0
		}
	}
	if recovered < 5 {
		t.Errorf("the pool did not recover within 15s of the toxics going")
	}
	healTime := time.Since(healStart)

	directOK := stopDirect()
	closeStart = time.Now()
	zp.Close()
	poolClosed = true
	poolCloseTime := time.Since(closeStart)
	px.Stop()
	// Every proxied connection is closed now: so must the server's be
	// (one that missed its peer's FIN would sit in CLOSE-WAIT:
	// TestFINWithLastBytesServer).
	if !pollUntil(5*time.Second, func() bool { return srv.Stats().Conns == 0 }) {
		open := srv.Stats().Conns
		t.Errorf("%d server connections still open 5s after the proxy closed every connection, %d of them in CLOSE-WAIT", open, closeWait(srv.Addr().(*net.TCPAddr).Port))
	} else if st := srv.Stats(); st.PartialBytes != 0 {
		t.Errorf("%d bytes of partial packets held with no connection open", st.PartialBytes)
	}
	st := srv.Stats()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	cancel()
	poolBack(t, bufs)

	tl.check(t, int64(ld.goroutines*ld.calls))
	if sc.allOK && tl.ok.Load() != tl.calls.Load() {
		t.Errorf("%s delays or splits bytes but loses none: every call should succeed", sc.name)
	}
	if tl.ok.Load() == 0 {
		t.Errorf("no call succeeded")
	}
	extra := ""
	if sc.goawayEvery > 0 {
		extra = fmt.Sprintf("; %d GOAWAYs from the server", goaways)
	}
	if !removedAt.IsZero() {
		extra += "; toxics removed mid-load"
	}
	t.Logf("%s: %s", sc.name, &tl)
	t.Logf("  through the Pool: %s", &poolTl)
	t.Logf("  with a Client each: %s", &clientTl)
	t.Logf("load %v, healed in %v, pool Close %v; direct client echoed %d times meanwhile; server accepted %d connections, sent %d ERRORs%s",
		loadTime.Round(time.Millisecond), healTime.Round(time.Millisecond), poolCloseTime.Round(time.Millisecond),
		directOK, st.Accepted, sumErrors(st), extra)
	checkLeaks()
	t.Logf("scenario took %v", time.Since(began).Round(time.Millisecond))
}

func sumErrors(st zerowire.Stats) uint64 {
	var n uint64
	for _, v := range st.ErrorsSent {
		n += v
	}
	return n
}

// waitUntil polls cond for up to d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func pollUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return true
}

// closeWait counts the sockets listening or connected on local port that
// are in CLOSE-WAIT: the peer has closed, this side has not.
func closeWait(port int) int {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return -1
	}
	n := 0
	suffix := fmt.Sprintf(":%04X", port)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && strings.HasSuffix(f[1], suffix) && f[3] == "08" {
			n++
		}
	}
	return n
}
