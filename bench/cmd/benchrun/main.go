// Command benchrun runs the comparison of zerowire against its peers:
// bench/run.sh builds it with the servers and tools it drives, and then
// runs it; see bench/README.md ("The comparison").
//
// Each server runs pinned to one CPU (--server-cpu, default 0) with
// GOMAXPROCS=1, since it has one core; the load (zw bench, idlehold) runs
// pinned to another (--load-cpu, default 1). Every scenario is run
// --repeats times per server, the servers taking turns within each repeat
// so that a noisy moment on the machine does not fall on one server only,
// and the median of each metric is kept. A fresh server is started for
// every run.
//
// The output directory holds results.md (the table, also printed),
// results.json (the summary: machine, settings, every run's metrics and
// the medians), the latency charts of scenarios 1 and 5 with every server
// on one chart (latency-s1.svg, latency-s5.svg, drawn by plotcmp), and
// raw/: every run's zw bench JSON, its own --plot chart for scenarios 1
// and 5, the servers' logs and, with --strace, strace -c summaries.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// config is benchrun's settings, from its flags.
type config struct {
	quick     bool
	duration  time.Duration
	warmup    time.Duration
	repeats   int
	idle      int
	servers   []string
	scenarios []int
	out       string
	bin       string
	serverCPU string
	loadCPU   string
	rate5     float64
	strace    bool
	straceFor time.Duration
	render    string
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchrun: %v\n", err)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "benchrun: %v\n", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (config, error) {
	fs := flag.NewFlagSet("benchrun", flag.ContinueOnError)
	var cfg config
	var servers, scenarios, straceMode string
	var duration, warmup time.Duration
	var repeats, idle int
	fs.BoolVar(&cfg.quick, "quick", false, "1 repeat, 2 s runs (0.5 s warmup), 1000 idle connections, no strace: for CI")
	fs.DurationVar(&duration, "duration", 0, "measured time of each run (default 10s; --quick: 2s)")
	fs.DurationVar(&warmup, "warmup", 0, "warmup before each run's measurement (default 2s; --quick: 500ms)")
	fs.IntVar(&repeats, "repeats", 0, "runs per scenario and server, the median kept (default 3; --quick: 1)")
	fs.IntVar(&idle, "idle", 0, "idle connections of scenario 6 (default 10000; --quick: 1000)")
	fs.StringVar(&servers, "servers", strings.Join(allServers, ","), "servers to compare, comma-separated")
	fs.StringVar(&scenarios, "scenarios", "1,2,3,4,5,6", "scenarios to run, comma-separated (5 needs 2's rate: 2 is added unless --rate5 is given)")
	fs.StringVar(&cfg.out, "out", "", "output directory (default bench/results/DATE)")
	fs.StringVar(&cfg.bin, "bin", "", "directory of zw, the peers, idlehold and plotcmp (default: this program's)")
	fs.StringVar(&cfg.serverCPU, "server-cpu", "0", "CPU list the server is pinned to (taskset -c)")
	fs.StringVar(&cfg.loadCPU, "load-cpu", "1", "CPU list the load is pinned to (taskset -c)")
	fs.Float64Var(&cfg.rate5, "rate5", 0, "open-loop rate of scenario 5 in requests/s (0: half of scenario 2's best median)")
	fs.StringVar(&straceMode, "strace", "auto", "one extra, unmeasured run of scenario 3 per server under strace -c: on, off or auto (on when strace is installed, off with --quick)")
	fs.DurationVar(&cfg.straceFor, "strace-for", 4*time.Second, "how long strace watches each server")
	fs.StringVar(&cfg.render, "render", "", "run nothing: redraw the charts and rewrite results.md of the earlier run in `DIR` from its results.json")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg.duration, cfg.warmup, cfg.repeats, cfg.idle = 10*time.Second, 2*time.Second, 3, 10000
	if cfg.quick {
		cfg.duration, cfg.warmup, cfg.repeats, cfg.idle = 2*time.Second, 500*time.Millisecond, 1, 1000
	}
	if duration != 0 {
		cfg.duration = duration
	}
	if warmup != 0 {
		cfg.warmup = warmup
	}
	if repeats != 0 {
		cfg.repeats = repeats
	}
	if idle != 0 {
		cfg.idle = idle
	}
	if cfg.duration <= 0 || cfg.warmup < 0 || cfg.repeats < 1 || cfg.idle < 1 || cfg.rate5 < 0 {
		return cfg, fmt.Errorf("--duration, --repeats and --idle must be positive, --warmup and --rate5 not negative")
	}
	for _, s := range splitList(servers) {
		if _, ok := serverSpecs[s]; !ok {
			return cfg, fmt.Errorf("unknown server %q (known: %s)", s, strings.Join(allServers, ", "))
		}
		if !slices.Contains(cfg.servers, s) {
			cfg.servers = append(cfg.servers, s)
		}
	}
	if len(cfg.servers) == 0 {
		return cfg, fmt.Errorf("--servers is empty")
	}
	for _, s := range splitList(scenarios) {
		n, err := strconv.Atoi(s)
		if err != nil || scenarioByID(n) == nil {
			return cfg, fmt.Errorf("unknown scenario %q (known: 1 to %d)", s, len(scenarioList))
		}
		if !slices.Contains(cfg.scenarios, n) {
			cfg.scenarios = append(cfg.scenarios, n)
		}
	}
	if slices.Contains(cfg.scenarios, 5) && cfg.rate5 == 0 && !slices.Contains(cfg.scenarios, 2) {
		cfg.scenarios = append(cfg.scenarios, 2)
	}
	slices.Sort(cfg.scenarios)
	if len(cfg.scenarios) == 0 {
		return cfg, fmt.Errorf("--scenarios is empty")
	}
	switch straceMode {
	case "on":
		cfg.strace = true
	case "off":
	case "auto":
		_, err := exec.LookPath("strace")
		cfg.strace = err == nil && !cfg.quick
	default:
		return cfg, fmt.Errorf("--strace must be on, off or auto")
	}
	if cfg.bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return cfg, err
		}
		cfg.bin = filepath.Dir(exe)
	}
	if cfg.out == "" {
		cfg.out = filepath.Join(filepath.Dir(cfg.bin), "results", time.Now().Format("2006-01-02T150405"))
	}
	return cfg, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// run runs the comparison and writes its results.
