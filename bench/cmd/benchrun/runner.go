package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// runner runs the servers and the load.
type runner struct {
	cfg   config
	sum   *summary
	rate5 float64
}

// server is a running server process.
type server struct {
	name string
	cmd  *exec.Cmd
	pid  int
	addr string
	done chan error // the process's exit, once
	log  *os.File
}

// startServer starts the server name pinned to the server CPU with
// GOMAXPROCS=1, and waits for its "listening on ADDR" line.
func (r *runner) startServer(name, logPath string) (*server, error) {
	spec := serverSpecs[name]
	args := append([]string{"-c", r.cfg.serverCPU, filepath.Join(r.cfg.bin, spec.bin)}, spec.args...)
	args = append(args, "--addr", "127.0.0.1:0")
	cmd := exec.Command("taskset", args...)
	cmd.Env = append(withoutEnv(os.Environ(), "GOMAXPROCS"), "GOMAXPROCS=1")
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stderr = log
	out, err := cmd.StdoutPipe()
	if err != nil {
		log.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	s := &server{name: name, cmd: cmd, pid: cmd.Process.Pid, done: make(chan error, 1), log: log}
	lines := make(chan string, 1)
	go func() {
		br := bufio.NewReader(out)
		line, _ := br.ReadString('\n')
		lines <- line
		io.Copy(log, br) // whatever else the server prints on stdout
		s.done <- cmd.Wait()
	}()
	select {
	case line := <-lines:
		addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
		if !ok {
			s.stop()
			return nil, fmt.Errorf("%s printed %q instead of \"listening on ADDR\" (log: %s)", name, line, logPath)
		}
		s.addr = addr
		return s, nil
	case <-time.After(15 * time.Second):
		s.stop()
		return nil, fmt.Errorf("%s did not print \"listening on\" within 15s (log: %s)", name, logPath)
	}
}

// stop ends the server with SIGTERM, then SIGKILL if it has not exited
// after 20 s, and reports how it exited.
func (s *server) stop() error {
	defer s.log.Close()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		return err
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		return errors.New("did not exit within 20s of SIGTERM: killed")
	}
}

func withoutEnv(env []string, key string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// runOne runs scenario sc once against a fresh server name.
func (r *runner) runOne(sc *scenario, name string, rep int) runResult {
	base := fmt.Sprintf("s%d-%s-r%d", sc.id, name, rep)
	rr := runResult{Repeat: rep, Metrics: map[string]float64{}, LoadAvg: loadAvg()}
	srv, err := r.startServer(name, filepath.Join(r.cfg.out, "raw", base+".server.log"))
	if err != nil {
		rr.Failed = err.Error()
		logf("scenario %d, %s, run %d: %v", sc.id, name, rep, err)
		return rr
	}
	if sc.idle {
		r.idleRun(srv, &rr)
	} else {
		r.benchRun(sc, srv, base, &rr)
	}
	if err := srv.stop(); err != nil {
		rr.ServerExit = err.Error()
	}
	logf("scenario %d, %-24s run %d: %s", sc.id, name, rep, rr.brief(sc))
	return rr
}

// loadBusyPoll keeps zw bench's loop spinning between answers. A load
// generator that sleeps between answers pays a vCPU wake-up (about 40 us
// here) on every round trip, as large as the server's whole share of it:
// S1's p50 measured 122-151 us for every server with a sleeping generator
// and 24-66 us with this one, where the servers' differences show. Every
// server gets the same load.
const loadBusyPoll = time.Millisecond

// benchArgs are zw bench's arguments for sc against addr.
func (r *runner) benchArgs(sc *scenario, addr string, warmup, duration time.Duration) []string {
	args := []string{"bench", "--addr", addr,
		"--conns", strconv.Itoa(sc.conns), "--depth", strconv.Itoa(sc.depth), "--size", strconv.Itoa(sc.size),
		"--warmup", warmup.String(), "--duration", duration.String(), "--json", "--progress", "never",
		"--busy-poll", loadBusyPoll.String()}
	if sc.openLp {
		args = append(args, "--rate", strconv.FormatFloat(r.rate5, 'f', 0, 64))
	}
	return args
}

// startLoad starts a load process (zw bench or idlehold) pinned to the
// load CPU; its GOMAXPROCS follows its affinity, 1 for one CPU.
func (r *runner) startLoad(bin string, args []string, stdout io.Writer, logPath string) (*exec.Cmd, *os.File, error) {
	cmd := exec.Command("taskset", append([]string{"-c", r.cfg.loadCPU, filepath.Join(r.cfg.bin, bin)}, args...)...)
	cmd.Env = withoutEnv(os.Environ(), "GOMAXPROCS")
	log, err := os.Create(logPath)
	if err != nil {
		return nil, nil, err
	}
	cmd.Stdout, cmd.Stderr = stdout, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, nil, err
	}
	return cmd, log, nil
}

