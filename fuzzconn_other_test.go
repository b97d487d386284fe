//go:build !linux

package zerowire

import (
	"testing"
	"time"
)

// Without epoll the fuzz target's connections go over TCP.

func fzConnect(t *testing.T, s *Server) fzPipe { return fzDialTCP(t, s) }

// fzWait gives a net-backend connection's goroutine time to finish.
func fzWait(s *Server) { time.Sleep(time.Millisecond) }

// fzIdle has nothing more to check on the net backend.
func fzIdle(s *Server) error { return nil }
