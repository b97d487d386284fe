package zerowire

import (
	"errors"
	"github.com/zerowire/zerowire/internal/conntable"
	"io"
	"net"
	"os"
	"time"

	"github.com/zerowire/zerowire/wire"
)

// The net backend: each connection runs on Go's net package with a loop of
// its own. The connection's reader goroutine is its loop; the loop's mutex
// stands in for the reactor's thread, so the protocol code above is the
// same for both backends.

func (s *Server) serveNet(ln net.Listener) error {
	s.mu.Lock()
	s.addr = ln.Addr()
	s.lns = append(s.lns, ln)
	s.mu.Unlock()
	s.wg.Add(1)
	go s.acceptNet(ln)
	return nil
}

func (s *Server) acceptNet(ln net.Listener) {
	defer s.wg.Done()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.state.Load() != stateRunning || errors.Is(err, net.ErrClosed) {
				return
			}
			s.opts.Logger.Warn("zerowire: accept", "err", err)
			time.Sleep(5 * time.Millisecond)
			continue
		}
		if s.state.Load() != stateRunning {
			nc.Close()
			continue
		}
		l, err := newLoop(s, 0, true)
		if err != nil {
			nc.Close()
			continue
		}
		c := &Conn{l: l, o: &s.opts, server: true, peerMax: wire.MinMaxPacketSize}
		l.netc, l.nc = c, nc
		if !s.register(c) {
			l.release()
			nc.Close()
			continue
		}
		s.wg.Add(1)
		go l.serveConn(c, c.refused)
	}
}

// serveConn is a net-backend loop: it reads outside the lock (the read
// buffer and the partial packet belong to this goroutine alone) and does
// everything else under it.
func (l *loop) serveConn(c *Conn, refuse bool) {
	defer l.srv.wg.Done()
	l.mu.Lock()
	l.now = monotime()
	c.lastRecv = l.now
	if c.server {
		c.onTimer() // files the first deadline: the handshake's, or the idle timer's if sooner
	}
	if refuse {
		c.fail(wire.CodeOverloaded, errOverloaded.Msg, errOverloaded)
	}
	for c.st != stClosed {
		for c.paused && c.st < stClosing {
			l.cond.Wait()
		}
		if c.st == stClosed {
			break
		}
		if c.holding() {
			l.dispatchHeld(c)
			l.flushShared()
			continue
		}
		buf := l.readTarget(c)
		if buf == nil {
			continue // held short again: paused until the partial budget frees
		}
		l.unlock()
		n, err := c.l.nc.Read(buf)
		l.mu.Lock()
		l.now = monotime()
		if c.st == stClosed {
			break
		}
		if n > 0 {
			l.srv.stats.bytesIn.Add(uint64(n))
			l.readDone(c, n)
		}
		if err != nil {
			if err == io.EOF {
				c.onEOF()
			} else {
				c.lost(err)
			}
			if c.st != stClosed && c.eof {
				// Answers still owed after the peer's EOF are sent by
				// whoever finishes them; wait for the close.
				for c.st != stClosed {
					if c.holding() && !c.paused {
						l.dispatchHeld(c) // REQUESTs read before the EOF
						l.flushShared()
						continue
					}
					l.cond.Wait()
				}
			}
		}
		l.flushShared()
	}
	if l.timer != nil {
		l.timer.Stop()
	}
	l.unlock()
	l.release()
}

// unlock drains the tasks posted while the lock was held, then unlocks;
// a poster that found the lock taken left its task for the holder.
func (l *loop) unlock() {
	for {
		l.runTasks()
		l.flushShared()
		l.mu.Unlock()
		if l.tasks.empty() || !l.mu.TryLock() {
			return
		}
	}
}

func (l *loop) postNet(t *task) {
	l.tasks.push(t)
	if l.mu.TryLock() {
		l.now = monotime()
		l.unlock()
	}
}

func (l *loop) runSyncNet(fn func()) {
	l.mu.Lock()
	l.now = monotime()
	fn()
	l.unlock()
}

func (l *loop) scheduleNet(at int64) {
	now := monotime()
	if l.timer != nil && l.timerAt > now && l.timerAt <= at {
		return
	}
	l.timerAt = at
	d := time.Duration(at - now)
	if l.timer == nil {
		l.timer = time.AfterFunc(d, l.onNetTimer)
	} else {
		l.timer.Reset(d)
	}
}

func (l *loop) onNetTimer() {
	l.mu.Lock()
	l.now = monotime()
	l.timerAt = 0
	if c := l.netc; c.st != stClosed {
		c.onTimer()
	}
	l.unlock()
}

func (s *Server) stopAcceptingNet() {
	s.mu.Lock()
	lns := s.lns
	s.lns = nil
	s.mu.Unlock()
	for _, ln := range lns {
		ln.Close()
	}
}

func (s *Server) eachNetConn(f func(*Conn)) {
	s.table.Range(func(_ conntable.ID, c *Conn) bool {
		if c.l.net {
			c.l.runSyncNet(func() {
				if c.st != stClosed {
					f(c)
				}
			})
		}
		return true
	})
}

func (c *Conn) netRead(b []byte) (int, error) {
	n, err := c.l.nc.Read(b)
	if err == io.EOF {
		err = errEOF
	}
	return n, err
}

// netWrite blocks until the peer takes b; a peer that takes nothing for
// the slow-consumer deadline loses the connection.
func (c *Conn) netWrite(b []byte) (int, error) {
	c.l.nc.SetWriteDeadline(time.Now().Add(c.o.SlowConsumerTimeout))
	n, err := c.l.nc.Write(b)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		c.l.srv.stats.slowConsumers.Add(1)
		err = errSlow
	}
	return n, err
}

func (c *Conn) netWriteVec(bufs [][]byte) (int, error) {
	nb := net.Buffers(bufs)
	c.l.nc.SetWriteDeadline(time.Now().Add(c.o.SlowConsumerTimeout))
	n, err := nb.WriteTo(c.l.nc)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		c.l.srv.stats.slowConsumers.Add(1)
		err = errSlow
	}
	return int(n), err
}

func (c *Conn) netShutWrite() {
	if cw, ok := c.l.nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}
