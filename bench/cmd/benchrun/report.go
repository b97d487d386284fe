package main

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// summary is results.json.
type summary struct {
	Machine   machine           `json:"machine"`
	Settings  settings          `json:"settings"`
	Started   string            `json:"started"`
	LoadAvg   string            `json:"loadavg_at_start"`
	Elapsed   string            `json:"elapsed"`
	Rate5     rate5Info         `json:"scenario5_rate"`
	Scenarios []*scenarioResult `json:"scenarios"`
}

type settings struct {
	Duration         string   `json:"duration"`
	Warmup           string   `json:"warmup"`
	Repeats          int      `json:"repeats"`
	IdleConns        int      `json:"idle_conns"`
	Servers          []string `json:"servers"`
	Scenarios        []int    `json:"scenarios"`
	ServerCPU        string   `json:"server_cpu"`
	LoadCPU          string   `json:"load_cpu"`
	ServerGOMAXPROCS int      `json:"server_gomaxprocs"`
	Quick            bool     `json:"quick"`
}

type rate5Info struct {
	Rate float64 `json:"rate"`
	From string  `json:"from"`
}

type scenarioResult struct {
	ID      int                      `json:"id"`
	Title   string                   `json:"title"`
	Rate    float64                  `json:"rate,omitempty"`
	Plot    string                   `json:"plot,omitempty"`
	Servers map[string]*serverResult `json:"servers"`
}

type serverResult struct {
	Median map[string]float64 `json:"median"`
	Runs   []runResult        `json:"runs"`
	Strace *straceResult      `json:"strace,omitempty"`
}

// runResult is one run of one scenario against one server.
type runResult struct {
	Repeat     int                `json:"repeat"`
	Metrics    map[string]float64 `json:"metrics"`
	Errors     float64            `json:"errors"`
	FirstError string             `json:"first_error,omitempty"`
	Failed     string             `json:"failed,omitempty"`
	ServerExit string             `json:"server_exit,omitempty"`
	Note       string             `json:"note,omitempty"`
	LoadAvg    string             `json:"loadavg_at_start"`
	JSON       string             `json:"json,omitempty"`
	Plot       string             `json:"plot,omitempty"`
}

func (s *summary) scenario(id int) *scenarioResult {
	for _, r := range s.Scenarios {
		if r.ID == id {
			return r
		}
	}
	return nil
}

// brief is a run's one-line account for the progress log.
func (rr runResult) brief(sc *scenario) string {
	if rr.Failed != "" {
		return "FAILED: " + rr.Failed
	}
	var parts []string
	for _, m := range sc.metrics {
		if v, ok := rr.Metrics[m.key]; ok {
			parts = append(parts, m.label+" "+format(v, m.prec))
		}
	}
	if rr.Errors > 0 {
		parts = append(parts, fmt.Sprintf("%.0f errors (first: %s)", rr.Errors, rr.FirstError))
	}
	if rr.ServerExit != "" {
		parts = append(parts, "server exit: "+rr.ServerExit)
	}
	return strings.Join(parts, ", ")
}

