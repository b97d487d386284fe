package zerowire

import "net"

// attachNet runs a dialed connection on the net backend: a loop of its own
// whose goroutine reads.
func (cl *Client) attachNet(nc net.Conn) error {
	l, err := newLoop(cl.eng, 0, true)
	if err != nil {
		nc.Close()
		return err
	}
	c := cl.newConn(l)
	l.nc = nc
	l.netc = c
	cl.l = l
	if !cl.eng.register(c) {
		l.release()
		nc.Close()
		return ErrClosed
	}
	l.runSyncNet(func() { cl.start(c) })
	cl.eng.wg.Add(1)
	go l.serveConn(c, false)
	return nil
}
