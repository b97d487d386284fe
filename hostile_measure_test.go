//go:build linux

package zerowire

// What TestHostilePeers measures while it runs: the process and the
// server, sampled by a monitor, and the latency of the well-behaved
// callers beside the hostile peers.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hostileSample is one reading of the process and the server.
type hostileSample struct{ rss, heap, pool, conns, refusing, partial int64 }

func (a hostileSample) max(b hostileSample) hostileSample {
	return hostileSample{max(a.rss, b.rss), max(a.heap, b.heap), max(a.pool, b.pool), max(a.conns, b.conns), max(a.refusing, b.refusing), max(a.partial, b.partial)}
}

// hostileMonitor keeps the peaks of the whole run and of the phase: RSS,
// Conns, Refusing and PartialBytes every 5 ms, the Go heap and the pool
// (whose Stats walk every slot) every 50 ms.
type hostileMonitor struct {
	s       *Server
	quit    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	all, ph hostileSample
}

func startHostileMonitor(s *Server) *hostileMonitor {
	m := &hostileMonitor{s: s, quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for k := 0; ; k++ {
			select {
			case <-m.quit:
				return
			case <-tick.C:
			}
			m.sample(k%10 == 0)
		}
	}()
	return m
}

func (m *hostileMonitor) sample(heavy bool) {
	x := hostileSample{rss: hostileRSS(), conns: m.s.stats.conns.Load(), refusing: m.s.stats.refusing.Load(), partial: m.s.stats.partialBytes.Load()}
	if heavy {
		x.heap, x.pool = hostileHeapInUse(), hostilePoolInUse(m.s.Stats())
	}
	m.mu.Lock()
	m.all, m.ph = m.all.max(x), m.ph.max(x)
	m.mu.Unlock()
}

// snapshot reads everything now, the Go heap with runtime.ReadMemStats.
func (m *hostileMonitor) snapshot() hostileSample {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st := m.s.Stats()
	return hostileSample{rss: hostileRSS(), heap: int64(ms.HeapInuse), pool: hostilePoolInUse(st), conns: st.Conns, refusing: st.Refusing, partial: st.PartialBytes}
}

// reset starts the run's peaks (all) or the phase's afresh; peak returns
// them.
func (m *hostileMonitor) reset(all bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if all {
		m.all = hostileSample{}
	}
	m.ph = hostileSample{}
}

func (m *hostileMonitor) peak(all bool) hostileSample {
	m.sample(true)
	m.mu.Lock()
	defer m.mu.Unlock()
	if all {
		return m.all
	}
	return m.ph
}

func (m *hostileMonitor) stop() {
	select {
	case <-m.quit:
	default:
		close(m.quit)
	}
	<-m.done
}

// hostileHeapInUse is runtime.MemStats.HeapInuse read from runtime/metrics,
// which does not stop the world as ReadMemStats does: sampled every 50 ms
// during the test, a stop would show in the neighbours' latency.
func hostileHeapInUse() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64() + s[1].Value.Uint64())
}

func hostilePoolInUse(st Stats) int64 {
	var n int64
	for _, c := range st.Pool.Classes {
		n += c.InUseBytes
	}
	return n
}

// hostileRSS is this process's resident set size, from /proc/self/status.
func hostileRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

func hostileMiB(b int64) string { return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20)) }

// hostileCallers are the well-behaved neighbours: each calls, sleeps a
// millisecond, and calls again, recording every latency.
type hostileCallers struct {
	quit     chan struct{}
	wg       sync.WaitGroup
	failures atomic.Int64
	mu       sync.Mutex
	lats     []hostileLat
	err      error // the first failure
}

type hostileLat struct {
	at time.Time
	d  time.Duration
}

func startHostileCallers(t *testing.T, addr string, k int) *hostileCallers {
	lc := &hostileCallers{quit: make(chan struct{})}
	for i := 0; i < k; i++ {
		cl, err := Dial(context.Background(), "tcp", addr, &ClientOptions{Backend: BackendEpoll, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		lc.wg.Add(1)
		go func() {
			defer lc.wg.Done()
			defer cl.Close()
			payload := []byte("a well-behaved neighbour's call, 64 bytes long, padded to it...")
			var mine []hostileLat
			for {
				select {
				case <-lc.quit:
					lc.mu.Lock()
					lc.lats = append(lc.lats, mine...)
					lc.mu.Unlock()
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				start := time.Now()
				resp, err := cl.Call(ctx, payload)
				d := time.Since(start)
				cancel()
				if err != nil {
					if lc.failures.Add(1) == 1 {
						lc.mu.Lock()
						lc.err = err
						lc.mu.Unlock()
					}
					time.Sleep(10 * time.Millisecond)
					continue
				}
				resp.Release()
				mine = append(mine, hostileLat{start, d})
				time.Sleep(time.Millisecond)
			}
		}()
	}
	return lc
}

func (lc *hostileCallers) stop() {
	select {
	case <-lc.quit:
	default:
		close(lc.quit)
	}
	lc.wg.Wait()
}

func (lc *hostileCallers) firstErr() error {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return lc.err
}

// between returns the latencies of calls started in [from, to), in order
// of their start. Call it after stop.
func (lc *hostileCallers) between(from, to time.Time) []hostileLat {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	var out []hostileLat
	for _, l := range lc.lats {
		if !l.at.Before(from) && l.at.Before(to) {
			out = append(out, l)
		}
	}
	slices.SortFunc(out, func(a, b hostileLat) int { return a.at.Compare(b.at) })
	return out
}

func hostileP99(ls []hostileLat) time.Duration {
	if len(ls) == 0 {
		return 0
	}
	ds := make([]time.Duration, len(ls))
	for i, l := range ls {
		ds[i] = l.d
	}
	slices.Sort(ds)
	return ds[(len(ds)*99)/100]
}

// hostileWindowP99s splits ls (ordered by start) into k windows of equal counts
// and returns each window's p99.
func hostileWindowP99s(ls []hostileLat, k int) []time.Duration {
	var out []time.Duration
	for i := 0; i < k; i++ {
		w := ls[i*len(ls)/k : (i+1)*len(ls)/k]
		if len(w) > 0 {
			out = append(out, hostileP99(w).Round(time.Microsecond))
		}
	}
	return out
}

func hostileMedian(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