// waitTimeout waits for cmd, killing it after d.
func waitTimeout(cmd *exec.Cmd, d time.Duration) error {
	t := time.AfterFunc(d, func() { cmd.Process.Kill() })
	defer t.Stop()
	return cmd.Wait()
}

// benchRun runs zw bench against srv. On scenario 3 it also reads the
// CPU time of the server and of the load over the measured window.
func (r *runner) benchRun(sc *scenario, srv *server, base string, rr *runResult) {
	args := r.benchArgs(sc, srv.addr, r.cfg.warmup, r.cfg.duration)
	if sc.plot {
		rr.Plot = filepath.Join("raw", base+".svg")
		args = append(args, "--plot", filepath.Join(r.cfg.out, rr.Plot))
	}
	var out bytes.Buffer
	cmd, log, err := r.startLoad("zw", args, &out, filepath.Join(r.cfg.out, "raw", base+".bench.log"))
	if err != nil {
		rr.Failed = err.Error()
		return
	}
	defer log.Close()

	// The CPU window: from a little after the warmup to a little before
	// the end, so that it lies inside the measured, loaded time. The
	// server's and the load's CPU time come from /proc/PID/stat, how busy
	// the server's CPU was in all from /proc/stat: the difference is what
	// other processes of the machine took from it.
	type sample struct {
		srv, load float64
		cpu       cpuTimes
		at        time.Time
		err       error
	}
	cpu := make(chan [2]sample, 1)
	go func(t0 time.Time) {
		margin := min(r.cfg.duration/10, 500*time.Millisecond)
		var s [2]sample
		for i, at := range []time.Time{t0.Add(r.cfg.warmup + margin), t0.Add(r.cfg.warmup + r.cfg.duration - margin)} {
			time.Sleep(time.Until(at))
			s[i].at = time.Now()
			s[i].cpu, _ = readCPUTimes(r.cfg.serverCPU)
			if s[i].srv, s[i].err = cpuSeconds(srv.pid); s[i].err == nil {
				s[i].load, s[i].err = cpuSeconds(cmd.Process.Pid)
			}
		}
		cpu <- s
	}(time.Now())

	werr := waitTimeout(cmd, r.cfg.warmup+r.cfg.duration+90*time.Second)
	if s := <-cpu; s[0].err == nil && s[1].err == nil {
		wall := s[1].at.Sub(s[0].at).Seconds()
		rr.Metrics["server_cpu"] = (s[1].srv - s[0].srv) / wall
		rr.Metrics["load_cpu"] = (s[1].load - s[0].load) / wall
		if busy, ok := s[1].cpu.busySince(s[0].cpu); ok {
			rr.Metrics["server_cpu_others"] = max(busy-rr.Metrics["server_cpu"], 0)
		}
	} else {
		rr.Note = fmt.Sprintf("CPU time not read: %v %v", s[0].err, s[1].err)
	}
	rr.JSON = filepath.Join("raw", base+".json")
	os.WriteFile(filepath.Join(r.cfg.out, rr.JSON), out.Bytes(), 0o644)
	if err := parseBench(out.Bytes(), rr); err != nil {
		rr.Failed = fmt.Sprintf("zw bench: %v (exit: %v)", err, werr)
		return
	}
	if werr != nil && rr.Errors == 0 {
		rr.Failed = fmt.Sprintf("zw bench: %v", werr)
		return
	}
	if cpu := rr.Metrics["server_cpu"]; cpu > 0 {
		rr.Metrics["rps_per_core"] = rr.Metrics["rps"] / cpu
	}
}

