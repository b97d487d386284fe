//go:build !linux

package zerowire

import (
	"errors"
	"io"
	"net"
	"net/netip"
)

// Without epoll every connection runs on the net backend.

const (
	epollAvailable = false
	defaultBackend = BackendNet
)

type platformLoop struct{}

type platformServer struct{}

var errEOF = io.EOF

var errNoEpoll = errors.New("zerowire: the epoll backend needs Linux")

func (s *Server) listenEpoll(network, address string) error { return errNoEpoll }
func (s *Server) adoptEpoll(ln net.Listener) error          { return errNoEpoll }
func (s *Server) startLoops(lnfds []int) error              { return errNoEpoll }
func (l *loop) adopt(fd int, ap netip.AddrPort)             {}
func (l *loop) post(t *task)                                { l.postNet(t) }
func (l *loop) runSync(fn func())                           { l.runSyncNet(fn) }
func (s *Server) stopAccepting()                            { s.stopAcceptingNet() }
func (s *Server) stopLoops()                                {}
func (s *Server) eachLoopConn(f func(*Conn))                { s.eachNetConn(f) }
func (c *Conn) readSome(b []byte) (int, error)              { return c.netRead(b) }
func (c *Conn) writeSome(b []byte) (int, error)             { return c.netWrite(b) }
func (c *Conn) writeVec(bufs ...[]byte) (int, error)        { return c.netWriteVec(bufs) }
func (c *Conn) armWrite(on bool)                            {}
func (c *Conn) unread() bool                                { return false }
func (c *Conn) shutWrite()                                  { c.netShutWrite() }
func (c *Conn) closeTransport()                             { c.l.nc.Close() }
