package poll

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// waitEvents blocks in Wait until it reports events or an error: a signal
// (the runtime preempting a goroutine, often on a loaded machine) ends a
// blocking Wait early with none, as the loops expect.
func waitEvents(p *Poller, ev []Event) (int, error) {
	for {
		if n, err := p.Wait(ev, -1); n > 0 || err != nil {
			return n, err
		}
	}
}

func TestWaitReportsTokenAndTimesOut(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	const tok = 0x1234_5678_9abc_def0
	if err := p.Add(fds[0], tok); err != nil {
		t.Fatal(err)
	}
	ev := make([]Event, 8)
	if n, err := p.Wait(ev, 30); n != 0 || err != nil {
		t.Fatalf("Wait on an idle pipe: %d events, %v", n, err)
	}
	unix.Write(fds[1], []byte("x"))
	n, err := waitEvents(p, ev)
	if err != nil || n != 1 || ev[0].Token != tok || ev[0].Flags&Readable == 0 {
		t.Fatalf("got %d events %+v, %v; want token %#x readable", n, ev[:n], err, uint64(tok))
	}
}

func TestWakeInterruptsWait(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	done := make(chan []Event)
	go func() {
		ev := make([]Event, 8)
		p.Sleeping()
		n, _ := waitEvents(p, ev)
		p.Awake()
		done <- ev[:n]
	}()
	time.Sleep(20 * time.Millisecond)
	for {
		p.Wake()
		select {
		case ev := <-done:
			if len(ev) != 1 || ev[0].Token != WakeToken {
				t.Fatalf("woke with %+v, want the wake token", ev)
			}
			return
		case <-time.After(10 * time.Millisecond):
			// Wake is a no-op until the waiter has said it sleeps.
		}
	}
}
