// Package plotting draws zw's latency charts with gonum.org/v1/plot. It is
// a package of its own so that only the zw command, never the library,
// depends on the plotting stack.
package plotting

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Point is one point of a latency-by-percentile curve.
type Point struct {
	Percentile float64 // in [0, 100)
	LatencyUS  float64 // microseconds
}

// Series is one named curve.
type Series struct {
	Name   string
	Points []Point
}

// LatencyByPercentile writes a chart of latency (y, µs) by percentile (x)
// to file, an SVG or PNG picture chosen by the name's extension. The x axis
// is 1/(1-p) on a log scale, labelled 0%, 90%, 99%, 99.9%, ..., as
// HdrHistogram's plots are, so that the tail gets as much room as the body.
func LatencyByPercentile(file, title string, series []Series) error {
	switch strings.ToLower(filepath.Ext(file)) {
	case ".svg", ".png":
	default:
		return fmt.Errorf("%s: the file name must end in .svg or .png", file)
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "percentile"
	p.Y.Label.Text = "latency (µs)"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = percentileTicks{}
	p.Y.Min = 0
	p.Y.Tick.Marker = plainTicks{}
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	p.Legend.Left = true

	colors := []color.Color{
		color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
		color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
		color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
		color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	}
	drawn := 0
	for i, s := range series {
		if len(s.Points) == 0 {
			continue
		}
		xys := make(plotter.XYs, len(s.Points))
		for j, pt := range s.Points {
			xys[j].X = 1 / (1 - pt.Percentile/100)
			xys[j].Y = pt.LatencyUS
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return err
		}
		l.Color = colors[i%len(colors)]
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(s.Name, l)
		drawn++
	}
	if drawn == 0 {
		return errors.New("no latencies were recorded")
	}
	p.X.Min = 1
	if p.X.Max < 10 {
		p.X.Max = 10
	}
	return p.Save(8*vg.Inch, 4.5*vg.Inch, file)
}

// percentileTicks marks 0%, 90%, 99%, 99.9%, ... at x = 1, 10, 100, ...
// with minor ticks at the percentiles between.
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

// plainTicks is plot.DefaultTicks with labels free of trailing zeros.
type plainTicks struct{}

func (plainTicks) Ticks(min, max float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(min, max)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = strconv.FormatFloat(ticks[i].Value, 'f', -1, 64)
		}
	}
	return ticks
}