// medians is the median of each metric over the runs that did not fail.
func medians(runs []runResult) map[string]float64 {
	vals := map[string][]float64{}
	for _, r := range runs {
		if r.Failed != "" {
			continue
		}
		for k, v := range r.Metrics {
			vals[k] = append(vals[k], v)
		}
	}
	out := map[string]float64{}
	for k, v := range vals {
		out[k] = median(v)
	}
	return out
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// spread is (max-min)/median of the values, in percent.
func spread(v []float64) float64 {
	if len(v) < 2 {
		return 0
	}
	m := median(v)
	if m == 0 {
		return 0
	}
	return 100 * (slices.Max(v) - slices.Min(v)) / math.Abs(m)
}

// machine is the description at the top of results.md.
type machine struct {
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	Kernel    string `json:"kernel"`
	Go        string `json:"go"`
	Commit    string `json:"commit"`
	TreeDirty bool   `json:"tree_dirty"`
}

func describeMachine() machine {
	m := machine{CPU: "unknown", Cores: runtime.NumCPU(), Go: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		cores := 0
		for line := range strings.Lines(string(b)) {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			switch strings.TrimSpace(k) {
			case "model name":
				m.CPU = strings.TrimSpace(v)
			case "processor":
				cores++
			}
		}
		if cores > 0 {
			m.Cores = cores
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("go", "version").Output(); err == nil {
		m.Go = strings.TrimPrefix(strings.TrimSpace(string(out)), "go version ")
	}
	if out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
		if out, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil {
			m.TreeDirty = len(strings.TrimSpace(string(out))) > 0
		}
	}
	return m
}

func (m machine) line() string {
	return fmt.Sprintf("machine: %s, %d cores, kernel %s, %s", m.CPU, m.Cores, m.Kernel, m.Go)
}

// renderMarkdown is results.md: the machine, the settings, the table of
// medians with each server's ratio to zerowire-epoll, the run-to-run
// spread, strace's counts, and the charts.
func renderMarkdown(s *summary) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := s.Machine
	p("# zerowire against its peers\n\n")
	p("- CPU: %s, %d cores; kernel %s; %s\n", m.CPU, m.Cores, m.Kernel, m.Go)
	if m.Commit != "" {
		dirty := ""
		if m.TreeDirty {
			dirty = " (the work tree had uncommitted changes)"
		}
		p("- zerowire built from commit %s%s\n", m.Commit, dirty)
	}
	st := s.Settings
	p("- Every server ran pinned to CPU %s with **GOMAXPROCS=1, since it has one core**; the load (zw bench, idlehold) ran pinned to CPU %s, zw bench with --busy-poll %v (its loop spins between answers, so the generator's own wake-ups stay out of the round trips). "+
		"A fresh server for every run; every server got the same load, sizes and pinning.\n", st.ServerCPU, st.LoadCPU, loadBusyPoll)
	p("- %d run(s) of %s (after a %s warmup) per scenario and server, the servers taking turns; the median of each metric is shown. Scenario 6 holds %d idle connections. Started %s, took %s.\n",
		st.Repeats, st.Duration, st.Warmup, st.IdleConns, s.Started, s.Elapsed)
	if s.LoadAvg != "" {
		p("- The machine is shared: its load average (1, 5, 15 min) was %s when the run started. Scenario 3 shows how busy the server's CPU was with anything but the server.\n", s.LoadAvg)
	}
	if s.Rate5.Rate > 0 {
		p("- Scenario 5 (open loop, latency from each request's intended send time) ran every server at %.0f req/s: %s.\n", s.Rate5.Rate, s.Rate5.From)
	}
	p("\n")

	servers := st.Servers
	p("| scenario | metric |")
	for _, name := range servers {
		p(" %s |", name)
	}
	p(" leader |\n|---|---|")
	for range servers {
		p("--:|")
	}
	p("---|\n")
	var notes []string
	var behind []string
	for _, res := range s.Scenarios {
		sc := scenarioByID(res.ID)
		title := res.Title
		if sc.idle {
			title = fmt.Sprintf("%s (%d)", sc.title, st.IdleConns)
		}
		for mi, mt := range sc.metrics {
			cell := map[string]string{}
			vals := map[string]float64{}
			for _, name := range servers {
				sr := res.Servers[name]
				if sr == nil {
					continue
				}
				v, ok := sr.Median[mt.key]
				if !ok || math.IsNaN(v) {
					cell[name] = "failed"
					continue
				}
				vals[name] = v
			}
			leader, _ := bestOf(vals, mt, nil)
			peerBest, peerV := bestOf(vals, mt, []string{reference, zwBusy})
			ref, haveRef := vals[reference]
			refBehind := !mt.info && haveRef && peerBest != "" && better(peerV, ref, mt)
			for name, v := range vals {
				c := format(v, mt.prec)
				if !mt.info && name == leader && len(vals) > 1 {
					c = "**" + c + "**"
				}
				if name != reference && haveRef && ref != 0 {
					c += fmt.Sprintf(" (%.2f×)", v/ref)
				}
				if name == reference && refBehind {
					c += " ⚠"
				}
				cell[name] = c
			}
			label := ""
			if mi == 0 {
				label = fmt.Sprintf("%d. %s", res.ID, title)
			}
			arrow := " ↓"
			if mt.higher {
				arrow = " ↑"
			}
			if mt.info {
				arrow = ""
			}
			p("| %s | %s%s |", label, mt.label, arrow)
			for _, name := range servers {
				c, ok := cell[name]
				if !ok {
					c = "—"
				}
				p(" %s |", c)
			}
			switch {
			case mt.info || leader == "":
				p(" |\n")
			case refBehind:
				p(" %s ⚠ |\n", peerBest)
				behind = append(behind, fmt.Sprintf("scenario %d, %s: %s %s vs zerowire-epoll %s (%.2f×)",
					res.ID, mt.label, peerBest, format(peerV, mt.prec), format(ref, mt.prec), peerV/ref))
			default:
				p(" %s |\n", leader)
			}
		}
		for _, name := range servers {
			sr := res.Servers[name]
			if sr == nil {
				continue
			}
			for _, r := range sr.Runs {
				switch {
				case r.Failed != "":
					notes = append(notes, fmt.Sprintf("scenario %d, %s, run %d failed: %s", res.ID, name, r.Repeat, r.Failed))
				case r.Errors > 0:
					notes = append(notes, fmt.Sprintf("scenario %d, %s, run %d: %.0f errors (first: %s)", res.ID, name, r.Repeat, r.Errors, r.FirstError))
				}
				if r.ServerExit != "" {
					notes = append(notes, fmt.Sprintf("scenario %d, %s, run %d: server exit: %s", res.ID, name, r.Repeat, r.ServerExit))
				}
			}
		}
	}
	p("\n↑ higher is better, ↓ lower is better; (r×) is the server's value ÷ zerowire-epoll's; the best value of a row is in bold. " +
		"⚠ marks a row where zerowire-epoll does not lead: a server other than zerowire-epoll and its busy-poll variant did better. " +
		"Rows without an arrow are context, not a contest. Scenario 3's server CPU is utime+stime from /proc/PID/stat over the measured time ÷ wall time; " +
		"req/s per server core = req/s ÷ that share. Scenario 6's RSS per connection = (VmRSS with the connections held − VmRSS before) ÷ connections.\n\n")
	if len(behind) > 0 {
		p("**zerowire-epoll does not lead in:**\n\n")
		for _, l := range behind {
			p("- %s\n", l)
		}
		p("\n")
	} else {
		p("zerowire-epoll leads every row.\n\n")
	}
	if len(notes) > 0 {
		p("Failures and errors:\n\n")
		for _, n := range notes {
			p("- %s\n", n)
		}
		p("\n")
	}

	if st.Repeats > 1 {
		renderSpread(&b, s)
	}
	renderStrace(&b, s)
	for _, id := range []int{1, 5} {
		if res := s.scenario(id); res != nil && res.Plot != "" {
			p("![scenario %d latency by percentile](%s)\n\n", id, res.Plot)
		}
	}
	if s.scenario(1) != nil || s.scenario(5) != nil {
		p("The charts are drawn from the medians of p50, p90, p99, p99.9, p99.99 and max (zw bench --json has no full percentile curve); each run's own full curve is in raw/*.svg.\n")
	}
	return b.String()
}

// bestOf is the server with the best value of vals for mt, leaving out
// the names in except; "" when none.
func bestOf(vals map[string]float64, mt metric, except []string) (string, float64) {
	best, bv := "", 0.0
	names := make([]string, 0, len(vals))
	for k := range vals {
		names = append(names, k)
	}
	// On a tie the reference leads, then the first name in sort order.
	slices.SortFunc(names, func(a, b string) int {
		switch {
		case a == b:
			return 0
		case a == reference:
			return -1
		case b == reference:
			return 1
		}
		return strings.Compare(a, b)
	})
	for _, name := range names {
		if slices.Contains(except, name) {
			continue
		}
		if v := vals[name]; best == "" || better(v, bv, mt) {
			best, bv = name, v
		}
	}
	return best, bv
}

// better reports whether a is strictly better than b for mt.
func better(a, b float64, mt metric) bool {
	if mt.higher {
		return a > b
	}
	return a < b
}

func renderSpread(b *strings.Builder, s *summary) {
	servers := s.Settings.Servers
	fmt.Fprintf(b, "Run-to-run spread, (max − min) ÷ median over the %d runs, to judge which differences the noise of this machine can explain:\n\n| scenario | metric |", s.Settings.Repeats)
	for _, name := range servers {
		fmt.Fprintf(b, " %s |", name)
	}
	b.WriteString("\n|---|---|")
	for range servers {
		b.WriteString("--:|")
	}
	b.WriteString("\n")
	for _, res := range s.Scenarios {
		sc := scenarioByID(res.ID)
		for mi, mt := range sc.metrics {
			if mt.info {
				continue
			}
			label := ""
			if mi == 0 {
				label = strconv.Itoa(res.ID)
			}
			fmt.Fprintf(b, "| %s | %s |", label, mt.label)
			for _, name := range servers {
				sr := res.Servers[name]
				var v []float64
				if sr != nil {
					for _, r := range sr.Runs {
						if x, ok := r.Metrics[mt.key]; ok && r.Failed == "" {
							v = append(v, x)
						}
					}
				}
				if len(v) < 2 {
					b.WriteString(" — |")
				} else {
					fmt.Fprintf(b, " %.0f%% |", spread(v))
				}
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("\n")
}

func renderStrace(b *strings.Builder, s *summary) {
	res := s.scenario(3)
	if res == nil {
		return
	}
	traced := false
	for _, sr := range res.Servers {
		traced = traced || sr.Strace != nil
	}
	if !traced {
		return
	}
	b.WriteString("System calls on scenario 3, from `strace -c -f -p PID` attached to the server for a few seconds of one extra, unmeasured run " +
		"(strace slows every server down many times over, so only the calls per request mean something; requests are those answered while it was attached, estimated from that run's req/s):\n\n" +
		"| server | req/s under strace | syscalls per request | most made |\n|---|--:|--:|---|\n")
	for _, name := range s.Settings.Servers {
		sr := res.Servers[name]
		if sr == nil || sr.Strace == nil {
			continue
		}
		st := sr.Strace
		if st.Failed != "" {
			fmt.Fprintf(b, "| %s | | | failed: %s |\n", name, st.Failed)
			continue
		}
		fmt.Fprintf(b, "| %s | %.0f | %.3f | %s |\n", name, st.RequestsPerSec, st.CallsPerRequest, st.top(5))
	}
	b.WriteString("\n")
}

// format prints v with prec decimals.
func format(v float64, prec int) string {
	return strconv.FormatFloat(v, 'f', prec, 64)
}