// parseBench takes the metrics of a zw bench --json object.
func parseBench(out []byte, rr *runResult) error {
	line := bytes.TrimSpace(out)
	if i := bytes.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:]
	}
	var j map[string]any
	if err := json.Unmarshal(line, &j); err != nil {
		return fmt.Errorf("no JSON result: %w", err)
	}
	for k, v := range j {
		if f, ok := v.(float64); ok {
			switch k {
			case "errors":
				rr.Errors = f
			case "conns", "depth", "size", "rate", "duration_s", "warmup_s":
			default:
				rr.Metrics[k] = f
			}
		}
	}
	if s, ok := j["first_error"].(string); ok {
		rr.FirstError = s
	}
	if rr.Metrics["requests"] <= 0 {
		return errors.New("no request was answered")
	}
	return nil
}

// idleRun opens the idle connections with idlehold and reads the
// server's resident memory before and after.
func (r *runner) idleRun(srv *server, rr *runResult) {
	time.Sleep(500 * time.Millisecond) // let the server finish starting
	before, err := vmRSS(srv.pid)
	if err != nil {
		rr.Failed = err.Error()
		return
	}
	pr, pw := io.Pipe()
	cmd, log, err := r.startLoad("idlehold", []string{"--addr", srv.addr, "--n", strconv.Itoa(r.cfg.idle)}, pw,
		filepath.Join(r.cfg.out, "raw", fmt.Sprintf("s6-%s-r%d.idlehold.log", srv.name, rr.Repeat)))
	if err != nil {
		rr.Failed = err.Error()
		return
	}
	defer log.Close()
	exited := make(chan error, 1)
	go func() { err := cmd.Wait(); pw.Close(); exited <- err }()
	held := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(pr).ReadString('\n')
		held <- strings.TrimSpace(line)
		io.Copy(io.Discard, pr)
	}()
	select {
	case line := <-held:
		if line != fmt.Sprintf("held %d", r.cfg.idle) {
			rr.Failed = fmt.Sprintf("idlehold printed %q (see its log)", line)
		}
	case <-time.After(180 * time.Second):
		rr.Failed = "idlehold did not hold its connections within 180s"
	}
	if rr.Failed == "" {
		time.Sleep(time.Second) // let the server settle
		after, err := vmRSS(srv.pid)
		if err != nil {
			rr.Failed = err.Error()
		} else {
			rr.Metrics["rss_before_kb"] = float64(before)
			rr.Metrics["rss_after_kb"] = float64(after)
			rr.Metrics["rss_per_conn"] = float64(after-before) * 1024 / float64(r.cfg.idle)
			rr.Metrics["conns"] = float64(r.cfg.idle)
			if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", srv.pid)); err == nil {
				rr.Metrics["server_fds"] = float64(len(fds))
			}
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
}

// setRate5 sets scenario 5's rate: --rate5, or half of the best median
// req/s of scenario 2 across the servers of this run.
func (r *runner) setRate5() {
	if r.cfg.rate5 > 0 {
		r.rate5 = r.cfg.rate5
		r.sum.Rate5 = rate5Info{Rate: r.rate5, From: "--rate5"}
		return
	}
	best, who := 0.0, ""
	if s2 := r.sum.scenario(2); s2 != nil {
		for _, name := range r.cfg.servers {
			if sr := s2.Servers[name]; sr != nil && sr.Median["rps"] > best {
				best, who = sr.Median["rps"], name
			}
		}
	}
	if best == 0 {
		best, who = 20000, "none: scenario 2 gave no rate, 2×10000 assumed"
	}
	r.rate5 = best / 2
	r.sum.Rate5 = rate5Info{Rate: r.rate5, From: fmt.Sprintf("half of scenario 2's best median, %.0f req/s (%s)", best, who)}
	logf("scenario 5 rate: %.0f req/s (%s)", r.rate5, r.sum.Rate5.From)
}

