package zerowire

import (
	"sync/atomic"

	"github.com/zerowire/zerowire/pool"
	"github.com/zerowire/zerowire/wire"
)

// counters are updated with atomics from every loop.
type counters struct {
	conns         atomic.Int64
	refusing      atomic.Int64 // refused past MaxConns, still closing: not in conns
	accepted      atomic.Uint64
	packetsIn     atomic.Uint64
	packetsOut    atomic.Uint64
	bytesIn       atomic.Uint64
	bytesOut      atomic.Uint64
	slowConsumers atomic.Uint64
	droppedSends  atomic.Uint64
	partialBytes  atomic.Int64                                // held in partial packets, against MaxPartialBytes
	errors        [int(wire.CodeOverloaded) + 2]atomic.Uint64 // the last counts unknown codes
}

func (c *counters) countError(code wire.Code) {
	i := int(code)
	if i >= len(c.errors) {
		i = len(c.errors) - 1
	}
	c.errors[i].Add(1)
}

// Stats is a snapshot of a server's counters.
type Stats struct {
	Conns         int64  // open now: admitted, not yet closed
	Refusing      int64  // refused past MaxConns (ERROR OVERLOADED) and still closing; not in Conns
	Accepted      uint64 // since start, refused ones included
	PacketsIn     uint64
	PacketsOut    uint64
	BytesIn       uint64
	BytesOut      uint64
	SlowConsumers uint64 // connections closed with SLOW_CONSUMER
	// DroppedSends counts sends from other goroutines that found their
	// connection closed by the time the loop ran them.
	DroppedSends uint64
	// PartialBytes is held now in packets not yet complete.
	PartialBytes int64
	// ErrorsSent counts ERROR frames this side sent to drop a connection, by code.
	ErrorsSent map[wire.Code]uint64
	Pool       pool.Stats
}

// Stats returns a snapshot of the server's counters and its pool's usage.
func (s *Server) Stats() Stats {
	c := &s.stats
	st := Stats{
		Conns: c.conns.Load(), Refusing: c.refusing.Load(), Accepted: c.accepted.Load(),
		PacketsIn: c.packetsIn.Load(), PacketsOut: c.packetsOut.Load(),
		BytesIn: c.bytesIn.Load(), BytesOut: c.bytesOut.Load(),
		SlowConsumers: c.slowConsumers.Load(), DroppedSends: c.droppedSends.Load(),
		PartialBytes: c.partialBytes.Load(),
		ErrorsSent:   map[wire.Code]uint64{},
		Pool:         s.pool.Stats(),
	}
	for i := range c.errors {
		if n := c.errors[i].Load(); n > 0 {
			st.ErrorsSent[wire.Code(i)] = n
		}
	}
	return st
}
