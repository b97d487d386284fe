package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// zwBinary builds the zw binary once for the tests that run it as a
// separate process.
func zwBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "zw-test-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "zw")
		out, err := exec.Command(goTool, "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = errors.New(string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("go build: %v", buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// proc is a zw serve running as a separate process.
type proc struct {
	cmd    *exec.Cmd
	addr   string
	stderr *syncBuffer
	exited chan struct{}
	err    error
}

func startServeProcess(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{stderr: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(zwBinary(t), append([]string{"serve"}, args...)...)
	p.cmd.Stderr = p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		for sc.Scan() {
			t.Errorf("serve printed a second line on stdout: %q", sc.Text())
		}
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
	select {
	case l, ok := <-line:
		addr, found := strings.CutPrefix(l, "listening on ")
		if !ok || !found {
			t.Fatalf("serve's first line = %q; stderr:\n%s", l, p.stderr)
		}
		p.addr = addr
	case <-time.After(20 * time.Second):
		t.Fatalf("no listening line in 20s; stderr:\n%s", p.stderr)
	}
	return p
}

// signal sends sig and waits for the process to exit; it returns the exit code.
func (p *proc) signal(t *testing.T, sig os.Signal) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		t.Fatalf("serve did not exit within 15s of %v; stderr:\n%s", sig, p.stderr)
	}
	return p.cmd.ProcessState.ExitCode()
}

func runProcess(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	cmd := exec.Command(zwBinary(t), args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), o.String(), e.String()
}

func TestProcessServeBenchPing(t *testing.T) {
	p := startServeProcess(t, "--addr", "127.0.0.1:0", "--loops", "1", "--busy-poll", "50us", "--idle-timeout", "30s")

	code, out, errOut := runProcess(t, "bench", "--addr", p.addr, "--conns", "4", "--depth", "4",
		"--duration", "500ms", "--warmup", "100ms", "--json")
	if code != 0 {
		t.Fatalf("bench: exit %d, stderr %q", code, errOut)
	}
	var j struct {
		Requests, Errors float64
		RPS              float64 `json:"rps"`
		P99              float64 `json:"p99_us"`
	}
	if err := json.Unmarshal([]byte(out), &j); err != nil || j.Errors != 0 || j.Requests <= 0 || j.RPS <= 0 || j.P99 <= 0 {
		t.Fatalf("bench --json: %v: %s", err, out)
	}
	if errOut != "" {
		t.Errorf("bench wrote on stderr: %q", errOut)
	}

	code, out, _ = runProcess(t, "ping", p.addr, "--count", "2", "--interval", "10ms")
	if code != 0 || !strings.Contains(out, "2 received") {
		t.Fatalf("ping: exit %d\n%s", code, out)
	}

	if code := p.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM; stderr:\n%s", code, p.stderr)
	}
	mustContain(t, p.stderr.String(), "zw: shutting down", "zw: stopped")
}

// SIGTERM in the middle of a bench: the server sends GOAWAY, answers what
// it received and exits 0; the bench stops and reports its failed calls.
func TestProcessGracefulStopUnderLoad(t *testing.T) {
	p := startServeProcess(t, "--addr", "127.0.0.1:0")
	bench := exec.Command(zwBinary(t), "bench", "--addr", p.addr, "--conns", "4", "--depth", "8",
		"--duration", "20s", "--warmup", "0s", "--json", "--progress", "always")
	var bout bytes.Buffer
	berr := &syncBuffer{}
	bench.Stdout, bench.Stderr = &bout, berr
	if err := bench.Start(); err != nil {
		t.Fatal(err)
	}
	defer bench.Process.Kill()
	// Mid-bench: once a progress line reports answers, however long the
	// processes took to start on a loaded machine.
	answered := regexp.MustCompile(`[1-9][0-9]* req/s`)
	for deadline := time.Now().Add(20 * time.Second); !answered.MatchString(berr.String()); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no answers reported in 20s; bench stderr %q", berr.String())
		}
	}
	start := time.Now()
	if code := p.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("serve exited %d after SIGTERM; stderr:\n%s", code, p.stderr)
	}
	done := make(chan error, 1)
	go func() { done <- bench.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		bench.Process.Kill()
		t.Fatalf("bench did not stop after the server did")
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("stopping took %s", time.Since(start))
	}
	if code := bench.ProcessState.ExitCode(); code != 1 {
		t.Errorf("bench exit %d, want 1 (calls failed); stderr %q", code, berr.String())
	}
	var j struct{ Requests, Errors float64 }
	if err := json.Unmarshal(bout.Bytes(), &j); err != nil || j.Requests <= 0 || j.Errors == 0 {
		t.Errorf("bench --json: %v: %s", err, bout.String())
	}
	mustContain(t, berr.String(), "zw: bench: ")
}

func TestProcessPortInUseAndSIGINT(t *testing.T) {
	p := startServeProcess(t, "--addr", "127.0.0.1:0")
	code, out, errOut := runProcess(t, "serve", "--addr", p.addr)
	if code != 1 || out != "" {
		t.Fatalf("second serve: exit %d, stdout %q", code, out)
	}
	if want := "zw: listen " + p.addr + ": bind: address already in use\n"; errOut != want {
		t.Errorf("second serve: stderr %q, want %q", errOut, want)
	}
	if code := p.signal(t, os.Interrupt); code != 0 {
		t.Fatalf("serve exited %d after SIGINT", code)
	}
}
