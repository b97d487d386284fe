// Command plotcmp draws the latency-by-percentile curves of several
// `zw bench --json` results on one chart, one curve per server, so that
// the servers of the comparison (run.sh) can be read side by side.
//
//	plotcmp --out latency.svg --title "1 conn × 1, 64 B" NAME=FILE.json [NAME=FILE.json ...]
//
// The chart's x axis is 1/(1-p) on a log scale, labelled 0%, 90%, 99%,
// 99.9%, ..., as HdrHistogram's plots (and `zw bench --plot`) are; the y
// axis is the latency in µs, on a log scale so that a server's body and
// tail both stay readable next to another's.
//
// When a JSON object has a "percentiles" array (objects with "percentile"
// and "latency_us"), its curve is drawn from it. `zw bench --json` has no
// such array today: it reports p50, p90, p99, p99.9, p99.99 and max, and
// those six points are drawn, with markers, joined by straight lines (the
// max at the percentile of the last of the run's requests, 1-1/requests).
// `zw bench --plot` draws each run's full curve on a chart of its own.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// result is the part of a `zw bench --json` object the chart needs.
type result struct {
	Requests    float64 `json:"requests"`
	P50         float64 `json:"p50_us"`
	P90         float64 `json:"p90_us"`
	P99         float64 `json:"p99_us"`
	P999        float64 `json:"p999_us"`
	P9999       float64 `json:"p9999_us"`
	Max         float64 `json:"max_us"`
	Percentiles []struct {
		Percentile float64 `json:"percentile"`
		LatencyUS  float64 `json:"latency_us"`
	} `json:"percentiles"`
}

// point is one point of a curve: a percentile in [0, 100) and a latency.
type point struct{ pct, us float64 }

type series struct {
	name   string
	points []point
}

func main() {
	out := flag.String("out", "latency.svg", "chart `file` (.svg or .png)")
	title := flag.String("title", "latency by percentile", "chart title")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: plotcmp --out FILE.svg [--title T] NAME=RESULT.json ...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	var all []series
	for _, arg := range flag.Args() {
		name, file, ok := strings.Cut(arg, "=")
		if !ok || name == "" || file == "" {
			fmt.Fprintf(os.Stderr, "plotcmp: %q is not NAME=FILE\n", arg)
			os.Exit(2)
		}
		s, err := load(name, file)
		if err != nil {
			fmt.Fprintf(os.Stderr, "plotcmp: %v\n", err)
			os.Exit(1)
		}
		all = append(all, s)
	}
	if err := draw1(*out, *title, all); err != nil {
		fmt.Fprintf(os.Stderr, "plotcmp: %v\n", err)
		os.Exit(1)
	}
}

func load(name, file string) (series, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return series{}, err
	}
	var r result
	if err := json.Unmarshal(b, &r); err != nil {
		return series{}, fmt.Errorf("%s: %w", file, err)
	}
	return series{name: name, points: points(r)}, nil
}

// points is the curve of r: its percentile array when it has one, else
// its summary percentiles. Points with no latency are left out.
func points(r result) []point {
	var pts []point
	if len(r.Percentiles) > 0 {
		for _, p := range r.Percentiles {
			if p.LatencyUS > 0 && p.Percentile >= 0 && p.Percentile < 100 {
				pts = append(pts, point{p.Percentile, p.LatencyUS})
			}
		}
		return pts
	}
	for _, p := range []point{{50, r.P50}, {90, r.P90}, {99, r.P99}, {99.9, r.P999}, {99.99, r.P9999}} {
		if p.us > 0 {
			pts = append(pts, p)
		}
	}
	if r.Max > 0 {
		pts = append(pts, point{maxPercentile(r.Requests), r.Max})
	}
	return pts
}

// maxPercentile places the max at the percentile of the last request,
// 100(1-1/n), and at least just past p99.99 so the curve stays ordered.
func maxPercentile(n float64) float64 {
	p := 99.999
	if n > 1e5 {
		p = 100 * (1 - 1/n)
	}
	return p
}

var colors = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, // blue
	color.RGBA{R: 0x17, G: 0xbe, B: 0xcf, A: 0xff}, // cyan
	color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff}, // purple
	color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}, // red
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, // green
	color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}, // orange
	color.RGBA{R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff}, // grey
}

