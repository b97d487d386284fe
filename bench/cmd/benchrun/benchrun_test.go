package main

import (
	"math"
	"strings"
	"testing"
)

func TestParseStatTicks(t *testing.T) {
	// The command name may hold spaces and parentheses.
	stat := "1234 (zw (serve) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 100 1000 200"
	got, err := parseStatTicks(stat)
	if err != nil || got != 325 {
		t.Fatalf("parseStatTicks = %d, %v; want 325", got, err)
	}
	if _, err := parseStatTicks("1234 (zw) S 1"); err == nil {
		t.Error("short stat: no error")
	}
}

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tzw\nVmPeak:\t  9999 kB\nVmRSS:\t    8192 kB\nThreads:\t3\n"
	if got, err := parseVmRSS(status); err != nil || got != 8192 {
		t.Fatalf("parseVmRSS = %d, %v; want 8192", got, err)
	}
	if _, err := parseVmRSS("Name:\tzw\n"); err == nil {
		t.Error("no VmRSS: no error")
	}
}

func TestParseStraceSummary(t *testing.T) {
	out := `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 60.00    0.006000           6      1000           write
 30.00    0.003000           3      1000        12 read
 10.00    0.001000          10       100           epoll_pwait
------ ----------- ----------- --------- --------- ----------------
100.00    0.010000           4      2100        12 total
`
	by, calls, errs := parseStraceSummary(out)
	if calls != 2100 || errs != 12 || by["read"] != 1000 || by["epoll_pwait"] != 100 || len(by) != 3 {
		t.Fatalf("got %v, %d calls, %d errors", by, calls, errs)
	}
	st := &straceResult{BySyscall: by, Calls: calls}
	if got := st.top(2); got != "read 48%, write 48%" {
		t.Errorf("top = %q", got)
	}
}

func TestMedianSpread(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median = %v", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Errorf("median of 4 = %v", m)
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing is not NaN")
	}
	if s := spread([]float64{90, 100, 110}); s != 20 {
		t.Errorf("spread = %v", s)
	}
	runs := []runResult{
		{Metrics: map[string]float64{"rps": 10}},
		{Metrics: map[string]float64{"rps": 30}, Failed: "boom"},
		{Metrics: map[string]float64{"rps": 20}},
	}
	if m := medians(runs)["rps"]; m != 15 {
		t.Errorf("medians leave failed runs out: got %v, want 15", m)
	}
}

// The table marks zerowire-epoll where another server leads, but not
// where only its busy-poll variant does, and gives every ratio.
func TestRenderMarks(t *testing.T) {
	sum := &summary{
		Settings: settings{Repeats: 1, Servers: []string{zwEpoll, zwBusy, "gnet"}},
		Scenarios: []*scenarioResult{
			{ID: 1, Title: "one", Servers: map[string]*serverResult{
				zwEpoll: {Median: map[string]float64{"p50_us": 10, "p99_us": 20, "p999_us": 30}},
				zwBusy:  {Median: map[string]float64{"p50_us": 5, "p99_us": 20, "p999_us": 30}},
				"gnet":  {Median: map[string]float64{"p50_us": 12, "p99_us": 15, "p999_us": 30}},
			}},
			{ID: 2, Title: "two", Servers: map[string]*serverResult{
				zwEpoll: {Median: map[string]float64{"rps": 100, "p99_us": 20}},
				"gnet":  {Median: map[string]float64{"rps": 80, "p99_us": 30}},
			}},
		},
	}
	md := renderMarkdown(sum)
	rows := map[string]string{}
	scen := ""
	for line := range strings.Lines(md) {
		if f := strings.Split(line, "|"); len(f) > 3 {
			if l := strings.TrimSpace(f[1]); l != "" {
				scen = l
			}
			rows[scen+"/"+strings.TrimSpace(f[2])] = line
		}
	}
	check := func(row, want string) {
		t.Helper()
		if !strings.Contains(rows[row], want) {
			t.Errorf("row %s: %q lacks %q\n%s", row, rows[row], want, md)
		}
	}
	check("1. one/p50 µs ↓", "| 10.0 |")        // only the busy-poll variant is faster: no mark
	check("1. one/p50 µs ↓", "**5.0** (0.50×)") // but it is the best value
	check("1. one/p99 µs ↓", "| 20.0 ⚠ |")      // gnet leads p99 of scenario 1
	check("1. one/p99 µs ↓", "gnet ⚠")
	check("1. one/p99.9 µs ↓", "| **30.0** |") // a tie: zerowire-epoll leads
	check("1. one/p99.9 µs ↓", "| zerowire-epoll |")
	check("2. two/req/s ↑", "| **100** |")
	check("2. two/req/s ↑", "80 (0.80×)")
	if !strings.Contains(md, "scenario 1, p99 µs: gnet 15.0 vs zerowire-epoll 20.0 (0.75×)") {
		t.Errorf("the list of rows zerowire-epoll does not lead lacks scenario 1's p99:\n%s", md)
	}
	if strings.Contains(md, "scenario 1, p50") {
		t.Errorf("p50 is listed as not led:\n%s", md)
	}
}

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags([]string{"--quick", "--scenarios", "5,1", "--servers", "gnet,zerowire-epoll", "--bin", "/x/bin"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.repeats != 1 || cfg.idle != 1000 || cfg.duration.Seconds() != 2 || cfg.strace {
		t.Errorf("--quick: %+v", cfg)
	}
	if want := []int{1, 2, 5}; len(cfg.scenarios) != 3 || cfg.scenarios[0] != 1 || cfg.scenarios[1] != 2 || cfg.scenarios[2] != 5 {
		t.Errorf("scenarios %v, want %v (5 needs 2)", cfg.scenarios, want)
	}
	if !strings.HasPrefix(cfg.out, "/x/results/") {
		t.Errorf("default out %q", cfg.out)
	}
	for _, bad := range [][]string{{"--servers", "nginx"}, {"--scenarios", "7"}, {"--repeats", "-1"}, {"--strace", "maybe"}} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestScenarioServers(t *testing.T) {
	all := allServers
	if got := scenarioByID(1).servers(all); len(got) != len(all) {
		t.Errorf("scenario 1 runs %v", got)
	}
	for _, s := range scenarioByID(3).servers(all) {
		if s == zwBusy {
			t.Error("the busy-poll variant runs scenario 3")
		}
	}
}

func TestParseCPUTimes(t *testing.T) {
	stat := "cpu  10 0 10 10 0 0 0 0 0 0\ncpu0 100 5 50 800 40 1 2 2 0 0\ncpu1 1 1 1 1 1 1 1 1 0 0\n"
	a := parseCPUTimes(stat, "cpu0")
	if !a.ok || a.busy != 160 || a.total != 1000 {
		t.Fatalf("cpu0 = %+v", a)
	}
	b := parseCPUTimes("cpu0 150 5 100 1000 40 1 2 2 0 0\n", "cpu0")
	if got, ok := b.busySince(a); !ok || got != 100.0/300 {
		t.Errorf("busySince = %v, %v", got, ok)
	}
	if parseCPUTimes(stat, "cpu7").ok {
		t.Error("cpu7 found")
	}
}
