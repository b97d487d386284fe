package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"runtime"
	"text/tabwriter"
	"time"

	"github.com/zerowire/zerowire"
	"github.com/zerowire/zerowire/cmd/zw/internal/plotting"
)

// The percentiles of the table and the JSON object.
var reportPercentiles = []struct {
	name string
	q    float64 // percent
}{{"p50", 50}, {"p90", 90}, {"p99", 99}, {"p99.9", 99.9}, {"p99.99", 99.99}}

func us(ns int64) float64 { return math.Round(float64(ns)) / 1e3 }

func (r *benchResult) mode() string {
	if r.Config.Rate > 0 {
		return fmt.Sprintf("open loop at %.0f req/s", r.Config.Rate)
	}
	return "closed loop"
}

// backend names the engine the clients ran on.
func (r *benchResult) backend() string {
	if r.Config.Backend == zerowire.BackendAuto {
		if runtime.GOOS == "linux" {
			return "epoll"
		}
		return "net"
	}
	return r.Config.Backend.String()
}

// writeTable prints the human-readable report.
func (r *benchResult) writeTable(w io.Writer) {
	cfg := &r.Config
	fmt.Fprintf(w, "%s: %d conns × depth %d, %d-byte payload, %s, %s after %s warmup (%s backend)\n\n",
		cfg.Addr, cfg.Conns, cfg.Depth, cfg.Size, r.mode(), r.Elapsed.Round(time.Millisecond), cfg.Warmup, r.backend())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "latency (µs)\t")
	for _, p := range reportPercentiles {
		fmt.Fprintf(tw, "%s\t", p.name)
	}
	fmt.Fprint(tw, "max\t\n\t")
	for _, p := range reportPercentiles {
		fmt.Fprintf(tw, "%.1f\t", us(r.Hist.ValueAtQuantile(p.q)))
	}
	fmt.Fprintf(tw, "%.1f\t\n", us(r.Hist.Max()))
	tw.Flush()
	fmt.Fprintf(w, "\nrequests    %d in %.2fs\n", r.Requests, r.Elapsed.Seconds())
	fmt.Fprintf(w, "throughput  %.0f req/s, %.2f MB/s (payload bytes both ways, 1 MB = 10^6 bytes)\n", r.RPS(), r.MBps())
	fmt.Fprintf(w, "errors      %d", r.Errors)
	if r.FirstErr != nil {
		fmt.Fprintf(w, " (first: %s)", oneLine(r.FirstErr))
	}
	fmt.Fprintln(w)
}

// benchJSON is the --json object. Latencies are in microseconds, mbps
// counts payload bytes both ways in 10^6 bytes per second.
type benchJSON struct {
	Addr      string  `json:"addr"`
	Backend   string  `json:"backend"`
	Conns     int     `json:"conns"`
	Depth     int     `json:"depth"`
	Size      int     `json:"size"`
	Rate      float64 `json:"rate"`
	DurationS float64 `json:"duration_s"`
	WarmupS   float64 `json:"warmup_s"`
	Requests  int64   `json:"requests"`
	Errors    uint64  `json:"errors"`
	FirstErr  string  `json:"first_error,omitempty"`
	RPS       float64 `json:"rps"`
	MBps      float64 `json:"mbps"`
	P50       float64 `json:"p50_us"`
	P90       float64 `json:"p90_us"`
	P99       float64 `json:"p99_us"`
	P999      float64 `json:"p999_us"`
	P9999     float64 `json:"p9999_us"`
	Max       float64 `json:"max_us"`
	Mean      float64 `json:"mean_us"`
}

func (r *benchResult) writeJSON(w io.Writer) error {
	h := r.Hist
	j := benchJSON{
		Addr: r.Config.Addr, Backend: r.backend(), Conns: r.Config.Conns, Depth: r.Config.Depth,
		Size: r.Config.Size, Rate: r.Config.Rate, DurationS: r.Elapsed.Seconds(), WarmupS: r.Config.Warmup.Seconds(),
		Requests: r.Requests, Errors: r.Errors, RPS: round3(r.RPS()), MBps: round3(r.MBps()),
		P50: us(h.ValueAtQuantile(50)), P90: us(h.ValueAtQuantile(90)), P99: us(h.ValueAtQuantile(99)),
		P999: us(h.ValueAtQuantile(99.9)), P9999: us(h.ValueAtQuantile(99.99)), Max: us(h.Max()),
		Mean: round3(h.Mean() / 1e3),
	}
	if r.FirstErr != nil {
		j.FirstErr = oneLine(r.FirstErr)
	}
	enc := json.NewEncoder(w)
	return enc.Encode(j)
}

func round3(x float64) float64 { return math.Round(x*1e3) / 1e3 }

// writePlot charts latency by percentile, as HdrHistogram's plotter does.
func writePlot(file string, r *benchResult) error {
	name := fmt.Sprintf("%d×%d, %d B, %s", r.Config.Conns, r.Config.Depth, r.Config.Size, r.mode())
	s := plotting.Series{Name: name, Points: percentilePoints(r)}
	title := fmt.Sprintf("zw bench %s: latency by percentile", r.Config.Addr)
	if err := plotting.LatencyByPercentile(file, title, []plotting.Series{s}); err != nil {
		return fmt.Errorf("bench: plot: %w", err)
	}
	return nil
}

// percentilePoints samples the latency distribution evenly on the
// 1/(1-p) scale, from p = 0 up to the last recorded value.
func percentilePoints(r *benchResult) []plotting.Point {
	h := r.Hist
	n := h.TotalCount()
	if n == 0 {
		return nil
	}
	var pts []plotting.Point
	top := math.Log10(float64(n)) // past 1-1/n every percentile is the max
	for k := 0.0; k < top; k += 0.02 {
		q := 100 * (1 - math.Pow(10, -k))
		pts = append(pts, plotting.Point{Percentile: q, LatencyUS: us(h.ValueAtQuantile(q))})
	}
	pts = append(pts, plotting.Point{Percentile: 100 * (1 - 1/float64(n)), LatencyUS: us(h.Max())})
	return pts
}