// known keeps each server of the comparison in the same color and shape
// on every chart, whichever of them a chart holds.
var known = map[string]int{
	"zerowire-epoll": 0, "zerowire-epoll+busypoll": 1, "zerowire-net": 2,
	"gnet": 3, "netpoll": 4, "stdnet": 5,
}

var shapes = []draw.GlyphDrawer{
	draw.CircleGlyph{}, draw.SquareGlyph{}, draw.TriangleGlyph{}, draw.PlusGlyph{},
	draw.CrossGlyph{}, draw.RingGlyph{}, draw.BoxGlyph{}, draw.PyramidGlyph{},
}

func draw1(file, title string, all []series) error {
	switch strings.ToLower(filepath.Ext(file)) {
	case ".svg", ".png":
	default:
		return fmt.Errorf("%s: the file name must end in .svg or .png", file)
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "percentile"
	p.Y.Label.Text = "latency (µs, log scale)"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = percentileTicks{}
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = latencyTicks{}
	p.Add(plotter.NewGrid())
	// Latency grows with the percentile, so the top left, low
	// percentiles at high latencies, is where no curve goes; the y axis
	// gets headroom for it below.
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.XOffs = vg.Points(10)
	p.Legend.YOffs = -vg.Points(40)

	drawn := 0
	lo, hi := math.Inf(1), 0.0
	for i, s := range all {
		if len(s.points) == 0 {
			fmt.Fprintf(os.Stderr, "plotcmp: %s has no latencies; left out\n", s.name)
			continue
		}
		xys := make(plotter.XYs, len(s.points))
		for j, pt := range s.points {
			xys[j].X = 1 / (1 - pt.pct/100)
			xys[j].Y = pt.us
			lo, hi = min(lo, pt.us), max(hi, pt.us)
		}
		l, sc, err := plotter.NewLinePoints(xys)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		k := i
		if j, ok := known[s.name]; ok {
			k = j
		}
		c := colors[k%len(colors)]
		l.Color = c
		l.Width = vg.Points(1.5)
		sc.Color = c
		sc.Shape = shapes[k%len(shapes)]
		sc.Radius = vg.Points(2.5)
		p.Add(l, sc)
		p.Legend.Add(s.name, l, sc)
		drawn++
	}
	if drawn == 0 {
		return errors.New("no latencies to draw")
	}
	p.X.Min = 1
	// Room on the right for the last percentile's label.
	p.X.Max = max(p.X.Max*3, 10)
	p.Y.Min = math.Pow(10, math.Floor(math.Log10(lo)))
	p.Y.Max = math.Pow(10, math.Ceil(math.Log10(hi*3)))
	return p.Save(8*vg.Inch, 4.5*vg.Inch, file)
}

// percentileTicks marks 0%, 90%, 99%, 99.9%, ... at x = 1, 10, 100, ...
type percentileTicks struct{}

func (percentileTicks) Ticks(min, max float64) []plot.Tick {
	var ticks []plot.Tick
	for k := 0; math.Pow(10, float64(k)) <= max*1.0001; k++ {
		x := math.Pow(10, float64(k))
		ticks = append(ticks, plot.Tick{Value: x, Label: percentLabel(k)})
		for m := 2; m < 10 && x*float64(m) <= max; m++ {
			ticks = append(ticks, plot.Tick{Value: x * float64(m)})
		}
	}
	return ticks
}

// percentLabel names the percentile at 1/(1-p) = 10^k: 0%, 90%, 99%, ...
func percentLabel(k int) string {
	if k == 0 {
		return "0%"
	}
	p := 100 * (1 - math.Pow(10, -float64(k)))
	return strconv.FormatFloat(p, 'f', max(k-2, 0), 64) + "%"
}

// latencyTicks labels 1, 2, 5 of each decade on the log latency axis.
type latencyTicks struct{}

func (latencyTicks) Ticks(min, max float64) []plot.Tick {
	var ticks []plot.Tick
	for d := math.Pow(10, math.Floor(math.Log10(min))); d <= max*1.0001; d *= 10 {
		for m := 1; m < 10; m++ {
			v := d * float64(m)
			if v < min*0.9999 || v > max*1.0001 {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || m == 2 || m == 5 {
				t.Label = strconv.FormatFloat(v, 'f', -1, 64)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}
