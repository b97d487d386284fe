package zerowire

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// PoolOptions configures a Pool.
type PoolOptions struct {
	// Addrs are the servers, "host:port" or "unix:PATH".
	Addrs []string
	// ConnsPerAddr is how many connections each address gets; default 2.
	ConnsPerAddr int
	// Client configures every connection.
	Client ClientOptions
	// DialTimeout bounds one connection attempt; default 5s.
	DialTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait before dialing an address
	// again after a failure; defaults 50ms and 5s, doubling with jitter.
	MinBackoff, MaxBackoff time.Duration
	// MaxAttempts bounds how many connections one call tries when the
	// earlier ones report it safe to retry; default 3.
	MaxAttempts int
}

// ErrNoConnection is returned when no connection of a Pool is usable
// before the call's context ends.
var ErrNoConnection = errors.New("zerowire: no usable connection in the pool")

// Pool spreads calls over several connections to one or more servers:
// each call goes to the open connection with the fewest calls outstanding.
// A connection that fails, or whose server sends GOAWAY, is set aside and
// dialed again with backoff; a call its server did not process is retried
// on another connection. A Pool is safe for concurrent use.
type Pool struct {
	o      PoolOptions
	slots  []*slot
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type slot struct {
	addr string
	cl   atomic.Pointer[Client]
}

// NewPool starts dialing every address in the background and returns at
// once; calls wait for a usable connection until their context ends.
func NewPool(opts PoolOptions) (*Pool, error) {
	if len(opts.Addrs) == 0 {
		return nil, errors.New("zerowire: pool with no addresses")
	}
	if opts.ConnsPerAddr <= 0 {
		opts.ConnsPerAddr = 2
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 5 * time.Second
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 50 * time.Millisecond
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(5*time.Second, opts.MinBackoff)
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 3
	}
	p := &Pool{o: opts}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	for _, a := range opts.Addrs {
		for i := 0; i < opts.ConnsPerAddr; i++ {
			s := &slot{addr: a}
			p.slots = append(p.slots, s)
			p.wg.Add(1)
			go p.keep(s)
		}
	}
	return p, nil
}

// keep holds one connection open to its address, dialing again with
// exponential backoff and jitter whenever it fails or goes away.
func (p *Pool) keep(s *slot) {
	defer p.wg.Done()
	backoff := p.o.MinBackoff
	network, address := splitAddr(s.addr)
	for p.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(p.ctx, p.o.DialTimeout)
		cl, err := Dial(ctx, network, address, &p.o.Client)
		cancel()
		if err != nil {
			wait := backoff/2 + rand.N(backoff/2+1)
			backoff = min(2*backoff, p.o.MaxBackoff)
			select {
			case <-time.After(wait):
			case <-p.ctx.Done():
			}
			continue
		}
		backoff = p.o.MinBackoff
		s.cl.Store(cl)
		select {
		case <-cl.Done():
		case <-cl.GoingAway():
			// Dial a successor at once; the old connection finishes the
			// calls its server processes and closes on its own.
		case <-p.ctx.Done():
		}
		s.cl.Store(nil)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			cl.Close()
		}()
	}
}

// pick returns the open connection with the fewest calls outstanding.
func (p *Pool) pick(avoid *Client) *Client {
	var best *Client
	var bestN int64
	start := rand.N(len(p.slots)) // ties go to a random connection
	for i := range p.slots {
		cl := p.slots[(start+i)%len(p.slots)].cl.Load()
		if cl == nil || cl == avoid || cl.state.Load() != 1 {
			continue
		}
		if n := cl.inflight.Load(); best == nil || n < bestN {
			best, bestN = cl, n
		}
	}
	return best
}

// testHookPicked, set only by tests, runs between choosing a connection
// and calling on it, the moment a connection can end under a call.
var testHookPicked func(*Client)

// Call is Client.Call on the least loaded connection, retried on another
// connection when the server reports the request not processed or the
// connection ends before the request is sent. It returns ErrClosed only
// once the Pool is closed.
func (p *Pool) Call(ctx context.Context, payload []byte) (*Response, error) {
	var last *Client
	var err error
	for attempt := 0; attempt < p.o.MaxAttempts; attempt++ {
		cl, werr := p.wait(ctx, last)
		if werr != nil {
			if err != nil {
				return nil, err
			}
			return nil, werr
		}
		if testHookPicked != nil {
			testHookPicked(cl)
		}
		var r *Response
		r, err = cl.Call(ctx, payload)
		if errors.Is(err, ErrClosed) && p.ctx.Err() == nil {
			// The connection ended between pick and Call: nothing was
			// sent, and the caller did not close anything.
			err = ErrNotProcessed
		}
		if err == nil || !(errors.Is(err, ErrNotProcessed) || errors.Is(err, ErrGoingAway)) {
			return r, err
		}
		last = cl
	}
	return nil, err
}

// wait returns a usable connection, polling until ctx ends.
func (p *Pool) wait(ctx context.Context, avoid *Client) (*Client, error) {
	for {
		if cl := p.pick(avoid); cl != nil {
			return cl, nil
		}
		if cl := p.pick(nil); cl != nil && avoid != nil {
			return cl, nil
		}
		select {
		case <-ctx.Done():
			return nil, ErrNoConnection
		case <-p.ctx.Done():
			return nil, ErrClosed
		case <-time.After(time.Millisecond):
		}
	}
}

// Close closes every connection and stops dialing.
func (p *Pool) Close() error {
	p.cancel()
	p.wg.Wait()
	return nil
}
