package zerowire

import (
	"context"
	"testing"
)

// TestRoundTripAllocs asserts that a whole request/response round trip,
// client and server in this process, allocates nothing: AllocsPerRun
// counts every goroutine's allocations.
func TestRoundTripAllocs(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled || debugPoison {
		t.Skip("coverage instrumentation, the race detector and zwdebug allocate; the plain run asserts 0")
	}
	payload := make([]byte, 64)
	for _, sb := range backends {
		if sb == BackendEpoll && !epollAvailable {
			continue
		}
		t.Run(sb.String(), func(t *testing.T) {
			s := startServer(t, &echoHandler{}, Options{Backend: sb})
			cl := dialTest(t, s, sb, nil)
			call := func() {
				r, err := cl.Call(context.Background(), payload)
				if err != nil {
					t.Fatal(err)
				}
				r.Release()
			}
			for i := 0; i < 100; i++ {
				call() // warm the pools
			}
			if n := testing.AllocsPerRun(1000, call); n != 0 {
				t.Fatalf("Call round trip allocates %.2f times, want 0", n)
			}
			done := make(chan struct{}, 1)
			cb := func(r *Response, err error) {
				if err == nil {
					r.Release()
				}
				done <- struct{}{}
			}
			goCall := func() {
				if err := cl.Go(payload, cb); err != nil {
					t.Fatal(err)
				}
				<-done
			}
			goCall()
			if n := testing.AllocsPerRun(1000, goCall); n != 0 {
				t.Fatalf("Go round trip allocates %.2f times, want 0", n)
			}
		})
	}
}