func run(cfg config) error {
	if cfg.render != "" {
		return render(cfg)
	}
	for _, tool := range []string{"taskset"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is needed to pin the server and the load to their CPUs: %v", tool, err)
		}
	}
	for _, b := range []string{"zw", "idlehold", "plotcmp"} {
		if _, err := os.Stat(filepath.Join(cfg.bin, b)); err != nil {
			return fmt.Errorf("%v (run bench/run.sh, which builds it)", err)
		}
	}
	for _, s := range cfg.servers {
		if _, err := os.Stat(filepath.Join(cfg.bin, serverSpecs[s].bin)); err != nil {
			return fmt.Errorf("%v (run bench/run.sh, which builds it)", err)
		}
	}
	if err := os.MkdirAll(filepath.Join(cfg.out, "raw"), 0o755); err != nil {
		return err
	}
	if slices.Contains(cfg.scenarios, 6) {
		if err := ensureFiles(cfg.idle + 256); err != nil {
			return err
		}
	}

	start := time.Now()
	sum := &summary{
		Machine: describeMachine(),
		Settings: settings{
			Duration: cfg.duration.String(), Warmup: cfg.warmup.String(), Repeats: cfg.repeats,
			IdleConns: cfg.idle, Servers: cfg.servers, Scenarios: cfg.scenarios,
			ServerCPU: cfg.serverCPU, LoadCPU: cfg.loadCPU, ServerGOMAXPROCS: 1, Quick: cfg.quick,
		},
		Started: start.Format(time.RFC3339),
		LoadAvg: loadAvg(),
	}
	logf("%s", sum.Machine.line())
	logf("servers pinned to CPU %s with GOMAXPROCS=1 (one core each); load pinned to CPU %s; %d× %v runs (+%v warmup), median kept; results in %s",
		cfg.serverCPU, cfg.loadCPU, cfg.repeats, cfg.duration, cfg.warmup, cfg.out)

	r := &runner{cfg: cfg, sum: sum}
	for _, id := range cfg.scenarios {
		sc := scenarioByID(id)
		if id == 5 {
			r.setRate5()
		}
		res := &scenarioResult{ID: sc.id, Title: sc.title, Servers: map[string]*serverResult{}}
		if id == 5 {
			res.Rate = r.rate5
			res.Title = fmt.Sprintf("%s, %.0f req/s", sc.title, r.rate5)
		}
		sum.Scenarios = append(sum.Scenarios, res)
		names := sc.servers(cfg.servers)
		if len(names) == 0 {
			continue
		}
		for rep := 1; rep <= cfg.repeats; rep++ {
			for _, name := range names {
				rr := r.runOne(sc, name, rep)
				sr := res.Servers[name]
				if sr == nil {
					sr = &serverResult{}
					res.Servers[name] = sr
				}
				sr.Runs = append(sr.Runs, rr)
			}
		}
		for _, name := range names {
			res.Servers[name].Median = medians(res.Servers[name].Runs)
		}
		if id == 3 && cfg.strace {
			for _, name := range names {
				res.Servers[name].Strace = r.straceOne(sc, name)
			}
		}
	}
	sum.Elapsed = time.Since(start).Round(time.Second).String()
	if err := r.finish(); err != nil {
		return err
	}
	logf("done in %v: %s", time.Since(start).Round(time.Second), cfg.out)
	return nil
}

// finish draws the charts and writes results.md and results.json.
func (r *runner) finish() error {
	for _, id := range []int{1, 5} {
		if res := r.sum.scenario(id); res != nil {
			if err := r.plot(res); err != nil {
				logf("plot of scenario %d: %v", id, err)
			}
		}
	}
	md := renderMarkdown(r.sum)
	if err := os.WriteFile(filepath.Join(r.cfg.out, "results.md"), []byte(md), 0o644); err != nil {
		return err
	}
	if err := writeJSON(filepath.Join(r.cfg.out, "results.json"), r.sum); err != nil {
		return err
	}
	fmt.Print(md)
	return nil
}

// render redoes the charts and results.md of an earlier run, for a
// change of the report's layout without running everything again.
func render(cfg config) error {
	b, err := os.ReadFile(filepath.Join(cfg.render, "results.json"))
	if err != nil {
		return err
	}
	sum := &summary{}
	if err := json.Unmarshal(b, sum); err != nil {
		return fmt.Errorf("%s: %w", cfg.render, err)
	}
	cfg.out = cfg.render
	cfg.servers, cfg.repeats = sum.Settings.Servers, sum.Settings.Repeats
	return (&runner{cfg: cfg, sum: sum}).finish()
}

// ensureFiles makes sure the server and idlehold, children of this
// process, may each open n files. The Go runtime raises its own soft limit
// to the hard one and gives children back the soft limit it started with;
// setting the limit explicitly hands the raised one down instead.
func ensureFiles(n int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Max < uint64(n) {
		return fmt.Errorf("scenario 6 needs %d open files per process but the hard limit (ulimit -Hn) is %d: lower --idle", n, lim.Max)
	}
	lim.Cur = max(lim.Cur, uint64(n))
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
