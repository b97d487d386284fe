package faults

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/zerowire/zerowire"
)

// buildEchoServer builds internal/echoserver into a temporary directory.
func buildEchoServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "echoserver")
	cmd := exec.Command("go", "build", "-o", bin, "./internal/echoserver") // the go command on PATH, as in ci.sh
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the echo server: %v\n%s", err, out)
	}
	return bin
}

// serverProc is the echo server running as a subprocess.
type serverProc struct {
	cmd    *exec.Cmd
	addr   string
	done   chan struct{} // closed when the process has exited and its output is read
	stderr bytes.Buffer
}

// startEchoServer runs bin on addr and waits for its "listening on ADDR"
// line. A port that is not free yet (the previous process only just died)
// is tried again for a few seconds.
func startEchoServer(t *testing.T, bin, addr, backend string) *serverProc {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, err := tryStartEchoServer(bin, addr, backend)
		if err == nil {
			t.Cleanup(func() { p.kill() })
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("starting the echo server on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tryStartEchoServer(bin, addr, backend string) (*serverProc, error) {
	p := &serverProc{cmd: exec.Command(bin, "--addr", addr, "--backend", backend), done: make(chan struct{})}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.cmd.Stderr = &lockedWriter{w: &p.stderr}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	lines := make(chan string, 1)
	go func() {
		defer close(p.done)
		r := bufio.NewReader(out)
		line, _ := r.ReadString('\n')
		lines <- line
		io.Copy(io.Discard, r)
		p.cmd.Wait()
	}()
	select {
	case line := <-lines:
		if a, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on "); ok {
			p.addr = a
			return p, nil
		}
		p.kill()
		return nil, fmt.Errorf("first line %q; stderr: %s", line, p.stderrText())
	case <-time.After(10 * time.Second):
		p.kill()
		return nil, errors.New("no \"listening on\" line within 10s")
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *serverProc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (p *serverProc) stderrText() string {
	if lw, ok := p.cmd.Stderr.(*lockedWriter); ok {
		lw.mu.Lock()
		defer lw.mu.Unlock()
	}
	return p.stderr.String()
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// TestCrashRestart: a Pool under load (goroutines calling in a loop, each
// call with its own deadline) loses its server to SIGKILL; the server is
// started again on the same port a while later. Calls in flight at the
// kill and calls made while the server is down fail with a clear error
// (ErrConnLost, ErrNotProcessed, ErrNoConnection) within their deadline;
// once the server is back the pool reconnects with backoff and every
// goroutine's calls succeed again.
func TestCrashRestart(t *testing.T) {
	bin := buildEchoServer(t)
	for _, b := range serverBackends() {
		name := map[zerowire.Backend]string{zerowire.BackendAuto: "auto", zerowire.BackendEpoll: "epoll", zerowire.BackendNet: "net"}[b]
		t.Run(backendName(b), func(t *testing.T) { crashRestart(t, bin, name) })
	}
}

// crashWindow is one kill: when the SIGKILL went, when the new process
// was started, and when every goroutine had succeeded again.
type crashWindow struct{ kill, restart, recovered time.Time }

// crashCall is one call of the load, as the caller saw it.
type crashCall struct {
	start, end time.Time
	err        error
	wrong      string
}

// Where a call falls relative to the kills.
const (
	callUp        = iota // touches no window: the server ran throughout
	callAtKill           // in flight when the server was killed
	callDown             // started while the server was down
	callReconnect        // started after the restart, before every goroutine had succeeded again
	numCallClasses
)

var callClassNames = [numCallClasses]string{"server up", "in flight at a kill", "started while down", "started while the pool reconnected"}

func crashRestart(t *testing.T, bin, backend string) {
	checkLeaks := leakCheck(t)
	srv := startEchoServer(t, bin, "127.0.0.1:0", backend)
	addr := srv.addr
	zp, err := zerowire.NewPool(zerowire.PoolOptions{
		Addrs: []string{addr}, ConnsPerAddr: 4,
		DialTimeout: time.Second, MinBackoff: 20 * time.Millisecond, MaxBackoff: 250 * time.Millisecond,
		Client: zerowire.ClientOptions{Logger: quiet()},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer zp.Close()

	const goroutines = 8
	deadline := time.Second // generous: a call on a live server must not miss it, even under -race on a busy machine
	margin := time.Second
	cycles := pick(2, 5)
	downFor := 2 * deadline // so that some calls find no server at all

	var okSince [goroutines]atomic.Int64 // last success of each goroutine, unix ns
	calls := make([][]crashCall, goroutines)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64<<10)
			r := newRand(uint64(g))
			for {
				select {
				case <-stop:
					return
				default:
				}
				payload := buf[:payloadSize(r, len(buf))]
				fillPayload(payload, r)
				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				c := crashCall{start: time.Now()}
				resp, err := zp.Call(ctx, payload)
				c.end, c.err = time.Now(), err
				cancel()
				if err == nil {
					if !bytes.Equal(resp.Payload(), payload) {
						c.wrong = fmt.Sprintf("sent %d bytes, got %d back", len(payload), len(resp.Payload()))
					}
					resp.Release()
					okSince[g].Store(c.end.UnixNano())
				}
				calls[g] = append(calls[g], c)
				if err != nil {
					time.Sleep(5 * time.Millisecond) // a caller backs off a little
				}
			}
		}()
	}

	var windows []crashWindow
	for cycle := 0; cycle < cycles; cycle++ {
		time.Sleep(pick(300*time.Millisecond, time.Second))
		w := crashWindow{kill: time.Now()}
		srv.kill() // SIGKILL, under load
		time.Sleep(downFor)
		w.restart = time.Now()
		srv = startEchoServer(t, bin, addr, backend)
		// Every goroutine succeeds again, soon: MaxBackoff is 250 ms.
		if !pollUntil(10*time.Second, func() bool {
			for g := range okSince {
				if okSince[g].Load() < w.restart.UnixNano() {
					return false
				}
			}
			return true
		}) {
			t.Fatalf("cycle %d: not every goroutine had a successful call within 10s of the restart", cycle)
		}
		w.recovered = time.Now()
		windows = append(windows, w)
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	if !waitGroup(&wg, 30*time.Second) {
		t.Fatalf("the load did not stop: some call hangs\n%s", ourStacks())
	}
	zp.Close()
	srv.kill()

	var tallies [numCallClasses]tally
	silent, stuck := 0, 0
	for _, gc := range calls {
		for _, c := range gc {
			class, w := callUp, crashWindow{}
			for _, w = range windows {
				if c.start.Before(w.kill) && c.end.After(w.kill) {
					class = callAtKill
				} else if !c.start.Before(w.kill) && c.start.Before(w.restart) {
					class = callDown
				} else if !c.start.Before(w.restart) && c.start.Before(w.recovered) {
					class = callReconnect
				}
				if class != callUp {
					break
				}
			}
			tallies[class].record(c.err, c.end.Sub(c.start), deadline, margin, c.wrong)
			if !errors.Is(c.err, context.DeadlineExceeded) {
				continue
			}
			// A deadline is fair for a call that may have been sent to the
			// new process (it ended after the restart). Any other means a
			// client did not notice its connection die: a silent failure.
			if class == callUp || !c.end.After(w.restart) {
				if class == callAtKill {
					stuck++
				} else {
					silent++
				}
			}
		}
	}
	for class := range tallies {
		tl := &tallies[class]
		t.Logf("%s: %s", callClassNames[class], tl)
		tl.check(t, tl.calls.Load())
	}
	var recon []time.Duration
	for _, w := range windows {
		recon = append(recon, w.recovered.Sub(w.restart).Round(time.Millisecond))
	}
	t.Logf("%d kills, each %v down; every goroutine succeeded again %v after each restart", cycles, downFor, recon)

	if up := &tallies[callUp]; up.ok.Load() != up.calls.Load() {
		t.Errorf("%d calls failed while the server was up", up.calls.Load()-up.ok.Load())
	}
	// The errors of a crash are clear ones: lost, not processed, no
	// connection to send on; a deadline only for a call that may have
	// reached the new process.
	for class := callAtKill; class < numCallClasses; class++ {
		tl := &tallies[class]
		tl.mu.Lock()
		for kind, n := range tl.kinds {
			switch kind {
			case "ok", "ErrConnLost", "ErrNotProcessed", "ErrNoConnection", "ErrGoingAway", "deadline":
			default:
				t.Errorf("%d calls ended with %s", n, kind)
			}
		}
		tl.mu.Unlock()
	}
	if silent > 0 {
		t.Errorf("%d calls ran into their deadline with no server to send them to", silent)
	}
	if stuck > 0 {
		// A client that missed the FIN of the dead server (it came with
		// the last bytes of a RESPONSE: TestFINWithLastBytesClient).
		t.Errorf("%d calls in flight at the kill ended with their deadline instead of ErrConnLost", stuck)
	}
	if tallies[callDown].kinds["ErrNoConnection"] == 0 {
		t.Errorf("no call found the server down (ErrNoConnection): the kill did not bite")
	}
	checkLeaks()
}
