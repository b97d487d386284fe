//go:build !linux

package zerowire

import "net"

func (cl *Client) attach(nc net.Conn) error { return cl.attachNet(nc) }
