package main

import "slices"

// serverSpec is how one server of the comparison is started: a binary of
// the bin directory and its arguments; --addr 127.0.0.1:0 is added.
type serverSpec struct {
	bin  string
	args []string
	// only, when set, lists the scenarios this server runs (a variant
	// shown on some scenarios only).
	only []int
}

const (
	zwEpoll   = "zerowire-epoll"
	zwBusy    = "zerowire-epoll+busypoll"
	zwNet     = "zerowire-net"
	reference = zwEpoll // the server every ratio is taken against
)

// allServers is the default list, in the order of the table's columns.
var allServers = []string{zwEpoll, zwBusy, zwNet, "gnet", "netpoll", "stdnet"}

// serverSpecs: every server with its defaults, which with one CPU and
// GOMAXPROCS=1 all come to one event loop (zw: --loops 0 = GOMAXPROCS;
// gnet: one loop per CPU the process may use; netpoll: GOMAXPROCS/20+1
// pollers) or, for stdnet, a goroutine per connection on one P.
var serverSpecs = map[string]serverSpec{
	zwEpoll:   {bin: "zw", args: []string{"serve", "--backend", "epoll", "--log-level", "warn"}},
	zwBusy:    {bin: "zw", args: []string{"serve", "--backend", "epoll", "--busy-poll", "50us", "--log-level", "warn"}, only: []int{1}},
	zwNet:     {bin: "zw", args: []string{"serve", "--backend", "net", "--log-level", "warn"}},
	"gnet":    {bin: "gnet"},
	"netpoll": {bin: "netpoll"},
	"stdnet":  {bin: "stdnet"},
}

// metric is one column of a scenario's results.
type metric struct {
	key    string // key in a run's Metrics
	label  string // name in the table
	higher bool   // higher is better
	prec   int    // decimals shown
	info   bool   // shown for reading the others, not a contest
}

var (
	mP50     = metric{key: "p50_us", label: "p50 µs", higher: false, prec: 1}
	mP99     = metric{key: "p99_us", label: "p99 µs", higher: false, prec: 1}
	mP999    = metric{key: "p999_us", label: "p99.9 µs", higher: false, prec: 1}
	mRPS     = metric{key: "rps", label: "req/s", higher: true, prec: 0}
	mCPU     = metric{key: "server_cpu", label: "server CPU (cores)", higher: false, prec: 2, info: true}
	mPerCore = metric{key: "rps_per_core", label: "req/s per server core", higher: true, prec: 0}
	mMBps    = metric{key: "mbps", label: "MB/s", higher: true, prec: 1}
	mPerConn = metric{key: "rss_per_conn", label: "server RSS per idle conn (B)", higher: false, prec: 0}
	mLoadCPU = metric{key: "load_cpu", label: "load generator CPU (cores)", higher: false, prec: 2, info: true}
	mOthers  = metric{key: "server_cpu_others", label: "rest of the server CPU's busy time: other processes, interrupts (cores)", higher: false, prec: 2, info: true}
	mRPSInfo = metric{key: "rps", label: "req/s achieved", higher: true, prec: 0, info: true}
)

// scenario is one load shape of the comparison.
type scenario struct {
	id      int
	title   string
	conns   int
	depth   int
	size    int
	openLp  bool // open loop at the rate set from scenario 2
	idle    bool // idle connections held by idlehold
	plot    bool // per-run --plot charts and a combined chart
	metrics []metric
}

var scenarioList = []scenario{
	{id: 1, title: "1 conn × 1 outstanding, 64 B", conns: 1, depth: 1, size: 64, plot: true,
		metrics: []metric{mP50, mP99, mP999}},
	{id: 2, title: "64 conns × 1 outstanding, 64 B", conns: 64, depth: 1, size: 64,
		metrics: []metric{mRPS, mP99}},
	{id: 3, title: "256 conns × 16 outstanding, 64 B", conns: 256, depth: 16, size: 64,
		metrics: []metric{mRPS, mCPU, mPerCore, mLoadCPU, mOthers}},
	{id: 4, title: "16 conns × 8 outstanding, 16 KiB", conns: 16, depth: 8, size: 16 << 10,
		metrics: []metric{mMBps}},
	{id: 5, title: "open loop, 64 conns, 64 B", conns: 64, depth: 1, size: 64, openLp: true, plot: true,
		metrics: []metric{mP50, mP99, mP999, mRPSInfo}},
	{id: 6, title: "idle connections", idle: true,
		metrics: []metric{mPerConn}},
}

func scenarioByID(id int) *scenario {
	for i := range scenarioList {
		if scenarioList[i].id == id {
			return &scenarioList[i]
		}
	}
	return nil
}

// servers is the part of list that runs sc, in list's order.
func (sc *scenario) servers(list []string) []string {
	var out []string
	for _, s := range list {
		if only := serverSpecs[s].only; only == nil || slices.Contains(only, sc.id) {
			out = append(out, s)
		}
	}
	return out
}
