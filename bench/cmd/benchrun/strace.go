package main

import (
	"bytes"
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

// straceResult is what strace -c counted on a server during one extra,
// unmeasured run of scenario 3. strace slows the server down many times
// over, so only the calls per request mean anything, not the rate.
type straceResult struct {
	File            string         `json:"file"`
	Seconds         float64        `json:"seconds"`
	Calls           int64          `json:"calls"`
	Errors          int64          `json:"errors"`
	BySyscall       map[string]int `json:"by_syscall"`
	RequestsPerSec  float64        `json:"rps_under_strace"`
	CallsPerRequest float64        `json:"calls_per_request"`
	Failed          string         `json:"failed,omitempty"`
}

// straceOne runs scenario sc once more against a fresh server name, with
// strace -c -f attached to the server for cfg.straceFor in the middle of
// the measured time.
func (r *runner) straceOne(sc *scenario, name string) *straceResult {
	st := &straceResult{File: filepath.Join("raw", "strace-s3-"+name+".txt")}
	srv, err := r.startServer(name, filepath.Join(r.cfg.out, "raw", "strace-s3-"+name+".server.log"))
	if err != nil {
		st.Failed = err.Error()
		return st
	}
	defer srv.stop()
	// strace is attached from the end of the warmup to a little after the
	// end of the run, whose measured time starts a little after it is
	// attached: every request measured was answered under strace, so
	// the measured req/s times the time strace watched estimates the
	// requests it saw.
	margin := 500 * time.Millisecond
	var out bytes.Buffer
	cmd, log, err := r.startLoad("zw", r.benchArgs(sc, srv.addr, r.cfg.warmup+margin, r.cfg.straceFor), &out,
		filepath.Join(r.cfg.out, "raw", "strace-s3-"+name+".bench.log"))
	if err != nil {
		st.Failed = err.Error()
		return st
	}
	defer log.Close()
	time.Sleep(r.cfg.warmup)
	tr := exec.Command("strace", "-c", "-f", "-p", strconv.Itoa(srv.pid), "-o", filepath.Join(r.cfg.out, st.File))
	var trErr bytes.Buffer
	tr.Stderr = &trErr
	t0 := time.Now()
	if err := tr.Start(); err != nil {
		st.Failed = err.Error()
	} else {
		time.Sleep(r.cfg.straceFor + 2*margin)
		tr.Process.Signal(syscall.SIGINT)
		// strace ends by the SIGINT it was sent, so its exit status says
		// nothing; whether it wrote its table does.
		trWait := waitTimeout(tr, 30*time.Second)
		st.Seconds = time.Since(t0).Seconds()
		if b, err := os.ReadFile(filepath.Join(r.cfg.out, st.File)); err != nil || !strings.Contains(string(b), "total") {
			st.Failed = fmt.Sprintf("strace wrote no table (%v): %s", trWait, lastLine(trErr.String()))
		}
	}
	werr := waitTimeout(cmd, r.cfg.warmup+r.cfg.straceFor+90*time.Second)
	if st.Failed != "" {
		return st
	}
	var rr runResult
	rr.Metrics = map[string]float64{}
	if err := parseBench(out.Bytes(), &rr); err != nil {
		st.Failed = fmt.Sprintf("zw bench: %v (exit: %v)", err, werr)
		return st
	}
	st.RequestsPerSec = rr.Metrics["rps"]
	b, err := os.ReadFile(filepath.Join(r.cfg.out, st.File))
	if err != nil {
		st.Failed = err.Error()
		return st
	}
	st.BySyscall, st.Calls, st.Errors = parseStraceSummary(string(b))
	if st.RequestsPerSec > 0 && st.Seconds > 0 {
		st.CallsPerRequest = float64(st.Calls) / (st.RequestsPerSec * st.Seconds)
	}
	logf("scenario 3, %-24s strace: %d calls in %.1fs at %.0f req/s: %.3f calls/request (%s)",
		name, st.Calls, st.Seconds, st.RequestsPerSec, st.CallsPerRequest, st.top(4))
	return st
}

// parseStraceSummary reads strace -c's table: calls (and errors) per
// system call, and the totals. Its rows are "% time, seconds, usecs/call,
// calls, [errors], syscall".
func parseStraceSummary(s string) (by map[string]int, calls, errs int64) {
	by = map[string]int{}
	for line := range strings.Lines(s) {
		f := strings.Fields(line)
		if len(f) < 5 || len(f) > 6 {
			continue
		}
		if _, err := strconv.ParseFloat(f[0], 64); err != nil {
			continue
		}
		n, err := strconv.Atoi(f[3])
		if err != nil {
			continue
		}
		e := 0
		if len(f) == 6 {
			e, _ = strconv.Atoi(f[4])
		}
		name := f[len(f)-1]
		if name == "total" {
			calls, errs = int64(n), int64(e)
			continue
		}
		by[name] = n
	}
	return by, calls, errs
}

// top names the n system calls made most often, with their share.
func (st *straceResult) top(n int) string {
	type kv struct {
		k string
		v int
	}
	var all []kv
	for k, v := range st.BySyscall {
		all = append(all, kv{k, v})
	}
	slices.SortFunc(all, func(a, b kv) int {
		if a.v != b.v {
			return b.v - a.v
		}
		return strings.Compare(a.k, b.k)
	})
	var parts []string
	for i := 0; i < len(all) && i < n; i++ {
		share := 0.0
		if st.Calls > 0 {
			share = 100 * float64(all[i].v) / float64(st.Calls)
		}
		parts = append(parts, fmt.Sprintf("%s %.0f%%", all[i].k, share))
	}
	return strings.Join(parts, ", ")
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
