package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/zerowire/zerowire"
)

// A metric the soak samples and checks for an upward trend.
type metric struct {
	name string
	unit string // "B" for bytes, "" for counts
	// floor is the absolute growth over the run a metric may show without
	// failing, whatever its mean: a few counts of connections or
	// goroutines caught mid-flight, a pool region or a GC cycle's worth of
	// memory.
	floor float64
	// checked is false for a metric reported but not judged (the Go heap,
	// which follows the GC's pacing rather than what is held).
	checked bool
	read    func(s *sampler) (float64, bool)
}

// sample is one reading of every metric, t seconds after the start.
type sample struct {
	t      float64
	values []float64 // NaN where a metric is unavailable (an external server)
}

type sampler struct {
	srv     *zerowire.Server // nil when the server is another process
	metrics []metric
	samples []sample
	start   time.Time
}

func newSampler(srv *zerowire.Server) *sampler {
	s := &sampler{srv: srv, start: time.Now()}
	s.metrics = []metric{
		{name: "rss", unit: "B", floor: 16 << 20, checked: true, read: func(*sampler) (float64, bool) {
			v, err := vmRSS()
			return float64(v), err == nil
		}},
		{name: "goroutines", floor: 16, checked: true, read: func(*sampler) (float64, bool) {
			return float64(runtime.NumGoroutine()), true
		}},
		{name: "fds", floor: 16, checked: true, read: func(*sampler) (float64, bool) {
			n, err := openFDs()
			return float64(n), err == nil
		}},
		{name: "pool_inuse", unit: "B", floor: 8 << 20, checked: true, read: func(s *sampler) (float64, bool) {
			if s.srv == nil {
				return 0, false
			}
			return float64(poolInUse(s.srv.Stats())), true
		}},
		{name: "conns", floor: 16, checked: true, read: func(s *sampler) (float64, bool) {
			if s.srv == nil {
				return 0, false
			}
			return float64(s.srv.Stats().Conns), true
		}},
		{name: "heap_inuse", unit: "B", read: func(*sampler) (float64, bool) {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			return float64(ms.HeapInuse), true
		}},
	}
	return s
}

// take records one sample of every metric.
func (s *sampler) take() sample {
	sm := sample{t: time.Since(s.start).Seconds(), values: make([]float64, len(s.metrics))}
	for i, m := range s.metrics {
		v, ok := m.read(s)
		if !ok {
			v = math.NaN()
		}
		sm.values[i] = v
	}
	s.samples = append(s.samples, sm)
	return sm
}

func poolInUse(st zerowire.Stats) int64 {
	var n int64
	for _, c := range st.Pool.Classes {
		n += c.InUseBytes
	}
	return n
}

// vmRSS reads this process's resident set size from /proc/self/status.
func vmRSS() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/self/status")
}

func openFDs() (int, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	return len(ents), nil
}

// trend is the verdict on one metric over the samples after warm-up.
type trend struct {
	metric                metric
	n                     int     // samples judged
	first, last, min, max float64 // over every sample, warm-up included
	mean                  float64 // over the samples judged
	slope                 float64 // least-squares, units per second
	growth                float64 // slope times the run's duration
	tolerance             float64 // max(10% of mean, floor)
	failed                bool
}

// warmupFraction is the share of the run left out of the judgement: pools
// map their regions, the GC finds its pace and the connection count
// settles in the first seconds, and that climb is not a leak.
const warmupFraction = 0.2

