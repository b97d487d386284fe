package plotting

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPercentLabels(t *testing.T) {
	want := []string{"0%", "90%", "99%", "99.9%", "99.99%", "99.999%"}
	for k, w := range want {
		if got := percentLabel(k); got != w {
			t.Errorf("percentLabel(%d) = %q, want %q", k, got, w)
		}
	}
	var labels []string
	for _, tk := range (percentileTicks{}).Ticks(1, 1000) {
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	if got := strings.Join(labels, " "); got != "0% 90% 99% 99.9%" {
		t.Errorf("major ticks up to 1000: %s", got)
	}
}

func TestLatencyByPercentile(t *testing.T) {
	dir := t.TempDir()
	s := []Series{{Name: "a", Points: []Point{{0, 10}, {50, 12}, {90, 15}, {99, 30}, {99.9, 80}}}}
	for _, f := range []string{"a.svg", "a.png"} {
		p := filepath.Join(dir, f)
		if err := LatencyByPercentile(p, "t", s); err != nil {
			t.Fatal(err)
		}
		if st, err := os.Stat(p); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	if err := LatencyByPercentile(filepath.Join(dir, "a.gif"), "t", s); err == nil {
		t.Error("a .gif file was accepted")
	}
	if err := LatencyByPercentile(filepath.Join(dir, "b.svg"), "t", []Series{{Name: "empty"}}); err == nil {
		t.Error("a chart without points was drawn")
	}
}
