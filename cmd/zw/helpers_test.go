package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for a command writing from one
// goroutine while the test reads from another.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runCmd runs zw with args in-process and returns the exit code and what
// it wrote.
func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

// server is a zw serve running in-process.
type server struct {
	addr   string
	cancel context.CancelFunc
	done   chan int
	stderr *syncBuffer
}

// startServe runs "zw serve" with args in-process and waits for its
// "listening on" line.
func startServe(t *testing.T, args ...string) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	s := &server{cancel: cancel, done: make(chan int, 1), stderr: &syncBuffer{}}
	go func() {
		code := runContext(ctx, append([]string{"serve"}, args...), pw, s.stderr)
		pw.Close()
		s.done <- code
	}()
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		io.Copy(io.Discard, pr)
	}()
	select {
	case line, ok := <-lines:
		if !ok {
			t.Fatalf("serve exited without a listening line; stderr:\n%s", s.stderr)
		}
		addr, found := strings.CutPrefix(line, "listening on ")
		if !found {
			t.Fatalf("serve's first line = %q, want \"listening on ADDR\"", line)
		}
		s.addr = addr
	case <-time.After(10 * time.Second):
		t.Fatalf("serve printed no listening line in 10s; stderr:\n%s", s.stderr)
	}
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop ends the server as a signal would and returns its exit code.
func (s *server) stop(t *testing.T) int {
	t.Helper()
	s.cancel()
	select {
	case code := <-s.done:
		s.done <- code
		return code
	case <-time.After(15 * time.Second):
		t.Fatalf("serve did not stop within 15s")
		return -1
	}
}