// judge fits a least-squares line y = a + b·t through the samples taken
// after warm-up and projects the growth it implies over the whole run,
// b × duration. A metric fails when that projection exceeds both 10% of
// its mean over the same samples and its absolute floor.
//
// Why this rule: a leak shows as a steady slope, and the fit sees a slope
// through noise that a first-versus-last comparison would mistake or miss
// (connections and goroutines jump by dozens from one second to the next
// as connections open and close). Projecting over the run turns the slope
// into a size that can be compared with the metric's own level: 10% of the
// mean is a leak that would double the metric in ten runs. The floor keeps
// small absolute steps from failing a metric whose mean is small: a
// handful of connections caught mid-handshake, or one more pool region
// mapped by a burst of large payloads, is not a trend.
func judge(ms []metric, samples []sample, duration time.Duration) []trend {
	skip := int(math.Ceil(float64(len(samples)) * warmupFraction))
	out := make([]trend, len(ms))
	for i, m := range ms {
		tr := trend{metric: m, min: math.Inf(1), max: math.Inf(-1)}
		var ts, ys []float64
		seen := false
		for k, s := range samples {
			v := s.values[i]
			if math.IsNaN(v) {
				continue
			}
			if !seen {
				tr.first, seen = v, true
			}
			tr.last = v
			tr.min = math.Min(tr.min, v)
			tr.max = math.Max(tr.max, v)
			if k >= skip {
				ts = append(ts, s.t)
				ys = append(ys, v)
			}
		}
		tr.n = len(ys)
		if tr.n == 0 {
			tr.first, tr.last, tr.min, tr.max, tr.mean = math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN()
			out[i] = tr
			continue
		}
		tr.mean, tr.slope = fit(ts, ys)
		tr.growth = tr.slope * duration.Seconds()
		tr.tolerance = math.Max(0.10*tr.mean, m.floor)
		tr.failed = m.checked && tr.n >= 3 && tr.growth > tr.tolerance
		out[i] = tr
	}
	return out
}

// fit returns the mean of ys and the least-squares slope of ys over ts.
func fit(ts, ys []float64) (mean, slope float64) {
	n := float64(len(ts))
	var st, sy float64
	for i := range ts {
		st += ts[i]
		sy += ys[i]
	}
	mt, my := st/n, sy/n
	var sxy, sxx float64
	for i := range ts {
		dt := ts[i] - mt
		sxy += dt * (ys[i] - my)
		sxx += dt * dt
	}
	if sxx == 0 {
		return my, 0
	}
	return my, sxy / sxx
}

func human(v float64, unit string) string {
	if math.IsNaN(v) {
		return "-"
	}
	if unit != "B" {
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	a := math.Abs(v)
	switch {
	case a >= 1<<30:
		return fmt.Sprintf("%.2fGiB", v/(1<<30))
	case a >= 1<<20:
		return fmt.Sprintf("%.1fMiB", v/(1<<20))
	case a >= 1<<10:
		return fmt.Sprintf("%.1fKiB", v/(1<<10))
	}
	return fmt.Sprintf("%.0fB", v)
}

// report writes one line per metric and returns whether any failed.
func report(w io.Writer, trs []trend) (failed bool) {
	fmt.Fprintf(w, "%-11s %10s %10s %10s %10s %10s %12s %12s %10s  %s\n",
		"metric", "first", "last", "min", "max", "mean", "slope/min", "growth/run", "tolerance", "verdict")
	for _, tr := range trs {
		u := tr.metric.unit
		verdict := "ok"
		switch {
		case tr.n == 0:
			verdict = "n/a"
		case !tr.metric.checked:
			verdict = "reported"
		case tr.n < 3:
			verdict = "too few samples"
		case tr.failed:
			verdict = "TRENDS UP"
			failed = true
		}
		slope, growth, tol := tr.slope*60, tr.growth, tr.tolerance
		if tr.n == 0 {
			slope, growth, tol = math.NaN(), math.NaN(), math.NaN()
		}
		fmt.Fprintf(w, "%-11s %10s %10s %10s %10s %10s %12s %12s %10s  %s\n", tr.metric.name,
			human(tr.first, u), human(tr.last, u), human(tr.min, u), human(tr.max, u), human(tr.mean, u),
			human(slope, u), human(growth, u), human(tol, u), verdict)
	}
	return failed
}