// cpuSeconds is the CPU time (user + system) process pid has used, from
// /proc/PID/stat.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	ticks, err := parseStatTicks(string(b))
	if err != nil {
		return 0, err
	}
	return float64(ticks) / clockTicks(), nil
}

// parseStatTicks returns utime+stime (fields 14 and 15) of a
// /proc/PID/stat line. The command name, field 2, is in parentheses and
// may hold spaces and parentheses itself, so fields are counted from the
// last ')'.
func parseStatTicks(stat string) (uint64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc/PID/stat")
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3, state
	if len(f) < 13 {
		return 0, errors.New("short /proc/PID/stat")
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return utime + stime, nil
}

// cpuTimes is one CPU's line of /proc/stat, in clock ticks.
type cpuTimes struct {
	busy, total uint64
	ok          bool
}

// readCPUTimes reads the line of CPU cpu (a single CPU number) from
// /proc/stat; ok is false for a CPU list.
func readCPUTimes(cpu string) (cpuTimes, error) {
	if _, err := strconv.Atoi(cpu); err != nil {
		return cpuTimes{}, nil
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	return parseCPUTimes(string(b), "cpu"+cpu), nil
}

// parseCPUTimes finds the line of name in /proc/stat: user, nice, system,
// idle, iowait, irq, softirq, steal (guest time is counted in user). Busy
// is all but idle and iowait; steal counts as busy, since the CPU was not
// ours then either.
func parseCPUTimes(stat, name string) cpuTimes {
	for line := range strings.Lines(stat) {
		f := strings.Fields(line)
		if len(f) < 9 || f[0] != name {
			continue
		}
		var t cpuTimes
		for i, s := range f[1:9] {
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return cpuTimes{}
			}
			t.total += v
			if i != 3 && i != 4 {
				t.busy += v
			}
		}
		t.ok = true
		return t
	}
	return cpuTimes{}
}

// busySince is the share of the CPU that was busy between then and t.
func (t cpuTimes) busySince(then cpuTimes) (float64, bool) {
	if !t.ok || !then.ok || t.total <= then.total {
		return 0, false
	}
	return float64(t.busy-then.busy) / float64(t.total-then.total), true
}

var clkTck float64

// clockTicks is the kernel's USER_HZ (getconf CLK_TCK), 100 if unknown.
func clockTicks() float64 {
	if clkTck == 0 {
		clkTck = 100
		if out, err := exec.Command("getconf", "CLK_TCK").Output(); err == nil {
			if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && n > 0 {
				clkTck = float64(n)
			}
		}
	}
	return clkTck
}

// vmRSS is process pid's resident set in kB, from /proc/PID/status.
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseVmRSS(string(b))
}

func parseVmRSS(status string) (int64, error) {
	for line := range strings.Lines(status) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, errors.New("no VmRSS in /proc/PID/status")
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// plot draws the latency curves of every server of a scenario on one
// chart with plotcmp, from the median of each percentile over the runs.
func (r *runner) plot(res *scenarioResult) error {
	args := []string{"--out", filepath.Join(r.cfg.out, fmt.Sprintf("latency-s%d.svg", res.ID)),
		"--title", fmt.Sprintf("Scenario %d: %s — latency by percentile (median of %d runs)", res.ID, res.Title, r.cfg.repeats)}
	n := 0
	for _, name := range r.cfg.servers {
		sr := res.Servers[name]
		if sr == nil || sr.Median["p50_us"] == 0 {
			continue
		}
		file := filepath.Join(r.cfg.out, "raw", fmt.Sprintf("s%d-%s-median.json", res.ID, name))
		if err := writeJSON(file, sr.Median); err != nil {
			return err
		}
		args = append(args, name+"="+file)
		n++
	}
	if n == 0 {
		return errors.New("no server has latencies")
	}
	out, err := exec.Command(filepath.Join(r.cfg.bin, "plotcmp"), args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("plotcmp: %v: %s", err, out)
	}
	res.Plot = fmt.Sprintf("latency-s%d.svg", res.ID)
	return nil
}

func writeJSON(file string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(file, append(b, '\n'), 0o644)
}
